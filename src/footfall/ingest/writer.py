"""Which sink makes the group commit durable for a store: the ingest journal on DuckDB
(unless turned off), one transaction per group otherwise."""

from __future__ import annotations

from footfall.config import Settings
from footfall.ingest.commit import GroupCommitter
from footfall.ingest.direct import DirectCommitter
from footfall.ingest.journal import (
    JournalCommitter,
    journal_directory,
    journal_table,
    replay_pending,
)
from footfall.ingest.workers import IngestWorkers
from footfall.store.base import Store


def make_committer(
    store: Store, settings: Settings, workers: IngestWorkers | None = None
) -> GroupCommitter:
    """The ingest mode for this store: DuckDB journals (unless turned off), others commit.
    With ``workers``, the journal loader builds its batches in them."""
    max_events = settings.commit_max_events
    queue_limit = settings.commit_queue_events
    linger = settings.commit_linger_ms / 1000
    if store.backend == "duckdb":
        directory = journal_directory(settings)
        if settings.ingest_journal and directory is not None:
            return JournalCommitter(
                store,
                directory,
                segment_bytes=settings.journal_segment_mb << 20,
                load_interval_seconds=settings.journal_load_interval_ms / 1000,
                load_max_events=settings.journal_load_max_events,
                max_events=max_events,
                queue_limit=queue_limit,
                linger_seconds=linger,
                tables=journal_table if workers is None else workers.journal_table,
            )
        replay_pending(store, settings)  # a journal left from an earlier run in journal mode
    return DirectCommitter(store, max_events, queue_limit, linger)


def start_workers(store: Store, settings: Settings) -> IngestWorkers | None:
    """Ingest worker processes where they pay: DuckDB in journal mode (PostgreSQL's
    inserts and de-duplication run in the database, per group)."""
    if (
        settings.ingest_workers
        and store.backend == "duckdb"
        and settings.ingest_journal
        and journal_directory(settings) is not None
    ):
        return IngestWorkers(settings.ingest_workers)
    return None
