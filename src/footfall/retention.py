"""Data retention: events older than ``retention_days`` are deleted, with what is derived
from them.

The cut-off is midnight (UTC) ``retention_days`` days before today, so whole days go and a
daily rollup never keeps a day half-built from deleted events. Derived data goes in the same
transaction: the ``orders`` rows of purchases first seen before the cut-off (a re-sent old
order number then counts as new: its first sighting is forgotten too), the rows of the
daily rollups and person days for days before the cut-off, and the funnel step tables' rows of
the deleted events. Identity profiles (identifiers, links, metadata) are not events and
stay until erased.

Callers make sure every acknowledged event is in the database first: the server waits for
its ingest journal to be loaded (``settled``), the CLI replays what a crashed server left.
Deleted rows leave every query and API at once; DuckDB reuses their blocks in the file for
new data rather than wiping them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from prometheus_client import Counter

from footfall.analytics import form_events, funnel_steps, identifier_days, person_days
from footfall.store.base import Store, Transaction, affected_rows

log = logging.getLogger("footfall.retention")

DELETED_EVENTS = Counter(
    "footfall_retention_deleted_events_total", "Events deleted by the data retention setting"
)
RUNS = Counter("footfall_retention_runs_total", "Data retention passes completed")


@dataclass(frozen=True, slots=True)
class RetentionResult:
    cutoff: datetime
    events: int
    orders: int
    rollup_rows: int


def cutoff_for(days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC ``days`` days before ``now``'s day (naive UTC, like the store's times)."""
    moment = now or datetime.now(UTC).replace(tzinfo=None)
    return datetime.combine(moment.date() - timedelta(days=days), datetime.min.time())


def _has_table(tx: Transaction, table: str) -> bool:
    rows = tx.query("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table])
    return bool(rows and rows[0][0])


def apply_retention(store: Store, days: int, now: datetime | None = None) -> RetentionResult:
    """Delete events before ``cutoff_for(days)`` and what was derived from them."""
    if days <= 0:
        raise ValueError("retention needs a positive number of days")
    cutoff = cutoff_for(days, now)
    day: date = cutoff.date()
    # Serialised with identity changes (an erase deletes events too) in every tenant.
    with store.transaction(None) as tx:
        events = affected_rows(tx.query("DELETE FROM events WHERE ts < ?", [cutoff]))
        orders = affected_rows(tx.query("DELETE FROM orders WHERE first_seen < ?", [cutoff]))
        rollup = identifier_days.forget_before(tx, day) + person_days.forget_before(tx, day)
        if _has_table(tx, "funnel_state"):
            rollup += funnel_steps.forget_before(tx, cutoff)
        if _has_table(tx, "form_events_state"):
            rollup += form_events.forget_before(tx, cutoff)
    DELETED_EVENTS.inc(events)
    RUNS.inc()
    result = RetentionResult(cutoff, events, orders, rollup)
    log.info(
        "data retention applied",
        extra={
            "retention_days": days,
            "cutoff": cutoff.isoformat() + "Z",
            "events_deleted": events,
            "orders_deleted": orders,
            "rollup_rows_deleted": rollup,
        },
    )
    return result


def prune_message_ids(store: Store, days: int, now: datetime | None = None) -> int:
    """Forget message ids received more than ``days`` ago; returns how many."""
    moment = (now or datetime.now(UTC).replace(tzinfo=None)) - timedelta(days=days)
    return affected_rows(store.query("DELETE FROM message_ids WHERE received_at < ?", [moment]))
