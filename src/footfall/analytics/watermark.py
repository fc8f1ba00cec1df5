"""Which events a fold of a derived table has not taken in yet, safe with several writers.

DuckDB has one writer, so event ids grow in commit order and "ids above the last one
folded" is exact. PostgreSQL writers take ids before they commit, so a later id may commit
first and a fold by ids would skip the earlier one for good. There each event records the
transaction that wrote it (``txid``, migration 13) and the mark is the snapshot's xmin:
every transaction below it has committed or aborted, so the window ``[last mark, xmin)``
holds only finished writes and nothing below it can still appear. An event of a transaction
still open when a fold runs has a txid at or above that xmin, so it lands in a later fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from footfall.store.base import Transaction


@dataclass(frozen=True, slots=True)
class Window:
    """New events for one fold: ``condition`` (with ``params``) selects those written since
    the last mark; ``folded`` (with ``folded_params``) selects every event up to the new
    ``mark``, the state the derived table reaches once the fold commits."""

    condition: str
    params: list[Any]
    folded: str
    folded_params: list[Any]
    last: int
    mark: int

    @property
    def empty(self) -> bool:
        """Nothing can have been written since the last mark."""
        return self.mark <= self.last


def _xid8(placeholder: str = "?") -> str:
    """A BIGINT parameter as xid8 (there is no direct cast): marks are kept as BIGINT."""
    return f"CAST(CAST({placeholder} AS TEXT) AS xid8)"


def new_events(tx: Transaction, backend: str, last: int, alias: str = "") -> Window:
    """The events written since ``last`` (a mark this returned before; 0 at first).

    Call it first in the fold's transaction: on PostgreSQL the xmin is read before the fold
    writes, so the fold's own transaction (its txid) does not hold the mark back.
    """
    prefix = f"{alias}." if alias else ""
    if backend == "duckdb":
        # Above the last mark only: the ids grow with the table, so the older row groups
        # are skipped by their statistics instead of scanned.
        top = int(
            tx.query(
                "SELECT coalesce(max(event_id), ?) FROM events WHERE event_id > ?", [last, last]
            )[0][0]
        )
        return Window(
            f"{prefix}event_id > ? AND {prefix}event_id <= ?",
            [last, top],
            f"{prefix}event_id <= ?",
            [top],
            last,
            max(top, last),
        )
    xmin = int(
        tx.query("SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)")[0][
            0
        ]
    )
    return Window(
        f"{prefix}txid >= {_xid8()} AND {prefix}txid < {_xid8()}",
        [last, xmin],
        f"{prefix}txid < {_xid8()}",
        [xmin],
        last,
        max(xmin, last),
    )


def has_events(tx: Transaction, window: Window, alias: str = "") -> bool:
    """Whether an event was written in the window (``alias`` as in ``new_events``).
    PostgreSQL's mark moves with every transaction, events or not: one index probe tells
    a fold on a quiet store that it has nothing to do."""
    if window.empty:
        return False
    rows = tx.query(
        f"SELECT count(*) FROM (SELECT 1 FROM events {alias} WHERE {window.condition} "  # noqa: S608
        "LIMIT 1) probe",
        window.params,
    )
    return bool(rows[0][0])


def folded_before(backend: str, mark: int, alias: str = "") -> tuple[str, list[Any]]:
    """The events a derived table holds once folded up to ``mark`` (``Window.folded`` of
    the fold that saved it), for a change outside a fold, e.g. an erase."""
    prefix = f"{alias}." if alias else ""
    if backend == "duckdb":
        return f"{prefix}event_id <= ?", [mark]
    return f"{prefix}txid < {_xid8()}", [mark]


def read_mark(tx: Transaction, backend: str, name: str) -> int:
    """The mark of rollup ``name`` (``rollup_state``): an event id on DuckDB, a txid on
    PostgreSQL (its own column: the two never mix on one database)."""
    column = "last_event_id" if backend == "duckdb" else "last_txid"
    rows = tx.query(f"SELECT {column} FROM rollup_state WHERE name = ?", [name])  # noqa: S608
    return int(rows[0][0]) if rows else 0


def save_mark(tx: Transaction, backend: str, name: str, window: Window, now: Any) -> None:
    column = "last_event_id" if backend == "duckdb" else "last_txid"
    tx.query(
        f"UPDATE rollup_state SET {column} = ?, refreshed_at = ? WHERE name = ?",  # noqa: S608
        [window.mark, now, name],
    )
