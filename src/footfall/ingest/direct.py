"""The group commit's sink for PostgreSQL (and DuckDB without its journal): one store
transaction per group."""

from __future__ import annotations

import logging
import time

from footfall.errors import UNAVAILABLE, ApiError
from footfall.ingest.commit import (
    COMMIT_FAILURES,
    GroupCommitter,
    Outcome,
    Pending,
    count_committed,
    record_commit,
    split_flags,
)
from footfall.ingest.encoded import EncodedRows
from footfall.store.base import EventRow

log = logging.getLogger("footfall.ingest")


class DirectCommitter(GroupCommitter):
    """Each group is one store transaction: the mode for PostgreSQL (cheap commits, several
    processes, de-duplication in the database), and for DuckDB with ``ingest_journal`` off."""

    def write_group(self, group: list[Pending]) -> list[Outcome]:
        rows = [row for item in group for row in _rows(item[0])]
        started = time.perf_counter()
        try:
            flags = self.store.insert_events(rows)
        except Exception:
            COMMIT_FAILURES.inc()
            log.exception("group commit failed; retrying requests one by one")
            return [self._write_alone(_rows(item[0])) for item in group]
        record_commit(rows, started)
        return split_flags(group, flags)

    def _write_alone(self, rows: list[EventRow]) -> Outcome:
        """One request's rows in their own transaction, so one bad request fails alone."""
        try:
            flags = self.store.insert_events(rows)
        except Exception as exc:
            log.exception("request's events could not be stored")
            return ApiError(503, UNAVAILABLE, f"events could not be stored: {type(exc).__name__}")
        count_committed(rows)
        return flags


def _rows(rows: list[EventRow] | EncodedRows) -> list[EventRow]:
    return rows.rows() if isinstance(rows, EncodedRows) else rows
