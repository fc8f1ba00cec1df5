"""The support form's events in a table of their own, sessions already cut (DuckDB).

At 10M events the deflection report spent most of its time finding the few form events
among all the others (the feedback types need a look at their JSON) and sorting them into
sessions. On the embedded store it reads instead ``form_events``: one narrow row per form
event (form_viewed, answer_shown, ticket_submitted, and the feedback and clicks that name a
``data.form``), ephemeral ones included, each with the time of the previous row of its key
(site, identifier kind, token, form), whether that row was a ticket, and its session number
at the default 30-minute gap. The default report then only groups; another gap cuts its
sessions with one window over ``prev_ts``. Persons are not stored: the report resolves each
session's person through the identity graph at query time, as on the events path, so
merges, splits and take-overs need nothing here.

The table is derived data, folded in before the report runs, like the funnel step tables:

- new events (event ids above the last one folded) are appended; every key they touch has
  its previous rows and session numbers worked out again over all of its rows, so events
  arriving late with an older time land in their place;
- erasure deletes its events' rows and renumbers their keys, and data retention deletes old
  rows (the first remaining row of a key then has no previous one), each in its own
  transaction; rows older than the oldest event are dropped at each fold all the same;
- if DuckDB's ``hash`` (which makes the keys) ever changes, everything is rebuilt.

Everything runs in one store transaction, serialised with identity changes. A count check
(every form event has one row) runs after a build and otherwise on the first fold of each
hour that changes something; if the table disagrees with the events, it is rebuilt.
PostgreSQL reads the events path (several writers may commit event ids out of order).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from footfall.store.base import Store, Transaction, affected_rows

log = logging.getLogger("footfall.form_events")

SESSION_MINUTES = 30
"""The gap whose session numbers are stored (the report's default)."""
FORM_TYPES = ("form_viewed", "answer_shown", "ticket_submitted")
FEEDBACK_TYPES = ("message_like", "message_dislike", "click_through")
"""Feedback and clicks are form events only when their data names a form."""
ROW_KEY = "CAST(hash(site_id, id_kind, token, form) >> 1 AS BIGINT)"
"""A form session's key, as the report's events path computes it."""
CHECK_EVERY = timedelta(hours=1)
_HASH_CHECK = "SELECT CAST(hash('footfall form events') >> 1 AS BIGINT)"
_BASE_COLUMNS = (
    "event_id, k, site_id, id_kind, token, form, ts, event, ephemeral, ab_group, "
    "chatbot_id, popup_version, raw_question"
)
_LOCK = threading.Lock()
FOLDED_ROWS = Counter("footfall_form_event_rows_folded_total", "Rows written into form_events")


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


FORM_EVENT_CONDITION = (
    f"(event IN ({_quoted(FORM_TYPES)}) OR (event IN ({_quoted(FEEDBACK_TYPES)}) "
    "AND contains(CAST(data AS VARCHAR), '\"form\"') AND data->>'form' IS NOT NULL))"
)
"""The events the table holds (the report's events path reads the same)."""


def usable(store: Store) -> bool:
    return store.backend == "duckdb"


def refresh(store: Store) -> int:
    """Bring the table up to date with the events; returns rows written."""
    if not usable(store):
        return 0
    with _LOCK, store.transaction(None) as tx:
        written = _fold(tx)
    if written:
        FOLDED_ROWS.inc(written)
    return written


def forget_erased(tx: Transaction, event_ids: list[int]) -> None:
    """Drop the rows of erased events inside the erase's own transaction and renumber the
    sessions of their keys (an erase may take only some of a token's events)."""
    if not event_ids:
        return
    tx.query("CREATE OR REPLACE TEMP TABLE form_erased (event_id BIGINT)")
    for start in range(0, len(event_ids), 1000):
        chunk = event_ids[start : start + 1000]
        tx.query(
            f"INSERT INTO form_erased VALUES {', '.join(['(?)'] * len(chunk))}",  # noqa: S608
            chunk,
        )
    erased = "event_id IN (SELECT event_id FROM form_erased)"
    tx.query(
        "CREATE OR REPLACE TEMP TABLE form_keys AS "  # noqa: S608 - fixed names
        f"SELECT DISTINCT k FROM form_events WHERE {erased}"
    )
    tx.query(f"DELETE FROM form_events WHERE {erased}")  # noqa: S608
    tx.query(
        "CREATE OR REPLACE TEMP TABLE form_redo AS "  # noqa: S608 - fixed names
        f"SELECT {_BASE_COLUMNS} FROM form_events WHERE k IN (SELECT k FROM form_keys)"
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


def _fold(tx: Transaction) -> int:
    last, hash_check, checked_at = tx.query(
        "SELECT last_event_id, hash_check, checked_at FROM form_events_state WHERE id = 1"
    )[0]
    last = int(last)
    now = datetime.now(UTC).replace(tzinfo=None)
    top = int(tx.query("SELECT coalesce(max(event_id), 0) FROM events")[0][0])
    current_hash = int(tx.query(_HASH_CHECK)[0][0])
    if hash_check is not None and int(hash_check) != current_hash:
        log.warning("DuckDB's hash function changed: rebuilding the form events table")
        last = 0
    elif top <= last:
        return 0  # nothing new: the report on a quiet store pays only these few lookups
    check = last == 0 or checked_at is None or now - checked_at > CHECK_EVERY
    if last == 0:
        tx.query("DELETE FROM form_events")
    written = _append(tx, last, top)
    oldest = tx.query("SELECT min(ts) FROM events")[0][0]
    if oldest is None:
        tx.query("DELETE FROM form_events")
    else:
        forget_before(tx, oldest)
    top = max(top, last)
    if check:
        checked_at = now
        if not _counts_agree(tx, top):
            log.warning("the form events table disagreed with the events: rebuilt")
            tx.query("DELETE FROM form_events")
            written = _append(tx, 0, top)
    tx.query(
        "UPDATE form_events_state SET last_event_id = ?, hash_check = ?, checked_at = ?, "
        "refreshed_at = ? WHERE id = 1",
        [top, current_hash, checked_at, now],
    )
    return written


def _append(tx: Transaction, last: int, top: int) -> int:
    """The form events with ids in (``last``, ``top``], with the rows already stored for
    the keys they touch, numbered again and written back."""
    tx.query(
        "CREATE OR REPLACE TEMP TABLE form_staged AS "  # noqa: S608 - fixed names only
        f"SELECT event_id, {ROW_KEY} AS k, site_id, id_kind, token, form, ts, event, "
        "ephemeral, ab_group, chatbot_id, popup_version, raw_question FROM ("
        "SELECT event_id, site_id, id_kind, token, coalesce(data->>'form', '') AS form, ts, "
        "event, ephemeral, ab_group, chatbot_id, popup_version, "
        "data->>'question' AS raw_question FROM events "
        f"WHERE event_id > ? AND event_id <= ? AND {FORM_EVENT_CONDITION}) e",
        [last, top],
    )
    staged = int(tx.query("SELECT count(*) FROM form_staged")[0][0])
    if staged and last:
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
            f"OR ts > prev_ts + INTERVAL {SESSION_MINUTES} MINUTE THEN 1 ELSE 0 END) "
            f"OVER ({order} ROWS UNBOUNDED PRECEDING) AS session_no FROM ("
            f"SELECT *, lag(ts) OVER w AS prev_ts, "
            "coalesce(lag(event) OVER w = 'ticket_submitted', FALSE) AS prev_ticket "
            f"FROM {source} WINDOW w AS ({order})) x ORDER BY k, ts, event_id"
        )
    )


def _counts_agree(tx: Transaction, top: int) -> bool:
    """Every form event up to ``top`` has exactly one row."""
    stored = int(tx.query("SELECT count(*) FROM form_events")[0][0])
    expected = int(
        tx.query(
            f"SELECT count(*) FROM events WHERE event_id <= ? AND {FORM_EVENT_CONDITION}",  # noqa: S608
            [top],
        )[0][0]
    )
    return stored == expected
