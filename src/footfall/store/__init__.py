"""Storage backends behind one interface; pick one with a path or URL."""

from __future__ import annotations

from footfall.store.base import ApiKey, EventRow, Site, Store, redact

__all__ = ["ApiKey", "EventRow", "Site", "Store", "open_store", "redact"]


def open_store(database: str, *, read_only: bool = False, memory_limit: str | None = None) -> Store:
    """``postgresql://...`` selects PostgreSQL; anything else is a DuckDB file path.

    ``memory_limit`` caps DuckDB's buffers (DuckDB's own syntax, e.g. ``1GB`` or ``25%``);
    PostgreSQL runs in its own process with its own settings and ignores it.
    """
    if database.startswith(("postgresql://", "postgres://")):
        from footfall.store.postgres import PostgresStore

        return PostgresStore(database, read_only=read_only)
    from footfall.store.duckdb import DuckDBStore

    return DuckDBStore(database, read_only=read_only, memory_limit=memory_limit)
