"""The write path, one direction only: ``validate`` (a body becomes a normalised row), then
``commit`` (the group commit: the rows of every waiting request made durable together),
then one of its two sinks, ``journal`` (DuckDB: a synced append-only log, loaded into the
database in large batches) or ``direct`` (PostgreSQL: one transaction per group);
``writer`` picks the sink for a store.
"""
