"""Funnel step tables: each event type's events with their person already resolved.

A funnel at 10M events spends most of its time scanning every event and joining each one to
the identity graph before it can chain its steps. On the embedded store the steps read
instead from ``funnel_<event>`` tables (one per event type, in arrival order, so each step
reads only its own rows) that hold the site, time, person key ``pk`` and the breakdown
attributes of every non-ephemeral event. Measured on the 2-core machine: the plain 5-step
funnel takes about half the time of the events path (bench/analytics.py,
bench/funnel_bounds.py).

The tables are derived data, folded in before a funnel runs, like the daily rollup:

- new events (event ids above the last one folded) are resolved and appended;
- identity changes (merge, split, a token taken over, an erase) are found by comparing the
  identity graph's nodes with a copy taken at the last fold; the rows of every identifier
  whose nodes changed are resolved again from the events;
- a site whose tenant changed has its rows resolved again;
- rows older than the oldest event are gone events (data retention) and are dropped;
- if DuckDB's ``hash`` (which makes the keys) ever changes, everything is rebuilt.

Everything runs in one store transaction, serialised with identity changes, so a funnel
never sees half a fold, and a count check afterwards rebuilds the tables if they ever
disagree with the events. PostgreSQL reads the events path (several writers may commit
event ids out of order, so "ids above the last one" would miss some).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from footfall.store.base import Store, Transaction
from footfall.store.migrations import FUNNEL_STEP_TYPES

log = logging.getLogger("footfall.funnel_steps")

BREAKDOWN_COLUMNS = ("ab_group", "chatbot_id", "popup_version", "open_way")
TOKEN_KEY = "CAST(hash({}) >> 1 AS BIGINT)"  # noqa: S105 - SQL, not a secret
"""The integer key of an identifier value; ``pk`` of an unlinked token is this key."""
_HASH_CHECK = "SELECT " + TOKEN_KEY.format("'footfall funnel steps'")
_NODE_COLUMNS = "tenant, kind, value, person_id, valid_from, valid_to"
_CURRENT_SITES = "SELECT site_id, coalesce(tenant, site_id) AS tenant FROM sites"
_SITE_CHANGES = (
    f"SELECT DISTINCT site_id FROM (({_CURRENT_SITES} EXCEPT SELECT site_id, tenant FROM "  # noqa: S608
    f"funnel_sites) UNION ALL (SELECT site_id, tenant FROM funnel_sites EXCEPT {_CURRENT_SITES}))"
)
"""Sites that are new, gone or moved to another tenant since the last fold."""
_LOCK = threading.Lock()


def table_of(event: str) -> str:
    """The step table of an event type (a fixed name from the migration, never input)."""
    if event not in FUNNEL_STEP_TYPES:
        raise ValueError(f"no funnel step table for event type '{event}'")
    return f"funnel_{event}"


def usable(store: Store) -> bool:
    return store.backend == "duckdb"


def refresh(store: Store) -> int:
    """Bring the step tables up to date with events and identities; returns rows written."""
    if not usable(store):
        return 0
    with _LOCK, store.transaction(None) as tx:
        return _fold(tx)


def forget_erased(tx: Transaction, values: list[str]) -> None:
    """Drop the rows of erased identifiers inside the erase's own transaction, so nothing
    derived from them outlives it (the next fold would drop them too)."""
    if not values:
        return
    keys = ", ".join(TOKEN_KEY.format("CAST(? AS VARCHAR)") for _ in values)
    for event in FUNNEL_STEP_TYPES:
        tx.query(f"DELETE FROM {table_of(event)} WHERE token_key IN ({keys})", values)  # noqa: S608


def forget_before(tx: Transaction, cutoff: datetime) -> int:
    """Drop rows of events older than ``cutoff`` (data retention, in its transaction)."""
    deleted = 0
    for event in FUNNEL_STEP_TYPES:
        rows = tx.query(f"DELETE FROM {table_of(event)} WHERE ts < ?", [cutoff])  # noqa: S608
        deleted += int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0
    return deleted


def _fold(tx: Transaction) -> int:
    last, hash_check, nodes_check = tx.query(
        "SELECT last_event_id, hash_check, nodes_check FROM funnel_state WHERE id = 1"
    )[0]
    last = int(last)
    top = int(tx.query("SELECT coalesce(max(event_id), 0) FROM events")[0][0])
    current_hash = int(tx.query(_HASH_CHECK)[0][0])
    fingerprint = _nodes_fingerprint(tx)
    sites_changed = bool(tx.query(f"SELECT count(*) FROM ({_SITE_CHANGES})")[0][0])  # noqa: S608
    if hash_check is not None and int(hash_check) != current_hash:
        log.warning("DuckDB's hash function changed: rebuilding the funnel step tables")
        last = 0
    elif top <= last and fingerprint == nodes_check and not sites_changed:
        return 0  # nothing new: a funnel on a quiet store pays only these few lookups
    written = 0
    if last == 0:
        _clear(tx)
    else:
        written += _resolve_again(tx, last, identities_changed=fingerprint != nodes_check)
    if top > last:
        written += _append(tx, "e.event_id > ? AND e.event_id <= ?", [last, top])
    # Retention deletes the step rows with the events; rows older than every event are
    # gone events all the same (a safety net, like the count check below).
    oldest = tx.query("SELECT min(ts) FROM events")[0][0]
    for event in FUNNEL_STEP_TYPES:
        if oldest is None:
            tx.query(f"DELETE FROM {table_of(event)}")  # noqa: S608
        else:
            tx.query(f"DELETE FROM {table_of(event)} WHERE ts < ?", [oldest])  # noqa: S608
    if fingerprint != nodes_check or last == 0:
        tx.query("DELETE FROM funnel_nodes")
        tx.query(f"INSERT INTO funnel_nodes SELECT {_NODE_COLUMNS} FROM identity_nodes")  # noqa: S608
    top = max(top, last)
    if not _counts_agree(tx, top):
        log.warning("funnel step tables disagreed with the events: rebuilt")
        _clear(tx)
        written = _append(tx, "e.event_id <= ?", [top])
    tx.query(
        "UPDATE funnel_state SET last_event_id = ?, hash_check = ?, nodes_check = ?, "
        "refreshed_at = ? WHERE id = 1",
        [top, current_hash, fingerprint, datetime.now(UTC).replace(tzinfo=None)],
    )
    return written


def _resolve_again(tx: Transaction, last: int, *, identities_changed: bool) -> int:
    """Resolve again the folded rows of identifiers whose nodes changed and of sites whose
    tenant changed: delete them, append them from the events with today's identities."""
    tx.query("CREATE OR REPLACE TEMP TABLE funnel_changed_sites AS " + _SITE_CHANGES)
    tx.query("DELETE FROM funnel_sites")
    tx.query(f"INSERT INTO funnel_sites {_CURRENT_SITES}")
    if identities_changed:
        tx.query(
            "CREATE OR REPLACE TEMP TABLE funnel_changed_keys AS "  # noqa: S608
            f"SELECT DISTINCT {TOKEN_KEY.format('value')} AS token_key FROM ("
            f"(SELECT {_NODE_COLUMNS} FROM identity_nodes "
            f"EXCEPT SELECT {_NODE_COLUMNS} FROM funnel_nodes) UNION ALL "
            f"(SELECT {_NODE_COLUMNS} FROM funnel_nodes "
            f"EXCEPT SELECT {_NODE_COLUMNS} FROM identity_nodes))"
        )
    else:
        tx.query("CREATE OR REPLACE TEMP TABLE funnel_changed_keys (token_key BIGINT)")
    stale = (
        "token_key IN (SELECT token_key FROM funnel_changed_keys) "
        "OR site_id IN (SELECT site_id FROM funnel_changed_sites)"
    )
    for event in FUNNEL_STEP_TYPES:
        tx.query(f"DELETE FROM {table_of(event)} WHERE {stale}")  # noqa: S608
    # The same keys as the delete (not the values): a value sharing a key with a changed
    # one is deleted and appended again alike.
    written = _append(
        tx,
        f"e.event_id <= ? AND ({TOKEN_KEY.format('e.token')} IN "  # noqa: S608 - fixed names
        "(SELECT token_key FROM funnel_changed_keys) "
        "OR e.site_id IN (SELECT site_id FROM funnel_changed_sites))",
        [last],
    )
    tx.query("DROP TABLE funnel_changed_keys")
    tx.query("DROP TABLE funnel_changed_sites")
    return written


def _nodes_fingerprint(tx: Transaction) -> str:
    """Changes when any node changes (one pass over the nodes, no comparison with the copy)."""
    count, mixed = tx.query(
        f"SELECT count(*), coalesce(bit_xor(hash({_NODE_COLUMNS})), 0) FROM identity_nodes"  # noqa: S608
    )[0]
    return f"{count}:{mixed}"


def _clear(tx: Transaction) -> None:
    for event in FUNNEL_STEP_TYPES:
        tx.query(f"DELETE FROM {table_of(event)}")  # noqa: S608
    tx.query("DELETE FROM funnel_nodes")
    tx.query("DELETE FROM funnel_sites")
    tx.query(f"INSERT INTO funnel_sites {_CURRENT_SITES}")


def _append(tx: Transaction, selection: str, params: list[Any]) -> int:
    """Resolve the selected events' persons (as ``events_with_persons`` does) and append
    them to their type's table in time order."""
    key = TOKEN_KEY.format("e.token")
    tx.query(
        "CREATE OR REPLACE TEMP TABLE funnel_staged AS "  # noqa: S608 - fixed names only
        f"SELECT e.event, e.site_id, e.ts, {key} AS token_key, "
        f"coalesce(-n.person_id, {key}) AS pk, {', '.join(f'e.{c}' for c in BREAKDOWN_COLUMNS)} "
        "FROM events e JOIN funnel_sites s ON s.site_id = e.site_id "
        "LEFT JOIN identity_nodes n ON n.tenant = s.tenant AND n.value = e.token "
        "AND n.kind = e.id_kind AND e.ts >= n.valid_from AND e.ts < n.valid_to "
        f"WHERE NOT e.ephemeral AND ({selection})",
        params,
    )
    written = 0
    for event in FUNNEL_STEP_TYPES:
        rows = tx.query(
            f"INSERT INTO {table_of(event)} SELECT site_id, ts, token_key, pk, "  # noqa: S608
            f"{', '.join(BREAKDOWN_COLUMNS)} FROM funnel_staged WHERE event = ? ORDER BY ts",
            [event],
        )
        written += int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0
    tx.query("DROP TABLE funnel_staged")
    return written


def _counts_agree(tx: Transaction, top: int) -> bool:
    """Every non-ephemeral event of a known site and type up to ``top`` has exactly one row."""
    types = ", ".join("?" * len(FUNNEL_STEP_TYPES))
    stored = sum(
        int(tx.query(f"SELECT count(*) FROM {table_of(event)}")[0][0])  # noqa: S608
        for event in FUNNEL_STEP_TYPES
    )
    expected = int(
        tx.query(
            "SELECT count(*) FROM events WHERE NOT ephemeral AND event_id <= ? "  # noqa: S608
            f"AND site_id IN (SELECT site_id FROM sites) AND event IN ({types})",
            [top, *FUNNEL_STEP_TYPES],
        )[0][0]
    )
    return stored == expected
