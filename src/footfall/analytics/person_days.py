"""Person days: the daily presence rollup with every row's person already resolved.

The person reports (overview, people per period, retention, power users, A/B) used to join
every rollup row of the range to the identity graph at query time: at 100M events that is
some 25M rows hashed against the nodes before anything is counted, and every report grew
with the events. ``person_days`` holds one row per (site, day, person key ``pk``, ephemeral)
with the counts those reports sum, so a report reads a few million integer-keyed rows and
never touches the graph. ``first_of_day`` marks one row of each person and day (the first
site's): with every site chosen, people per day is a count of those rows, not a distinct
count. Each row also carries the person's previous active day and first day, over every
site (``prev_day`` on the ``first_of_day`` rows, ``first_day``) and on its own site
(``site_prev_day``, ``site_first_day``): the persons active in any range or period are the
rows whose previous day lies before it, and retention cohorts come from the first day, so
those reports count rows too.

It is derived from ``daily_presence`` and the identity graph, folded in the daily rollup's
own transaction (``reports.refresh_presence``), so a report never sees one without the
other:

- new events: the rows of the persons their identifiers belong to, on the days they fall
  on, are rebuilt from the rollup (only those days' rollup rows are read);
- identity changes (merge, split, a token taken over, an erase) are found by comparing the
  nodes with a copy taken at the last fold, as the funnel step tables do; the rows of every
  person an identifier whose nodes changed belonged to, before or after, are rebuilt;
- a site new, gone or moved to another tenant rebuilds the table;
- erase and data retention delete rows in their own transactions (retention then takes
  the marks that pointed at deleted days from the days kept).

The marks of a key rebuilt on every day come with its rows; a key rebuilt on some days only
(new events) is marked again from the earliest such day on, since a late event on an old
day moves the previous day of its later rows (rows before that day keep theirs).

A rollup row is per identifier and day. When one of the identifier's nodes begins or ends
inside the row's first and last event (a token taken over that day), the row belongs to
two persons and its counts cannot be divided from the rollup: those identifier-days are
resolved event by event from the events table, so every report equals the events path.

A count check (every event of the rollup counted once) runs after a build and hourly; a
disagreement rebuilds the table. Both stores keep it; on PostgreSQL the rollup's fold (and
so this one) takes the events below the snapshot's xmin (``watermark``).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from footfall.analytics.dialect import Dialect, dialect_of
from footfall.analytics.identifier_days import event_counts
from footfall.analytics.watermark import Window
from footfall.store.base import Store, Transaction, affected_rows

log = logging.getLogger("footfall.person_days")

FOLDS = Counter("footfall_person_day_folds_total", "Folds that changed the person days table")
CHECK_EVERY = timedelta(hours=1)
_NODE_COLUMNS = "tenant, kind, value, person_id, valid_from, valid_to"
_CURRENT_SITES = "SELECT site_id, coalesce(tenant, site_id) AS tenant FROM sites"
_SITE_CHANGES = (
    f"SELECT DISTINCT site_id FROM (({_CURRENT_SITES} EXCEPT SELECT site_id, tenant FROM "  # noqa: S608
    f"person_days_sites) UNION ALL (SELECT site_id, tenant FROM person_days_sites "
    f"EXCEPT {_CURRENT_SITES})) moved"
)
_COUNTS = ("events", "visits", "orders", "conversations", "messages")
_SCOPED = (
    "d.pk = {t}.pk AND (d.site_id IS NULL OR d.site_id = {t}.site_id) "
    "AND (d.day IS NULL OR d.day = {t}.day)"
)
"""A row of ``{t}`` lies in the dirty scope ``pd_dirty d`` (a NULL site or day: all)."""
_SITE_KEY = "site_id, pk, ephemeral"
_MARK_COLUMNS = ("prev_day", "first_day", "site_prev_day", "site_first_day")
_MARKS = (
    "CASE WHEN first_of_day THEN lag(day) OVER (PARTITION BY pk, ephemeral, first_of_day "
    "ORDER BY day) END AS prev_day, min(day) OVER (PARTITION BY pk, ephemeral) AS first_day, "
    f"lag(day) OVER (PARTITION BY {_SITE_KEY} ORDER BY day) AS site_prev_day, "
    f"min(day) OVER (PARTITION BY {_SITE_KEY}) AS site_first_day"
)
"""A row's previous active day and first day: over every site on the day's first row
(``first_of_day``, one per key and day), and on the row's own site."""
_TEMP_TABLES = ("pd_new", "pd_changed", "pd_dirty", "pd_members", "pd_member_nodes")


def fold(tx: Transaction, window: Window, dialect: Dialect) -> int:
    """Bring person days up to date inside the rollup's fold; returns rows written.

    ``window`` (on ``events e``) is the rollup's: its new events are the ones just taken
    in, and its ``folded`` condition every event the rollup holds (for identifier-days read
    event by event). Cheap when nothing changed: a hash over the nodes, two small lookups."""
    new_events = None if window.empty else window.condition
    params = window.params
    folded = (window.folded, window.folded_params)
    state = tx.query(
        "SELECT built, hash_check, nodes_check, checked_at FROM person_days_state WHERE id = 1"
    )[0]
    built, hash_check, nodes_check, checked_at = state
    now = datetime.now(UTC).replace(tzinfo=None)
    current_hash = int(tx.query("SELECT " + dialect.unlinked_key("'footfall person days'"))[0][0])
    fingerprint = nodes_fingerprint(tx, dialect)
    sites_changed = sites_moved(tx)
    # A site new, gone or moved changes which of a person's rows comes first on a day on the
    # other sites too: rare enough to rebuild everything.
    rebuild = (
        not built or sites_changed or (hash_check is not None and int(hash_check) != current_hash)
    )
    if not rebuild and new_events is None and fingerprint == nodes_check:
        return 0
    if rebuild:
        written = _build(tx, folded, dialect)
        checked_at = None
    else:
        written = _rebuild_dirty(
            tx, new_events, params, folded, dialect, identities=fingerprint != nodes_check
        )
    if checked_at is None or now - checked_at > CHECK_EVERY:
        checked_at = now
        if not _counts_agree(tx):
            log.warning("person days disagreed with the daily rollup: rebuilt")
            written = _build(tx, folded, dialect)
    if rebuild:
        tx.query("DELETE FROM person_days_nodes")
        tx.query(f"INSERT INTO person_days_nodes SELECT {_NODE_COLUMNS} FROM identity_nodes")  # noqa: S608
    tx.query(
        "UPDATE person_days_state SET built = TRUE, hash_check = ?, nodes_check = ?, "
        "checked_at = ?, refreshed_at = ? WHERE id = 1",
        [current_hash, fingerprint, checked_at, now],
    )
    if written:
        FOLDS.inc()
    return written


def unchanged(store: Store) -> bool:
    """Nothing for a fold without new events to do: a look outside the fold's lock (a
    change committed meanwhile is seen by the next one)."""
    dialect = dialect_of(store)
    rows = store.query("SELECT built, nodes_check FROM person_days_state WHERE id = 1")
    return (
        bool(rows)
        and bool(rows[0][0])
        and rows[0][1] == nodes_fingerprint(store, dialect)
        and not sites_moved(store)
    )


def sites_moved(tx: Transaction | Store) -> bool:
    return bool(tx.query(f"SELECT count(*) FROM ({_SITE_CHANGES}) c")[0][0])  # noqa: S608


def forget_erased(
    tx: Transaction, dialect: Dialect, person_id: int, values: list[str], tenant: str
) -> None:
    """Drop an erased person's rows (and those of their identifiers' unlinked keys) inside
    the erase's own transaction; the next fold finds the same rows gone from the rollup."""
    keys = ", ".join(dialect.unlinked_key("CAST(? AS VARCHAR)") for _ in values) or "NULL"
    tx.query(
        f"DELETE FROM person_days WHERE (pk = ? OR pk IN ({keys})) AND site_id IN "  # noqa: S608
        "(SELECT site_id FROM sites WHERE coalesce(tenant, site_id) = ?)",
        [-person_id, *values, tenant],
    )


def _build(tx: Transaction, folded: tuple[str, list[Any]], dialect: Dialect) -> int:
    tx.query("DELETE FROM person_days")
    tx.query("DELETE FROM person_days_sites")
    tx.query(f"INSERT INTO person_days_sites {_CURRENT_SITES}")
    return _resolve(tx, "TRUE", [], folded, dialect, scoped=False)


def _rebuild_dirty(
    tx: Transaction,
    new_events: str | None,
    params: list[Any],
    folded: tuple[str, list[Any]],
    dialect: Dialect,
    *,
    identities: bool,
) -> int:
    """Rebuild the (site, day, person) rows that new events or changed nodes touch.

    ``pd_dirty`` holds the scope (a NULL site and day: every day of that person key);
    ``pd_members`` every identifier whose rollup rows may resolve to a key in it."""
    dialect.temp_table(tx, "pd_dirty", "(site_id VARCHAR, day DATE, pk BIGINT)")
    dialect.temp_table(tx, "pd_members", "(tenant VARCHAR, kind VARCHAR, value VARCHAR)")
    days: list[date] = []
    if identities:
        # Identifiers whose nodes differ from the copy: their unlinked key and every person
        # they belonged to before or belong to now are dirty on every day.
        dialect.temp_table(
            tx,
            "pd_changed",
            "AS SELECT DISTINCT tenant, kind, value FROM ("  # noqa: S608
            f"(SELECT {_NODE_COLUMNS} FROM identity_nodes "
            f"EXCEPT SELECT {_NODE_COLUMNS} FROM person_days_nodes) UNION ALL "
            f"(SELECT {_NODE_COLUMNS} FROM person_days_nodes "
            f"EXCEPT SELECT {_NODE_COLUMNS} FROM identity_nodes)) c",
        )
        every_day = "CAST(NULL AS VARCHAR), CAST(NULL AS DATE)"
        tx.query(
            f"INSERT INTO pd_dirty SELECT {every_day}, {dialect.unlinked_key('value')} "  # noqa: S608
            f"FROM pd_changed UNION SELECT {every_day}, -n.person_id FROM identity_nodes n "
            "JOIN pd_changed c ON c.tenant = n.tenant AND c.kind = n.kind AND c.value = n.value "
            f"UNION SELECT {every_day}, -o.person_id FROM person_days_nodes o "
            "JOIN pd_changed c ON c.tenant = o.tenant AND c.kind = o.kind AND c.value = o.value"
        )
        tx.query("INSERT INTO pd_members SELECT tenant, kind, value FROM pd_changed")
        # The copy takes the changed identifiers' nodes alone, not the whole graph again.
        changed = " AND ".join(f"c.{k} = {{t}}.{k}" for k in ("tenant", "kind", "value"))
        tx.query(
            "DELETE FROM person_days_nodes USING pd_changed c "  # noqa: S608
            f"WHERE {changed.format(t='person_days_nodes')}"
        )
        tx.query(
            f"INSERT INTO person_days_nodes SELECT {_NODE_COLUMNS} FROM identity_nodes n "  # noqa: S608
            f"WHERE EXISTS (SELECT 1 FROM pd_changed c WHERE {changed.format(t='n')})"
        )
    if new_events is not None:
        dialect.temp_table(
            tx,
            "pd_new",
            "AS SELECT DISTINCT e.site_id, CAST(e.ts AS DATE) AS day, s.tenant, "  # noqa: S608
            "e.id_kind AS kind, e.token AS value FROM events e "
            f"JOIN person_days_sites s ON s.site_id = e.site_id WHERE {new_events}",
            params,
        )
        tx.query(
            "INSERT INTO pd_dirty SELECT CAST(NULL AS VARCHAR), day, "  # noqa: S608
            f"{dialect.unlinked_key('value')} FROM pd_new UNION SELECT CAST(NULL AS VARCHAR), "
            "x.day, -n.person_id FROM pd_new x JOIN identity_nodes n "
            "ON n.tenant = x.tenant AND n.kind = x.kind AND n.value = x.value"
        )
        tx.query("INSERT INTO pd_members SELECT DISTINCT tenant, kind, value FROM pd_new")
        if not identities:
            days = [d for (d,) in tx.query("SELECT DISTINCT day FROM pd_new ORDER BY 1")]
    # Every other identifier of a dirty person may hold some of its rows.
    tx.query(
        "INSERT INTO pd_members SELECT n.tenant, n.kind, n.value FROM identity_nodes n "
        "WHERE n.person_id IN (SELECT -pk FROM pd_dirty WHERE pk < 0)"
    )
    if dialect.name == "duckdb":
        by_day, day_params = _days_condition("person_days.day", days)
        tx.query(
            "DELETE FROM person_days USING pd_dirty d "  # noqa: S608 - fixed names
            f"WHERE {_SCOPED.format(t='person_days')} AND {by_day}",
            day_params,
        )
    else:  # the dirty keys' rows by the key index (migration 17)
        by_day, day_params = _days_condition("x.day", days)
        rows = dialect.index_lookup("person_days", "x", f"{_SCOPED.format(t='x')} AND {by_day}")
        tx.query(
            "DELETE FROM person_days WHERE ctid = ANY(ARRAY("  # noqa: S608 - fixed names
            f"SELECT x.ctid FROM pd_dirty d {rows}))",
            day_params,
        )
    selection, selection_params = _days_condition("p.day", days)
    selection += (
        " AND EXISTS (SELECT 1 FROM pd_members m WHERE m.tenant = s.tenant "
        "AND m.kind = p.id_kind AND m.value = p.token)"
    )
    # Their nodes alone: a small table to join, where the whole graph would be hashed.
    dialect.temp_table(
        tx,
        "pd_member_nodes",
        "AS SELECT n.* FROM identity_nodes n WHERE EXISTS (SELECT 1 FROM pd_members m "
        "WHERE m.tenant = n.tenant AND m.kind = n.kind AND m.value = n.value)",
    )
    written = _resolve(
        tx, selection, selection_params, folded, dialect, scoped=True, nodes="pd_member_nodes"
    )
    for table in _TEMP_TABLES:
        tx.query(f"DROP TABLE IF EXISTS {table}")
    return written


def _days_condition(column: str, days: list[date]) -> tuple[str, list[Any]]:
    if not days:
        return "TRUE", []
    return f"{column} IN ({', '.join('?' * len(days))})", list(days)


def _resolve(
    tx: Transaction,
    selection: str,
    params: list[Any],
    folded: tuple[str, list[Any]],
    dialect: Dialect,
    *,
    scoped: bool,
    nodes: str = "identity_nodes",
) -> int:
    """Resolve the selected rollup rows (``p``, with their site ``s``) and insert their
    person days; ``scoped`` keeps only the keys in ``pd_dirty``; ``nodes`` holds at least
    the selected identifiers' nodes."""
    dialect.temp_table(
        tx,
        "pd_rows",
        "AS SELECT p.*, n.person_id, n.valid_from, n.valid_to "  # noqa: S608
        "FROM daily_presence p JOIN person_days_sites s ON s.site_id = p.site_id "
        f"LEFT JOIN {nodes} n ON n.tenant = s.tenant AND n.value = p.token "
        "AND n.kind = p.id_kind AND n.valid_from <= p.last_ts AND p.first_ts < n.valid_to "
        f"WHERE {selection}",
        params,
    )
    # Identifier-days a node begins or ends inside of: their events, one by one.
    dialect.temp_table(
        tx,
        "pd_split",
        "AS SELECT DISTINCT site_id, day, id_kind, token FROM pd_rows "
        "WHERE person_id IS NOT NULL AND NOT (valid_from <= first_ts AND last_ts < valid_to)",
    )
    split_days = tx.query("SELECT min(day), max(day) FROM pd_split")[0]
    unlinked = dialect.unlinked_key("r.token")
    parts = [
        f"SELECT r.site_id, r.day, coalesce(-r.person_id, {unlinked}) AS pk, r.person_id, "  # noqa: S608
        "r.token, r.ephemeral, r.first_ts, r.events, r.visits, r.orders, r.conversations, "
        "r.messages, r.revenue, r.ab_group, r.ab_ts FROM pd_rows r WHERE NOT EXISTS "
        "(SELECT 1 FROM pd_split x WHERE x.site_id = r.site_id AND x.day = r.day "
        "AND x.id_kind = r.id_kind AND x.token = r.token)"
    ]
    part_params: list[Any] = []
    if split_days[0] is not None:
        key = dialect.unlinked_key("e.token")
        parts.append(
            "SELECT e.site_id, CAST(e.ts AS DATE), coalesce(-n.person_id, "  # noqa: S608
            f"{key}), n.person_id, e.token, e.ephemeral, min(e.ts), "
            f"{event_counts(dialect, 'e.')} FROM events e JOIN pd_split x "
            "ON x.site_id = e.site_id AND x.id_kind = e.id_kind AND x.token = e.token "
            "AND x.day = CAST(e.ts AS DATE) "
            "JOIN person_days_sites s ON s.site_id = e.site_id "
            f"LEFT JOIN {nodes} n ON n.tenant = s.tenant AND n.value = e.token "
            "AND n.kind = e.id_kind AND e.ts >= n.valid_from AND e.ts < n.valid_to "
            f"WHERE e.ts >= ? AND e.ts < ? AND {folded[0]} "
            "GROUP BY 1, 2, 3, 4, 5, 6"
        )
        part_params = [
            datetime.combine(split_days[0], datetime.min.time()),
            datetime.combine(split_days[1] + timedelta(days=1), datetime.min.time()),
            *folded[1],
        ]
    in_scope = _SCOPED.format(t="g")
    keep = f"WHERE EXISTS (SELECT 1 FROM pd_dirty d WHERE {in_scope})" if scoped else ""  # noqa: S608
    sums = ", ".join(f"sum({c})" for c in _COUNTS)
    # The marks are exact where every day of a key is written (a build, a key dirty on
    # every day); keys dirty on some days are marked again over all their rows below.
    written = affected_rows(
        tx.query(
            f"INSERT INTO person_days SELECT m.*, {_MARKS} FROM (SELECT g.*, "  # noqa: S608
            "row_number() OVER (PARTITION BY day, pk, ephemeral ORDER BY site_id) = 1 "
            "AS first_of_day FROM (SELECT site_id, day, pk, max(person_id), "
            f"min(token), ephemeral, min(first_ts), {sums}, sum(revenue), "
            f"{dialect.first_by('ab_group', 'ab_ts', 'ab_group IS NOT NULL')}, min(ab_ts) "
            f"FROM ({' UNION ALL '.join(parts)}) u GROUP BY site_id, day, pk, ephemeral) g "
            # By day: each day's rows close together, so a fold's look at a few days skips
            # the other row groups by their statistics.
            f"{keep}) m ORDER BY m.day",
            part_params,
        )
    )
    if scoped:
        _mark_again(tx, dialect)
    tx.query("DROP TABLE pd_rows")
    tx.query("DROP TABLE pd_split")
    return written


def _mark_again(tx: Transaction, dialect: Dialect) -> None:
    """Marks again of the keys dirty on some days only, on the days from the earliest
    dirty one: a late event on an old day changes the previous day of the key's later rows,
    a new first day all its rows' (and then no row lies before it)."""
    differs = " OR ".join(f"p.{c} IS DISTINCT FROM w.{c}" for c in _MARK_COLUMNS)
    # Rows before a key's first dirty day keep their marks (their previous days lie before
    # it; a first day moves only when no row was there before): the update looks at the
    # days from the earliest dirty one.
    since = tx.query("SELECT min(day) FROM pd_dirty WHERE day IS NOT NULL")[0][0]
    if since is None:
        return
    assignments = ", ".join(f"{c} = w.{c}" for c in _MARK_COLUMNS)
    keys = "SELECT DISTINCT pk FROM pd_dirty WHERE day IS NOT NULL"
    if dialect.name == "duckdb":
        tx.query(
            f"UPDATE person_days p SET {assignments} "  # noqa: S608
            f"FROM (SELECT site_id, day, pk, ephemeral, {_MARKS} FROM person_days "
            f"WHERE pk IN ({keys})) w "
            "WHERE p.site_id = w.site_id AND p.day = w.day AND p.pk = w.pk "
            f"AND p.ephemeral = w.ephemeral AND p.day >= ? AND w.day >= ? AND ({differs})",
            [since, since],
        )
        return
    # PostgreSQL: the keys' rows by the key index (migration 17), each updated by its ctid.
    rows = dialect.index_lookup("person_days", "x", "x.pk = d.pk")
    with dialect.row_joins(tx):
        tx.query(
            f"UPDATE person_days p SET {assignments} FROM (SELECT ctid, day, {_MARKS} "  # noqa: S608
            f"FROM (SELECT x.* FROM ({keys}) d {rows}) r) w "
            f"WHERE p.ctid = w.ctid AND w.day >= ? AND ({differs})",
            [since],
        )


def forget_before(tx: Transaction, day: date) -> int:
    """Data retention: drop the days before ``day``; the marks that pointed at them are
    taken from the days kept (a person's first day is then their first day kept)."""
    deleted = affected_rows(tx.query("DELETE FROM person_days WHERE day < ?", [day]))
    if deleted:
        for previous in ("prev_day", "site_prev_day"):
            tx.query(
                f"UPDATE person_days SET {previous} = NULL WHERE {previous} < ?",  # noqa: S608
                [day],
            )
        for first, keys in (("first_day", "pk, ephemeral"), ("site_first_day", _SITE_KEY)):
            joined = " AND ".join(f"p.{k} = f.{k}" for k in keys.split(", "))
            tx.query(
                f"UPDATE person_days p SET {first} = f.kept FROM (SELECT {keys}, min(day) "  # noqa: S608
                f"AS kept FROM person_days WHERE {first} < ? GROUP BY {keys}) f WHERE {joined}",
                [day],
            )
    return deleted


def nodes_fingerprint(tx: Transaction | Store, dialect: Dialect) -> str:
    """Changes when any node changes: one pass over the nodes, no comparison with the copy."""
    if dialect.name == "duckdb":
        mixed = f"bit_xor(hash({_NODE_COLUMNS}))"
    else:
        mixed = f"sum(hashtextextended(concat_ws('|', {_NODE_COLUMNS}), 0))"
    count, total = tx.query(f"SELECT count(*), coalesce({mixed}, 0) FROM identity_nodes")[0]  # noqa: S608
    return f"{count}:{total}"


def _counts_agree(tx: Transaction) -> bool:
    """Every event the rollup holds for a known site is in exactly one person day."""
    stored = tx.query("SELECT coalesce(sum(events), 0) FROM person_days")[0][0]
    expected = tx.query(
        "SELECT coalesce(sum(events), 0) FROM daily_presence "
        "WHERE site_id IN (SELECT site_id FROM person_days_sites)"
    )[0][0]
    return int(stored) == int(expected)
