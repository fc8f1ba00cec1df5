"""Funnel step tables: each event type's events with their person already resolved.

A funnel at 10M events spends most of its time scanning every event and joining each one to
the identity graph before it can chain its steps, then grouping millions of step events by
person. On the embedded store the steps read instead from ``funnel_<event>`` tables (one
per event type, so each step reads only its own rows) that hold the site, time, person key
``pk`` and breakdown attributes of every non-ephemeral event, stored in person order: the
grouping then finds each person's rows next to each other. On the 2-core machine the plain
5-step funnel takes about a third of the events path's time and a breakdown about half
(bench/analytics.py, bench/funnel_bounds.py).

The tables are derived data, folded in before a funnel runs, like the daily rollup:

- new events (event ids above the last one folded) are resolved and appended, each fold's
  rows in person order; a table is rewritten in person order once a quarter of its rows
  came after its last rewrite;
- identity changes (merge, split, a token taken over, an erase) are found by comparing the
  identity graph's nodes with a copy taken at the last fold; the rows of every identifier
  whose nodes changed get their persons again (from the step tables, not the events);
- a site whose tenant changed has its rows resolved again from the events;
- erasure and data retention delete rows in their own transactions; rows older than the
  oldest event are dropped at each fold all the same;
- if DuckDB's ``hash`` (which makes the keys) ever changes, everything is rebuilt.

Everything runs in one store transaction, serialised with identity changes, so a funnel
never sees half a fold. A count check (every non-ephemeral event has one row) runs after a
build, a site change, and otherwise on the first fold of each hour that changes something
(it reads every event: about 80 ms at 10M); if the tables ever disagree with the events, it
rebuilds them.

Both stores keep them. On DuckDB "new events" are the ids above the last one folded; on
PostgreSQL, where several writers commit ids out of order, the events whose transaction
lies between the last fold's watermark and this one's (``watermark``). Its heap keeps no
order, so there the tables are indexed by person and time, which a funnel merges its steps
along (``PERSON_ORDER``), and by identifier key, for the few rows an identity change or an
erase rewrites; nothing is rewritten in person order.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from footfall.analytics import watermark
from footfall.analytics.dialect import Dialect, dialect_of
from footfall.analytics.person_days import nodes_fingerprint
from footfall.store.base import Store, Transaction, affected_rows
from footfall.store.migrations import FUNNEL_STEP_TYPES

log = logging.getLogger("footfall.funnel_steps")

BREAKDOWN_COLUMNS = ("ab_group", "chatbot_id", "popup_version", "open_way")
_NODE_COLUMNS = "tenant, kind, value, person_id, valid_from, valid_to"
_CURRENT_SITES = "SELECT site_id, coalesce(tenant, site_id) AS tenant FROM sites"
_SITE_CHANGES = (
    f"SELECT DISTINCT site_id FROM (({_CURRENT_SITES} EXCEPT SELECT site_id, tenant FROM "  # noqa: S608
    "funnel_sites) UNION ALL (SELECT site_id, tenant FROM funnel_sites "
    f"EXCEPT {_CURRENT_SITES})) moved"
)
"""Sites that are new, gone or moved to another tenant since the last fold."""
_LOCK = threading.Lock()
FOLDS = Counter("footfall_funnel_step_folds_total", "Folds that changed the funnel step tables")
FOLDED_ROWS = Counter(
    "footfall_funnel_step_rows_folded_total", "Rows written into the funnel step tables"
)
_STEP_COLUMNS = ", ".join(("site_id", "ts", "id_kind", "token_key", "pk", *BREAKDOWN_COLUMNS))
CHECK_EVERY = timedelta(hours=1)
"""How often a fold that changed something also counts rows against the events."""
RECLUSTER_SHARE = 0.25
"""Rewrite a table in person order once this share of its rows came after the last rewrite."""
RECLUSTER_MIN_ROWS = 50_000
"""...and at least this many (small tables are cheap to group in any order)."""


def table_of(event: str) -> str:
    """The step table of an event type (a fixed name from the migration, never input)."""
    if event not in FUNNEL_STEP_TYPES:
        raise ValueError(f"no funnel step table for event type '{event}'")
    return f"funnel_{event}"


def token_key(dialect: Dialect, value: str) -> str:
    """The integer key of an identifier value; ``pk`` of an unlinked token is this key."""
    return dialect.unlinked_key(value)


def refresh(store: Store) -> int:
    """Bring the step tables up to date with events and identities; returns rows written."""
    with _LOCK, store.transaction(None) as tx:
        written = _fold(tx, dialect_of(store))
    if written:
        FOLDS.inc()
        FOLDED_ROWS.inc(written)
    return written


def forget_erased(tx: Transaction, dialect: Dialect, values: list[str]) -> None:
    """Drop the rows of erased identifiers inside the erase's own transaction, so nothing
    derived from them outlives it (the next fold would drop them too)."""
    if not values:
        return
    keys = ", ".join(token_key(dialect, "CAST(? AS VARCHAR)") for _ in values)
    for event in FUNNEL_STEP_TYPES:
        tx.query(f"DELETE FROM {table_of(event)} WHERE token_key IN ({keys})", values)  # noqa: S608


def forget_before(tx: Transaction, cutoff: datetime) -> int:
    """Drop rows of events older than ``cutoff`` (data retention, in its transaction)."""
    deleted = 0
    for event in FUNNEL_STEP_TYPES:
        deleted += affected_rows(tx.query(f"DELETE FROM {table_of(event)} WHERE ts < ?", [cutoff]))  # noqa: S608
    return deleted


def _fold(tx: Transaction, dialect: Dialect) -> int:
    last, hash_check, nodes_check, checked_at = tx.query(
        "SELECT last_event_id, hash_check, nodes_check, checked_at FROM funnel_state WHERE id = 1"
    )[0]
    # First, before anything writes: on PostgreSQL the mark is the snapshot's xmin.
    window = watermark.new_events(tx, dialect.name, int(last), "e")
    last = window.last
    now = datetime.now(UTC).replace(tzinfo=None)
    current_hash = int(tx.query("SELECT " + token_key(dialect, "'footfall funnel steps'"))[0][0])
    fingerprint = nodes_fingerprint(tx, dialect)
    sites_changed = bool(tx.query(f"SELECT count(*) FROM ({_SITE_CHANGES}) changed")[0][0])  # noqa: S608
    if hash_check is not None and int(hash_check) != current_hash:
        log.warning("the key hash function changed: rebuilding the funnel step tables")
        last = 0
        window = watermark.new_events(tx, dialect.name, 0, "e")
    elif (
        fingerprint == nodes_check
        and not sites_changed
        and not watermark.has_events(tx, window, "e")
    ):
        return 0  # nothing new: a funnel on a quiet store pays only these few lookups
    check = last == 0 or sites_changed or checked_at is None or now - checked_at > CHECK_EVERY
    written = 0
    if last == 0:
        _clear(tx)
    else:
        if sites_changed:
            written += _resolve_sites(tx, dialect, last)
        if fingerprint != nodes_check:
            written += _resolve_identities(tx, dialect)
    written += _append(tx, dialect, window.condition, window.params)
    # Retention deletes the step rows with the events; rows older than every event are
    # gone events all the same (a safety net, like the count check below; on PostgreSQL,
    # whose events have no index by time, only with that check).
    if check or dialect.name == "duckdb":
        oldest = tx.query("SELECT min(ts) FROM events")[0][0]
        for event in FUNNEL_STEP_TYPES:
            if oldest is None:
                tx.query(f"DELETE FROM {table_of(event)}")  # noqa: S608
            else:
                tx.query(f"DELETE FROM {table_of(event)} WHERE ts < ?", [oldest])  # noqa: S608
    if check:
        checked_at = now
        if not _counts_agree(tx, window):
            log.warning("funnel step tables disagreed with the events: rebuilt")
            _clear(tx)
            written = _append(tx, dialect, window.folded, window.folded_params)
            last = 0
    if fingerprint != nodes_check or last == 0:
        tx.query("DELETE FROM funnel_nodes")
        tx.query(f"INSERT INTO funnel_nodes SELECT {_NODE_COLUMNS} FROM identity_nodes")  # noqa: S608
    if last == 0:
        # One build is one batch per table, already in person order.
        tx.query("UPDATE funnel_tables SET clustered_rows = appended_rows, appended_rows = 0")
    elif dialect.name == "duckdb":
        _recluster(tx)
    tx.query(
        "UPDATE funnel_state SET last_event_id = ?, hash_check = ?, nodes_check = ?, "
        "checked_at = ?, refreshed_at = ? WHERE id = 1",
        [window.mark, current_hash, fingerprint, checked_at, now],
    )
    return written


def _resolve_sites(tx: Transaction, dialect: Dialect, last: int) -> int:
    """Sites new, gone or moved to another tenant: their rows again from the events."""
    dialect.temp_table(tx, "funnel_changed_sites", "AS " + _SITE_CHANGES, analyze=True)
    tx.query("DELETE FROM funnel_sites")
    tx.query(f"INSERT INTO funnel_sites {_CURRENT_SITES}")
    changed = "site_id IN (SELECT site_id FROM funnel_changed_sites)"
    for event in FUNNEL_STEP_TYPES:
        tx.query(f"DELETE FROM {table_of(event)} WHERE {changed}")  # noqa: S608
    folded, params = watermark.folded_before(dialect.name, last, "e")
    written = _append(tx, dialect, f"{folded} AND e.{changed}", params)
    tx.query("DROP TABLE funnel_changed_sites")
    return written


def _resolve_identities(tx: Transaction, dialect: Dialect) -> int:
    """Identifiers whose nodes changed since the last fold (merge, split, take-over, erase):
    their rows get their persons again, from the step tables alone.

    Rows and nodes meet on the identifier's 63-bit key rather than its text (the rows keep
    no text), so two identifiers whose keys collide would share a person: the same odds
    as two unlinked tokens sharing a person key, about 3 in 100 million at 1M tokens."""
    key = token_key(dialect, "value")
    dialect.temp_table(
        tx,
        "funnel_changed_keys",
        f"AS SELECT DISTINCT {key} AS token_key FROM ("  # noqa: S608 - fixed names
        f"(SELECT {_NODE_COLUMNS} FROM identity_nodes "
        f"EXCEPT SELECT {_NODE_COLUMNS} FROM funnel_nodes) UNION ALL "
        f"(SELECT {_NODE_COLUMNS} FROM funnel_nodes "
        f"EXCEPT SELECT {_NODE_COLUMNS} FROM identity_nodes)) changed",
        analyze=True,
    )
    dialect.temp_table(
        tx,
        "funnel_changed_nodes",
        f"AS SELECT tenant, kind, {key} AS token_key, person_id, valid_from, valid_to "  # noqa: S608
        f"FROM identity_nodes WHERE {key} IN (SELECT token_key FROM funnel_changed_keys)",
        analyze=True,
    )
    changed = "token_key IN (SELECT token_key FROM funnel_changed_keys)"
    written = 0
    for event in FUNNEL_STEP_TYPES:
        table = table_of(event)
        dialect.temp_table(
            tx,
            "funnel_redo",
            f"AS SELECT f.site_id, f.ts, f.id_kind, f.token_key, "  # noqa: S608 - fixed names
            f"coalesce(-n.person_id, f.token_key) AS pk, {_columns('f.', BREAKDOWN_COLUMNS)} "
            f"FROM {table} f JOIN funnel_sites s ON s.site_id = f.site_id "
            "LEFT JOIN funnel_changed_nodes n ON n.tenant = s.tenant "
            "AND n.token_key = f.token_key AND n.kind = f.id_kind "
            f"AND f.ts >= n.valid_from AND f.ts < n.valid_to WHERE f.{changed}",
            analyze=True,
        )
        tx.query(f"DELETE FROM {table} WHERE {changed}")  # noqa: S608
        written += _insert(tx, dialect, event, "funnel_redo")
        tx.query("DROP TABLE funnel_redo")
    tx.query("DROP TABLE funnel_changed_nodes")
    tx.query("DROP TABLE funnel_changed_keys")
    return written


def _clear(tx: Transaction) -> None:
    for event in FUNNEL_STEP_TYPES:
        tx.query(f"DELETE FROM {table_of(event)}")  # noqa: S608
    tx.query("UPDATE funnel_tables SET appended_rows = 0, clustered_rows = 0")
    tx.query("DELETE FROM funnel_nodes")
    tx.query("DELETE FROM funnel_sites")
    tx.query(f"INSERT INTO funnel_sites {_CURRENT_SITES}")


def _append(tx: Transaction, dialect: Dialect, selection: str, params: list[Any]) -> int:
    """Resolve the selected events' persons (as ``events_with_persons`` does) and append
    them to their type's table in person order."""
    key = token_key(dialect, "e.token")
    dialect.temp_table(
        tx,
        "funnel_staged",
        f"AS SELECT e.event, e.site_id, e.ts, e.id_kind, {key} AS token_key, "  # noqa: S608
        f"coalesce(-n.person_id, {key}) AS pk, {_columns('e.', BREAKDOWN_COLUMNS)} "
        "FROM events e JOIN funnel_sites s ON s.site_id = e.site_id "
        "LEFT JOIN identity_nodes n ON n.tenant = s.tenant AND n.value = e.token "
        "AND n.kind = e.id_kind AND e.ts >= n.valid_from AND e.ts < n.valid_to "
        f"WHERE NOT e.ephemeral AND ({selection})",
        params,
        analyze=True,
    )
    written = sum(
        _insert(tx, dialect, event, "funnel_staged", "WHERE event = ?", [event])
        for event in FUNNEL_STEP_TYPES
    )
    tx.query("DROP TABLE funnel_staged")
    return written


def _insert(
    tx: Transaction,
    dialect: Dialect,
    event: str,
    source: str,
    where: str = "",
    params: list[Any] | None = None,
) -> int:
    """Append ``source``'s rows to the event type's table (DuckDB: in person order),
    counting them towards its next rewrite."""
    order = " ORDER BY pk, ts" if dialect.name == "duckdb" else ""
    count = affected_rows(
        tx.query(
            f"INSERT INTO {table_of(event)} ({_STEP_COLUMNS}) SELECT {_STEP_COLUMNS} "  # noqa: S608
            f"FROM {source} {where}{order}",
            params or [],
        )
    )
    if count:
        tx.query(
            "UPDATE funnel_tables SET appended_rows = appended_rows + ? WHERE event = ?",
            [count, event],
        )
    return count


def _columns(prefix: str, names: tuple[str, ...]) -> str:
    return ", ".join(f"{prefix}{name}" for name in names)


def _recluster(tx: Transaction) -> list[str]:
    """Rewrite in person order the tables whose rows appended since their last rewrite
    reached ``RECLUSTER_SHARE``; returns their event types."""
    rewritten = []
    for event, appended, clustered in tx.query(
        "SELECT event, appended_rows, clustered_rows FROM funnel_tables ORDER BY event"
    ):
        if event not in FUNNEL_STEP_TYPES or appended < max(
            RECLUSTER_MIN_ROWS, RECLUSTER_SHARE * clustered
        ):
            continue
        table = table_of(event)
        tx.query(f"CREATE OR REPLACE TEMP TABLE funnel_sorted AS FROM {table} ORDER BY pk, ts")
        tx.query(f"DELETE FROM {table}")  # noqa: S608
        tx.query(f"INSERT INTO {table} FROM funnel_sorted")
        tx.query("DROP TABLE funnel_sorted")
        rows = int(tx.query(f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608
        tx.query(
            "UPDATE funnel_tables SET appended_rows = 0, clustered_rows = ? WHERE event = ?",
            [rows, event],
        )
        rewritten.append(event)
    return rewritten


def _counts_agree(tx: Transaction, window: watermark.Window) -> bool:
    """Every non-ephemeral event of a known site and type the fold took in has one row."""
    types = ", ".join("?" * len(FUNNEL_STEP_TYPES))
    stored = sum(
        int(tx.query(f"SELECT count(*) FROM {table_of(event)}")[0][0])  # noqa: S608
        for event in FUNNEL_STEP_TYPES
    )
    expected = int(
        tx.query(
            f"SELECT count(*) FROM events e WHERE NOT e.ephemeral AND {window.folded} "  # noqa: S608
            f"AND e.site_id IN (SELECT site_id FROM sites) AND e.event IN ({types})",
            [*window.folded_params, *FUNNEL_STEP_TYPES],
        )[0][0]
    )
    return stored == expected
