"""The support form's events in a table of their own, sessions already cut.

At 10M events the deflection report spent most of its time finding the few form events
among all the others (the feedback types need a look at their JSON) and sorting them into
sessions. It reads instead ``form_events``: one narrow row per form
event (form_viewed, answer_shown, ticket_submitted, and the feedback and clicks that name a
``data.form``), ephemeral ones included, each with the time of the previous row of its key
(site, identifier kind, token, form), whether that row was a ticket, and its session number
at the default 30-minute gap. The default report then only groups; another gap cuts its
sessions with one window over ``prev_ts``. Persons are not stored: the report resolves each
session's person through the identity graph at query time, as on the events path, so
merges, splits and take-overs need nothing here.

The table is derived data, folded in before the report runs, like the funnel step tables:

- new events (DuckDB: event ids above the last one folded; PostgreSQL, where writers commit
  ids out of order: the transactions between two watermarks, ``watermark``) are appended;
  every key they touch has its previous rows and session numbers worked out again over all
  of its rows, so events arriving late with an older time land in their place;
- erasure deletes its events' rows and renumbers their keys, and data retention deletes old
  rows (the first remaining row of a key then has no previous one), each in its own
  transaction; rows older than the oldest event are dropped at each fold all the same;
- if the hash function that makes the keys ever changes, everything is rebuilt.

Everything runs in one store transaction, serialised with identity changes. A count check
(every form event has one row) runs after a build and otherwise on the first fold of each
hour that changes something; if the table disagrees with the events, it is rebuilt.
Both stores keep it; PostgreSQL indexes it by key, for the keys a fold renumbers.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from footfall.analytics import watermark
from footfall.analytics.dialect import Dialect, dialect_of
from footfall.store.base import Store, Transaction, affected_rows

log = logging.getLogger("footfall.form_events")

SESSION_MINUTES = 30
"""The gap whose session numbers are stored (the report's default)."""
FORM_TYPES = ("form_viewed", "answer_shown", "ticket_submitted")
FEEDBACK_TYPES = ("message_like", "message_dislike", "click_through")
"""Feedback and clicks are form events only when their data names a form."""
CHECK_EVERY = timedelta(hours=1)
_BASE_COLUMNS = (
    "event_id, k, site_id, id_kind, token, form, ts, event, ephemeral, ab_group, "
    "chatbot_id, popup_version, raw_question"
)
_LOCK = threading.Lock()
FOLDED_ROWS = Counter("footfall_form_event_rows_folded_total", "Rows written into form_events")


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def form_event_condition(dialect: Dialect) -> str:
    """The events the table holds (the report's events path reads the same). On DuckDB a
    cheap text test first spares parsing the JSON of the chat widget's many others."""
    named = "data->>'form' IS NOT NULL"
    if dialect.name == "duckdb":
        named = f"contains(CAST(data AS VARCHAR), '\"form\"') AND {named}"
    return (
        f"(event IN ({_quoted(FORM_TYPES)}) OR (event IN ({_quoted(FEEDBACK_TYPES)}) AND {named}))"
    )


def row_key(dialect: Dialect) -> str:
    """A form session's key: of its site, identifier and form."""
    return dialect.row_key("site_id", "coalesce(id_kind, '')", "token", "form")


def refresh(store: Store) -> int:
    """Bring the table up to date with the events; returns rows written."""
    with _LOCK, store.transaction(None) as tx:
        written = _fold(tx, dialect_of(store))
    if written:
        FOLDED_ROWS.inc(written)
    return written


def forget_erased(tx: Transaction, dialect: Dialect, event_ids: list[int]) -> None:
    """Drop the rows of erased events inside the erase's own transaction and renumber the
    sessions of their keys (an erase may take only some of a token's events)."""
    if not event_ids:
        return
    dialect.temp_table(tx, "form_erased", "(event_id BIGINT)")
    for start in range(0, len(event_ids), 1000):
        chunk = event_ids[start : start + 1000]
        tx.query(
            f"INSERT INTO form_erased VALUES {', '.join(['(?)'] * len(chunk))}",  # noqa: S608
            chunk,
        )
    erased = "event_id IN (SELECT event_id FROM form_erased)"
    dialect.temp_table(
        tx,
        "form_keys",
        f"AS SELECT DISTINCT k FROM form_events WHERE {erased}",  # noqa: S608
        analyze=True,
    )
    tx.query(f"DELETE FROM form_events WHERE {erased}")  # noqa: S608
    dialect.temp_table(
        tx,
        "form_redo",
        f"AS SELECT {_BASE_COLUMNS} FROM form_events WHERE k IN (SELECT k FROM form_keys)",  # noqa: S608
        analyze=True,
    )
    tx.query("DELETE FROM form_events WHERE k IN (SELECT k FROM form_keys)")
    _insert_numbered(tx, "form_redo")
    for table in ("form_redo", "form_keys", "form_erased"):
        tx.query(f"DROP TABLE {table}")


def forget_before(tx: Transaction, cutoff: datetime) -> int:
    """Drop rows of events older than ``cutoff`` (data retention, in its transaction)."""
    deleted = affected_rows(tx.query("DELETE FROM form_events WHERE ts < ?", [cutoff]))
    # The previous row of a key's first remaining row is gone with its event.
    tx.query(
        "UPDATE form_events SET prev_ts = NULL, prev_ticket = FALSE WHERE prev_ts < ?", [cutoff]
    )
    return deleted


def _fold(tx: Transaction, dialect: Dialect) -> int:
    last, hash_check, checked_at = tx.query(
        "SELECT last_event_id, hash_check, checked_at FROM form_events_state WHERE id = 1"
    )[0]
    # First, before anything writes: on PostgreSQL the mark is the snapshot's xmin.
    window = watermark.new_events(tx, dialect.name, int(last))
    now = datetime.now(UTC).replace(tzinfo=None)
    current_hash = int(tx.query("SELECT " + dialect.unlinked_key("'footfall form events'"))[0][0])
    rebuild = hash_check is not None and int(hash_check) != current_hash
    if rebuild:
        log.warning("the key hash function changed: rebuilding the form events table")
        window = watermark.new_events(tx, dialect.name, 0)
    elif not watermark.has_events(tx, window):
        return 0  # nothing new: the report on a quiet store pays only these few lookups
    check = rebuild or window.last == 0 or checked_at is None or now - checked_at > CHECK_EVERY
    if rebuild or window.last == 0:
        tx.query("DELETE FROM form_events")
    written = _append(tx, dialect, window.condition, window.params, renumber=window.last > 0)
    # Rows older than every event are gone events (a safety net beside retention's own
    # delete; on PostgreSQL, whose events have no index by time, only with the count check).
    if check or dialect.name == "duckdb":
        oldest = tx.query("SELECT min(ts) FROM events")[0][0]
        if oldest is None:
            tx.query("DELETE FROM form_events")
        else:
            forget_before(tx, oldest)
    if check:
        checked_at = now
        if not _counts_agree(tx, dialect, window):
            log.warning("the form events table disagreed with the events: rebuilt")
            tx.query("DELETE FROM form_events")
            written = _append(tx, dialect, window.folded, window.folded_params, renumber=False)
    tx.query(
        "UPDATE form_events_state SET last_event_id = ?, hash_check = ?, checked_at = ?, "
        "refreshed_at = ? WHERE id = 1",
        [window.mark, current_hash, checked_at, now],
    )
    return written


def _append(
    tx: Transaction, dialect: Dialect, selection: str, params: list[Any], *, renumber: bool
) -> int:
    """The selected form events, with the rows already stored for the keys they touch
    (``renumber``), numbered again and written back."""
    dialect.temp_table(
        tx,
        "form_staged",
        f"AS SELECT event_id, {row_key(dialect)} AS k, site_id, id_kind, token, form, ts, "  # noqa: S608
        "event, ephemeral, ab_group, chatbot_id, popup_version, raw_question FROM ("
        "SELECT event_id, site_id, id_kind, token, coalesce(data->>'form', '') AS form, ts, "
        "event, ephemeral, ab_group, chatbot_id, popup_version, "
        "data->>'question' AS raw_question FROM events "
        f"WHERE ({selection}) AND {form_event_condition(dialect)}) e",
        params,
        analyze=True,
    )
    staged = int(tx.query("SELECT count(*) FROM form_staged")[0][0])
    if staged and renumber:
        touched = "k IN (SELECT DISTINCT k FROM form_staged)"
        tx.query(
            f"INSERT INTO form_staged SELECT {_BASE_COLUMNS} FROM form_events WHERE {touched}"  # noqa: S608
        )
        tx.query(f"DELETE FROM form_events WHERE {touched}")  # noqa: S608
    written = _insert_numbered(tx, "form_staged") if staged else 0
    tx.query("DROP TABLE form_staged")
    return written


def _insert_numbered(tx: Transaction, source: str) -> int:
    """Write ``source``'s rows (every row of their keys) with their previous row and their
    session numbers, cut as the report cuts them: a new key, a quiet gap or a ticket."""
    order = "PARTITION BY k ORDER BY ts, event_id"
    return affected_rows(
        tx.query(
            f"INSERT INTO form_events SELECT {_BASE_COLUMNS}, prev_ts, prev_ticket, "  # noqa: S608
            "sum(CASE WHEN prev_ts IS NULL OR prev_ticket "
            f"OR ts > prev_ts + INTERVAL '{SESSION_MINUTES} minutes' THEN 1 ELSE 0 END) "
            f"OVER ({order} ROWS UNBOUNDED PRECEDING) AS session_no FROM ("
            f"SELECT *, lag(ts) OVER w AS prev_ts, "
            "coalesce(lag(event) OVER w = 'ticket_submitted', FALSE) AS prev_ticket "
            f"FROM {source} WINDOW w AS ({order})) x ORDER BY k, ts, event_id"
        )
    )


def _counts_agree(tx: Transaction, dialect: Dialect, window: watermark.Window) -> bool:
    """Every form event the fold took in has exactly one row."""
    stored = int(tx.query("SELECT count(*) FROM form_events")[0][0])
    expected = int(
        tx.query(
            f"SELECT count(*) FROM events WHERE {window.folded} "  # noqa: S608
            f"AND {form_event_condition(dialect)}",
            window.folded_params,
        )[0][0]
    )
    return stored == expected
