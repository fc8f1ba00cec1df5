"""Analytics as SQL inside the store; persons come from the identity graph at query time.

Every report takes a ``Filters`` (sites and a half-open time range) and returns plain JSON
data, so the HTTP API, the terminal reports and the dashboard show the same numbers. The
heavy lifting (distinct persons, cohorts, ordered funnels, revenue) happens in the
database; Python only shapes rows and computes the closed-form A/B statistics from the
aggregates. Persons are the connected components of the identity graph, resolved through
the ``event_persons`` view, so a merge changes every report at once. Derived tables take
work off the heaviest reports, folded in before they are read so merges still apply at
once: the daily presence rollup (``refresh_presence``, both stores; PostgreSQL folds it by
a transaction-id watermark, ``footfall.analytics.watermark``) and, on DuckDB, the funnel
step tables (``footfall.funnel_steps``).

Decisions where the spec is silent:
- Ephemeral tokens (no consent, tracking off) live for one page view; counting each as a
  person would inflate "unique people", so people counts leave them out and report them
  apart as ``ephemeral_visits``.
- A purchase counts as an order unless it repeats an earlier ``orderNum`` of its site;
  revenue sums the EUR totals of those orders (an unknown currency has no EUR total and
  is counted in ``orders_without_eur``).
- Funnels start at each person's first step-1 event in the range; later steps must follow
  in order within the conversion window measured from that first step.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from footfall.analytics import form_events, funnel_steps, identifier_days, person_days, watermark
from footfall.analytics.dialect import Dialect, dialect_of
from footfall.ingest.validate import EVENT_TYPES, custom_event_name
from footfall.store.base import HASH_JOINS, PERSON_ORDER, Store
from footfall.store.migrations import FUNNEL_STEP_TYPES

INTERVALS = ("day", "week", "month")
BREAKDOWNS = ("popup_version", "open_way", "chatbot_id", "ab_group")
DEFAULT_FUNNEL = ("visitor", "bot_open", "convo_started", "message_sent", "purchase")
MAX_FUNNEL_STEPS = 8
DEFAULT_DAYS = 30


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which events a report reads: sites (None = all) and the half-open range [start, end)."""

    sites: tuple[str, ...] | None
    start: datetime
    end: datetime

    @classmethod
    def last_days(cls, days: int = DEFAULT_DAYS, sites: Sequence[str] | None = None) -> Filters:
        end = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time())
        return cls(tuple(sites) if sites else None, end - timedelta(days=days), end)

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        """The SQL condition and its parameters; ``alias`` prefixes the columns."""
        prefix = f"{alias}." if alias else ""
        clauses = [f"{prefix}ts >= ?", f"{prefix}ts < ?"]
        params: list[Any] = [self.start, self.end]
        if self.sites:
            clauses.append(f"{prefix}site_id IN ({', '.join('?' * len(self.sites))})")
            params.extend(self.sites)
        return " AND ".join(clauses), params

    def describe(self) -> dict[str, Any]:
        return {
            "sites": list(self.sites) if self.sites else None,
            "start": _iso(self.start),
            "end": _iso(self.end),
        }


def events_with_persons(
    store: Store,
    filters: Filters,
    *,
    since_beginning: bool = False,
    only: Sequence[str] = (),
    tokens: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """A row source: the filtered events, each with its ``person_id`` and person key ``pk``.

    ``since_beginning`` drops the range's start (cohorts need each person's first visit);
    ``only`` keeps these event types alone, and ``tokens`` these identifier values, before
    the identity join (a few types of many, a few persons' identifiers).
    """
    return _with_persons(
        store,
        filters,
        since_beginning=since_beginning,
        only=only,
        tokens=tokens,
    )


def _with_persons(
    store: Store,
    filters: Filters,
    *,
    since_beginning: bool,
    only: Sequence[str] = (),
    table: str | None = None,
    tokens: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """``table`` reads another table with the events' columns it needs (form_events).

    The identity join names its tenant as a constant (one branch per tenant of the chosen
    sites), so the database hash-joins on the identifier alone instead of joining the sites
    table for every row."""
    dialect = dialect_of(store)
    tenants: dict[str, list[str]] = {}
    for site_id, tenant in store.query("SELECT site_id, coalesce(tenant, site_id) FROM sites"):
        if filters.sites is None or site_id in filters.sites:
            tenants.setdefault(tenant, []).append(site_id)
    table = table or "events"
    if not tenants:
        return (
            "SELECT e.*, CAST(NULL AS BIGINT) AS person_id, CAST(NULL AS BIGINT) AS pk "  # noqa: S608
            f"FROM {table} e WHERE FALSE"
        ), []
    column, bounds = "e.ts", [filters.start, filters.end]
    valid = "e.ts >= n.valid_from AND e.ts < n.valid_to"
    if since_beginning:
        bounds = bounds[1:]
    # All sites of a single-tenant install: no site condition to test on every row.
    every_site = filters.sites is None and len(tenants) == 1
    pk = dialect.person_key("n.person_id", "e.token")
    parts: list[str] = []
    params: list[Any] = []
    for tenant, site_ids in sorted(tenants.items()):
        conditions = [f"{column} < ?"] if since_beginning else [f"{column} >= ?", f"{column} < ?"]
        if not every_site:
            conditions.append(f"e.site_id IN ({', '.join('?' * len(site_ids))})")
        if only:
            conditions.append(f"e.event IN ({', '.join('?' * len(only))})")
        if tokens:
            conditions.append(f"e.token IN ({', '.join('?' * len(tokens))})")
        parts.append(
            f"SELECT e.*, n.person_id, {pk} AS pk FROM {table} e "  # noqa: S608
            "LEFT JOIN identity_nodes n ON n.tenant = ? AND n.value = e.token "
            f"AND n.kind = e.id_kind AND {valid} WHERE {' AND '.join(conditions)}"
        )
        params += [tenant, *bounds, *([] if every_site else site_ids), *only, *tokens]
    return " UNION ALL ".join(parts), params


_PRESENCE_LOCK = threading.Lock()


def presence_usable(store: Store, filters: Filters) -> bool:
    """The rollup answers whole days (on both stores); anything else reads events."""
    midnight = datetime.min.time()
    return filters.start.time() == midnight and filters.end.time() == midnight


def refresh_presence(store: Store) -> int:
    """Fold events added since the last refresh into the rollup; returns the days touched.

    The new events come from ``watermark.new_events`` (event ids on DuckDB, transaction ids
    on PostgreSQL, where writers commit out of order). On DuckDB they are grouped and
    combined with the rows already held; on PostgreSQL their identifiers' rows are rebuilt
    from the events; either way in one transaction with the new mark, so a reader never
    sees half a fold.
    The rollup is per identifier, not per person; the same transaction folds it and the
    identity graph's changes into ``person_days``, the rollup with persons resolved that the
    person reports read. Erase and retention delete the rows of both themselves.
    """
    if store.backend != "duckdb":
        return _refresh_presence_postgres(store)
    with _PRESENCE_LOCK, store.transaction(None) as tx:
        last = watermark.read_mark(tx, store.backend, "daily_presence")
        window = watermark.new_events(tx, store.backend, last, alias="e")
        days: list[date] = []
        if not window.empty:
            days = [
                d
                for (d,) in tx.query(
                    f"SELECT DISTINCT CAST(ts AS DATE) FROM events e WHERE {window.condition}",  # noqa: S608
                    window.params,
                )
            ]
        if last == 0 and days:  # a first fold, or a migration's rebuild
            identifier_days.build(tx, window, dialect_of(store))
        elif days:
            identifier_days.merge_new(tx, window, days, dialect_of(store))
        person_days.fold(tx, window, dialect_of(store))
        if not window.empty:
            watermark.save_mark(tx, store.backend, "daily_presence", window, utcnow())
        return len(days)


def _refresh_presence_postgres(store: Store) -> int:
    """PostgreSQL rebuilds only the rollup rows (site, day, identifier) that new events
    touch, reading their events by the token index, not whole days (it has no time index
    and a day's scan is a scan of the table). The first fold builds everything at once.

    It runs serialised with every identity transaction: an erase deletes events and their
    rollup rows, and a fold reading the events before that commit must not write them back.
    A cheap look first, without that lock, leaves a report with nothing to fold unblocked.
    The same transaction folds the rollup and identity changes into ``person_days``.
    """
    dialect = dialect_of(store)
    last = watermark.read_mark(store, store.backend, "daily_presence")
    window = watermark.new_events(store, store.backend, last)
    nothing_new = (
        window.empty
        or not store.query(
            f"SELECT EXISTS (SELECT 1 FROM events WHERE {window.condition})",  # noqa: S608
            window.params,
        )[0][0]
    )
    if nothing_new and person_days.unchanged(store):
        return 0
    with _PRESENCE_LOCK, store.transaction(None) as tx:
        last = watermark.read_mark(tx, store.backend, "daily_presence")
        window = watermark.new_events(tx, store.backend, last, alias="e")
        if window.empty:
            person_days.fold(tx, window, dialect)
            return 0
        days = int(
            tx.query(
                f"SELECT count(DISTINCT CAST(ts AS DATE)) FROM events e WHERE {window.condition}",  # noqa: S608
                window.params,
            )[0][0]
        )
        if last == 0:
            identifier_days.build(tx, window, dialect)
        elif days:
            identifier_days.rebuild_touched(tx, window, dialect)
        person_days.fold(tx, window, dialect)
        watermark.save_mark(tx, store.backend, "daily_presence", window, utcnow())
        return days


@dataclass(frozen=True, slots=True)
class PersonRows:
    """A row source with persons, and how to read its time and counts: the rollups have a
    day and per-day counts where the events table has a time and an event name."""

    source: str
    params: list[Any]
    moment: str
    """A TIMESTAMP expression to truncate into periods."""
    bought: str
    """True on a row that holds an order."""
    conversations: str
    messages: str
    orders: str
    revenue: str
    group_seen: str
    """When the row's A/B group was first seen: a person's group is their earliest."""
    day_first: str | None = None
    """True on exactly one row per (day, person, ephemeral), when the source has such a
    mark (person days over every site, or one site's): people per day is then a count."""
    prev_day: str | None = None
    """On the ``day_first`` rows: the person's previous active day (NULL on their first).
    Persons active in a range are its rows whose previous day lies before the range: a
    filtered count, not a distinct count."""
    first_day: str | None = None
    """The person's first active day (for retention cohorts), beside ``prev_day``."""
    rescan: bool = False
    """The source is a table read: reading it twice costs less than materialising a
    grouped copy (the events' identity join is the other way round)."""

    @property
    def marked(self) -> bool:
        return None not in (self.day_first, self.prev_day, self.first_day)


def person_rows(
    store: Store, filters: Filters, *, since_beginning: bool = False, rollup: bool = True
) -> PersonRows:
    """Person days when they can answer (whole days; folded first), else the events."""
    if rollup and presence_usable(store, filters):
        refresh_presence(store)
        source, params = _person_days_rows(filters, since_beginning=since_beginning)
        # Marks over every site, or the one site's own; a subset of sites has none.
        marks: tuple[str | None, str | None, str | None] = (None, None, None)
        if filters.sites is None:
            marks = ("first_of_day", "prev_day", "first_day")
        elif len(filters.sites) == 1:
            marks = ("TRUE", "site_prev_day", "site_first_day")
        return PersonRows(
            source,
            params,
            "CAST(day AS TIMESTAMP)",
            "orders > 0",
            "conversations",
            "messages",
            "orders",
            "revenue",
            "ab_ts",
            *marks,
            rescan=True,
        )
    source, params = events_with_persons(store, filters, since_beginning=since_beginning)
    return PersonRows(
        source,
        params,
        "ts",
        "event = 'purchase' AND NOT duplicate",
        "CASE WHEN event = 'convo_started' THEN 1 ELSE 0 END",
        "CASE WHEN event = 'message_sent' THEN 1 ELSE 0 END",
        "CASE WHEN event = 'purchase' AND NOT duplicate THEN 1 ELSE 0 END",
        "CASE WHEN event = 'purchase' AND NOT duplicate THEN total_value_base END",
        "ts",
    )


def _person_days_rows(filters: Filters, *, since_beginning: bool) -> tuple[str, list[Any]]:
    """The range's person days: no identity join, the fold resolved every row."""
    conditions = ["day < ?"]
    params: list[Any] = [filters.end.date()]
    if not since_beginning:
        conditions.append("day >= ?")
        params.append(filters.start.date())
    if filters.sites is not None:
        conditions.append(f"site_id IN ({', '.join('?' * len(filters.sites)) or 'NULL'})")
        params += filters.sites
    return f"SELECT * FROM person_days WHERE {' AND '.join(conditions)}", params  # noqa: S608


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    return value.isoformat()


def _period(value: Any) -> str:
    """Period starts are dates; DuckDB and PostgreSQL hand them back as datetimes."""
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    return interval


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def normalise_question(text: str) -> str:
    """What ``identifier_days.normalised_text`` does in SQL, for the tests and the
    dashboard's search."""
    import re

    collapsed = re.sub(r"\s+", " ", text.lower())
    return re.sub(r"[\s!-/:-@\[-`{-~]+$", "", collapsed).strip()


# --------------------------------------------------------------------------- reports


def people_count(store: Store, filters: Filters, *, resolve_identities: bool = True) -> int:
    """Distinct persons in the range; without resolution, distinct identifiers."""
    if resolve_identities:
        source, params = events_with_persons(store, filters)
        sql = f"SELECT count(DISTINCT pk) FROM ({source}) ev WHERE NOT ephemeral"  # noqa: S608
    else:
        where, params = filters.where()
        sql = (
            "SELECT count(DISTINCT id_kind || ':' || token) FROM events "  # noqa: S608
            f"WHERE {where} AND NOT ephemeral"
        )
    return int(store.query(sql, params)[0][0])


def unique_people(
    store: Store, filters: Filters, interval: str = "day", *, events_path: bool = False
) -> dict[str, Any]:
    """Distinct persons per period and over the whole range, after identity resolution.

    One pass over the events reduces them to (period, person) pairs; both the series and
    the range total are counted from those pairs, a few times fewer rows than events.
    ``events_path`` (here and in the other person reports) skips the rollups: tests and
    benchmarks compare the two.
    """
    rows_of = person_rows(store, filters, rollup=not events_path)
    period = f"date_trunc('{_interval(interval)}', {rows_of.moment})"
    if rows_of.marked:
        # A person counts in a period on their first row in it: the one whose previous
        # day lies before the period (clipped to the range), or the range for the total.
        start = filters.start.date()
        if interval == "day":
            in_period, period_params = rows_of.day_first, []  # every marked row is new that day
        else:
            since = f"greatest(CAST({period} AS DATE), CAST(? AS DATE))"
            in_period, period_params = _new_since(rows_of, since), [start]
        counts = "count(*) FILTER (WHERE NOT ephemeral), count(*) FILTER (WHERE ephemeral)"
        rows = store.query(
            f"SELECT period, {counts} FROM (SELECT {period} AS period, ephemeral "  # noqa: S608
            f"FROM ({rows_of.source}) ev WHERE {in_period}) firsts GROUP BY 1 "
            f"UNION ALL SELECT NULL, {counts} FROM ({rows_of.source}) ev "
            f"WHERE {_new_since(rows_of, 'CAST(? AS DATE)')} ORDER BY 1 NULLS FIRST",
            [*rows_of.params, *period_params, *rows_of.params, start],
        )
        return _people_document(filters, interval, rows)
    if rows_of.rescan:
        rows = store.query(
            "SELECT period, count(*) FILTER (WHERE NOT ephemeral), "  # noqa: S608
            f"count(*) FILTER (WHERE ephemeral) FROM (SELECT DISTINCT {period} AS period, pk, "
            f"ephemeral FROM ({rows_of.source}) ev) seen GROUP BY 1 "
            f"UNION ALL {_distinct_persons(rows_of)} ORDER BY 1 NULLS FIRST",
            [*rows_of.params, *rows_of.params, *rows_of.params],
        )
        return _people_document(filters, interval, rows)
    # (period, person) pairs once; each period counts its pairs, the range its persons.
    rows = store.query(
        f"WITH seen AS MATERIALIZED (SELECT {period} AS period, pk, ephemeral "  # noqa: S608
        f"FROM ({rows_of.source}) ev GROUP BY 1, 2, 3) "
        "SELECT period, count(*) FILTER (WHERE NOT ephemeral), count(*) FILTER (WHERE ephemeral) "
        "FROM seen GROUP BY period UNION ALL "
        "SELECT NULL, count(DISTINCT pk) FILTER (WHERE NOT ephemeral), "
        "count(DISTINCT pk) FILTER (WHERE ephemeral) FROM seen ORDER BY 1 NULLS FIRST",
        rows_of.params,
    )
    return _people_document(filters, interval, rows)


def _new_since(rows_of: PersonRows, since: str) -> str:
    """True on a person's first row from ``since`` (a DATE expression) on."""
    prev = rows_of.prev_day
    return f"{rows_of.day_first} AND ({prev} IS NULL OR {prev} < {since})"


def _distinct_persons(rows_of: PersonRows) -> str:
    """A row (NULL, persons not ephemeral, ephemeral persons), reading the source twice:
    two plain distinct counts run several times faster than two filtered ones."""
    return (
        f"SELECT NULL, (SELECT count(DISTINCT pk) FROM ({rows_of.source}) ev "  # noqa: S608
        f"WHERE NOT ephemeral), (SELECT count(DISTINCT pk) FROM ({rows_of.source}) ev "
        "WHERE ephemeral)"
    )


def _people_document(
    filters: Filters, interval: str, rows: list[tuple[Any, ...]]
) -> dict[str, Any]:
    total = next((r for r in rows if r[0] is None), (None, 0, 0))
    return {
        "filters": filters.describe(),
        "interval": interval,
        "people": int(total[1]),
        "ephemeral_visits": int(total[2]),
        "series": [
            {"period": _period(r[0]), "people": int(r[1]), "ephemeral_visits": int(r[2])}
            for r in rows
            if r[0] is not None
        ],
    }


def overview(store: Store, filters: Filters, *, events_path: bool = False) -> dict[str, Any]:
    """The headline numbers and daily trends of the dashboard's first page.

    Event counts come straight from the events table; only the people counts need the
    identity join, and they are counted from (day, person) pairs.
    """
    rows_of = person_rows(store, filters, rollup=not events_path)
    daily_counts = _daily_counts(store, filters, events_path=events_path)
    if rows_of.marked:
        people_rows = store.query(
            f"SELECT {rows_of.moment}, count(*) FILTER (WHERE {rows_of.day_first}), 0 "  # noqa: S608
            f"FROM ({rows_of.source}) ev WHERE NOT ephemeral GROUP BY 1 UNION ALL "
            f"SELECT NULL, (SELECT count(*) FROM ({rows_of.source}) ev WHERE NOT ephemeral "
            f"AND {_new_since(rows_of, 'CAST(? AS DATE)')}), (SELECT count(DISTINCT pk) "
            f"FROM ({rows_of.source}) ev WHERE NOT ephemeral AND {rows_of.bought})",
            [*rows_of.params, *rows_of.params, filters.start.date(), *rows_of.params],
        )
    else:
        people_rows = store.query(
            f"WITH seen AS MATERIALIZED (SELECT date_trunc('day', {rows_of.moment}) "  # noqa: S608
            f"AS day, pk, bool_or({rows_of.bought}) AS bought "
            f"FROM ({rows_of.source}) ev WHERE NOT ephemeral GROUP BY 1, 2) "
            "SELECT day, count(*), 0 FROM seen GROUP BY day UNION ALL "
            "SELECT NULL, count(DISTINCT pk), count(DISTINCT pk) FILTER (WHERE bought) FROM seen",
            rows_of.params,
        )
    people_by_day = {_period(r[0]): int(r[1]) for r in people_rows if r[0] is not None}
    total = next((r for r in people_rows if r[0] is None), (None, 0, 0))
    people, buyers = int(total[1]), int(total[2])
    daily = [
        {
            "day": _period(r[0]),
            "people": people_by_day.get(_period(r[0]), 0),
            "visits": int(r[1]),
            "conversations": int(r[2]),
            "messages": int(r[3]),
            "orders": int(r[4]),
            "revenue_eur": round(float(r[5]), 2),
        }
        for r in daily_counts
    ]
    return {
        "filters": filters.describe(),
        "people": people,
        "visits": sum(d["visits"] for d in daily),
        "conversations": sum(d["conversations"] for d in daily),
        "messages": sum(d["messages"] for d in daily),
        "orders": sum(d["orders"] for d in daily),
        "revenue_eur": round(sum(float(r[5]) for r in daily_counts), 2),
        "buyers": buyers,
        "conversion_rate": _ratio(buyers, people),
        "events": sum(int(r[6]) for r in daily_counts),
        "daily": daily,
    }


def _rollup_days(filters: Filters) -> tuple[str, list[Any]]:
    """``filters.where()`` for a rollup by day: the same sites, whole days."""
    condition = "day >= ? AND day < ?"
    params: list[Any] = [filters.start.date(), filters.end.date()]
    if filters.sites:
        condition += f" AND site_id IN ({', '.join('?' * len(filters.sites))})"
        params += filters.sites
    return condition, params


def _daily_counts(
    store: Store, filters: Filters, *, events_path: bool = False
) -> list[tuple[Any, ...]]:
    """Per day: visits, conversations, messages, orders, revenue, events; from the rollup
    (no identity join: these count events, not people) when it can answer."""
    if presence_usable(store, filters) and not events_path:
        on_days, params = _rollup_days(filters)
        return store.query(
            "SELECT day, sum(visits), sum(conversations), sum(messages), sum(orders), "  # noqa: S608
            f"coalesce(sum(revenue), 0), sum(events) FROM daily_presence WHERE {on_days} "
            "GROUP BY day ORDER BY day",
            params,
        )
    where, plain = filters.where()
    return store.query(
        "SELECT date_trunc('day', ts), "  # noqa: S608
        "count(*) FILTER (WHERE event = 'visitor'), "
        "count(*) FILTER (WHERE event = 'convo_started'), "
        "count(*) FILTER (WHERE event = 'message_sent'), "
        "count(*) FILTER (WHERE event = 'purchase' AND NOT duplicate), "
        "coalesce(sum(total_value_base) FILTER (WHERE event = 'purchase' AND NOT duplicate), 0), "
        f"count(*) FROM events WHERE {where} GROUP BY 1 ORDER BY 1",
        plain,
    )


def retention(
    store: Store,
    filters: Filters,
    interval: str = "week",
    periods: int = 8,
    *,
    events_path: bool = False,
) -> dict[str, Any]:
    """Cohorts by the period of each person's first event; who came back k periods later.

    First activity is looked up over all history before the range's end, so a person who
    first came before the range is not a new cohort member inside it.
    """
    interval = _interval(interval)
    rows_of = person_rows(store, filters, since_beginning=True, rollup=not events_path)
    period = f"date_trunc('{interval}', {rows_of.moment})"
    first_cohort = f"date_trunc('{interval}', CAST(? AS TIMESTAMP))"
    if rows_of.marked:
        # Each person's first row in a period, with the period of their first day: counted
        # as they are, no distinct pairs and no join of persons to their cohort.
        cohort = f"date_trunc('{interval}', CAST({rows_of.first_day} AS TIMESTAMP))"
        rows = store.query(
            f"SELECT f.cohort, {_periods_between(interval, 'f.period', 'f.cohort')}, n FROM "  # noqa: S608
            f"(SELECT {cohort} AS cohort, {period} AS period, count(*) AS n "
            f"FROM ({rows_of.source}) ev WHERE NOT ephemeral "
            f"AND {_new_since(rows_of, f'CAST({period} AS DATE)')} "
            f"AND {rows_of.first_day} >= CAST({first_cohort} AS DATE) "
            f"AND day >= CAST({first_cohort} AS DATE) GROUP BY 1, 2) f ORDER BY 1, 2",
            [*rows_of.params, filters.start, filters.start],
        )
    else:
        rows = store.query(
            f"WITH active AS (SELECT DISTINCT pk, {period} "  # noqa: S608
            f"AS period FROM ({rows_of.source}) ev WHERE NOT ephemeral), "
            "firsts AS (SELECT pk, min(period) AS cohort FROM active GROUP BY pk) "
            f"SELECT f.cohort, {_periods_between(interval, 'a.period', 'f.cohort')}, count(*) "
            "FROM active a "
            f"JOIN firsts f ON f.pk = a.pk WHERE f.cohort >= {first_cohort} "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            [*rows_of.params, filters.start],
        )
    cohorts: dict[str, list[int]] = {}
    for cohort, k, count in rows:
        if k is None or not 0 <= int(k) < periods:
            continue
        cohorts.setdefault(_period(cohort), [0] * periods)[int(k)] = int(count)
    return {
        "filters": filters.describe(),
        "interval": interval,
        "periods": periods,
        "cohorts": [
            {
                "cohort": cohort,
                "size": counts[0],
                "retained": counts,
                "rates": [_ratio(c, counts[0]) for c in counts],
            }
            for cohort, counts in sorted(cohorts.items())
        ],
    }


def _periods_between(interval: str, later: str, earlier: str) -> str:
    """How many periods (period starts, TIMESTAMP expressions) ``later`` is after ``earlier``."""
    if interval == "month":
        return (
            f"CAST((EXTRACT(YEAR FROM {later}) - EXTRACT(YEAR FROM {earlier})) * 12 "
            f"+ EXTRACT(MONTH FROM {later}) - EXTRACT(MONTH FROM {earlier}) AS INTEGER)"
        )
    seconds = 86400 if interval == "day" else 7 * 86400
    return f"CAST(round(EXTRACT(EPOCH FROM ({later} - {earlier})) / {seconds}) AS INTEGER)"


def period_start(period: str, interval: str, k: int = 0) -> datetime:
    """The start of the period ``k`` intervals after ``period`` (a day, week or month)."""
    start = datetime.fromisoformat(period)
    if interval == "day":
        return start + timedelta(days=k)
    if interval == "week":
        return start + timedelta(weeks=k)
    months = start.month - 1 + k
    return start.replace(year=start.year + months // 12, month=months % 12 + 1)


def retention_columns(report: Mapping[str, Any]) -> int:
    """How many of a retention report's periods (``+0``, ``+1``...) begin before the range
    ends for its oldest cohort: later columns are blank for every cohort, so screens leave
    them out instead of showing empty columns past the range."""
    cohorts = report["cohorts"]
    if not cohorts:
        return 0
    end = datetime.fromisoformat(str(report["filters"]["end"]).rstrip("Z"))
    first = str(cohorts[0]["cohort"])
    periods = int(report["periods"])
    later = (k for k in range(periods) if period_start(first, report["interval"], k) >= end)
    return max(next(later, periods), 1)


def power_users(
    store: Store,
    filters: Filters,
    limit: int = 20,
    questions: int = 3,
    common: int = 20,
    *,
    events_path: bool = False,
) -> dict[str, Any]:
    """The persons with the most conversations and messages, and what they ask most.

    Texts are grouped raw first and normalised once per distinct text, not once per message.
    The chosen persons' questions are read by their identifiers' values (a person's nodes,
    an unlinked token's own value), not through the identity join of every message.
    """
    rows_of = person_rows(store, filters, rollup=not events_path)
    text = identifier_days.normalised_text("raw")
    sums = (
        f"sum({rows_of.conversations}) AS conversations, sum({rows_of.messages}) AS messages "
        f"FROM ({rows_of.source}) ev WHERE NOT ephemeral"
    )
    ranking = (
        f"HAVING sum({rows_of.conversations}) + sum({rows_of.messages}) > 0 "
        "ORDER BY conversations DESC, messages DESC, pk LIMIT ?"
    )
    if rows_of.rescan:
        # Integers only: rows with a conversation or a message (the only ones that can
        # rank), a person's id is -pk; the chosen persons' first identifier (among all
        # their rows, not only the active) is read for them alone.
        ranked = store.query(
            f"SELECT pk, {sums} AND conversations + messages > 0 GROUP BY pk {ranking}",
            [*rows_of.params, limit],
        )
        first_token: dict[int, str] = {}
        if ranked:
            first_token = dict(
                store.query(
                    f"SELECT pk, min(token) FROM ({rows_of.source}) ev WHERE NOT ephemeral "  # noqa: S608
                    f"AND pk IN ({', '.join('?' * len(ranked))}) GROUP BY pk",
                    [*rows_of.params, *(row[0] for row in ranked)],
                )
            )
        top = [(pk, -pk if pk < 0 else None, first_token[pk], *rest) for pk, *rest in ranked]
    else:
        top = store.query(
            f"SELECT pk, max(person_id), min(token), {sums} GROUP BY pk {ranking}",
            [*rows_of.params, limit],
        )
    chosen = [int(row[0]) for row in top]
    asked: list[tuple[Any, ...]] = []
    if chosen:
        source, params = events_with_persons(
            store, filters, only=("message_sent",), tokens=_identifier_values(store, top)
        )
        asked = store.query(
            f"WITH raw_asked AS (SELECT pk, data->>'text' AS raw, count(*) AS n FROM ({source}) "  # noqa: S608
            f"ev WHERE pk IN ({', '.join('?' * len(chosen))}) GROUP BY 1, 2) "
            f"SELECT pk, {text} AS question, sum(n) AS n FROM raw_asked WHERE raw IS NOT NULL "
            "GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
            [*params, *chosen],
        )
    questions_of: dict[int, list[dict[str, Any]]] = {}
    for pk, question, n in asked:
        found = questions_of.setdefault(int(pk), [])
        if question and len(found) < questions:
            found.append({"text": question, "count": int(n)})
    users = [
        {
            "person_id": int(person_id) if person_id is not None else None,
            "token": token,
            "conversations": int(convos),
            "messages": int(messages_),
            "questions": questions_of.get(int(pk), []),
        }
        for pk, person_id, token, convos, messages_ in top
    ]
    _label_persons(store, users)
    if rows_of.rescan:  # the rollups answer: the day's texts are counted already
        on_days, question_params = _rollup_days(filters)
        texts_of = f"daily_questions WHERE {on_days}"
    else:
        where_e, question_params = filters.where("e")
        texts = identifier_days.rows_from_events("daily_questions", dialect_of(store), where_e)
        texts_of = f"({texts}) q"
    asked_most = store.query(
        f"SELECT question, sum(n) FROM {texts_of} "  # noqa: S608
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [*question_params, common],
    )
    return {
        "filters": filters.describe(),
        "users": users,
        "common_questions": [{"text": q, "count": int(n)} for q, n in asked_most],
    }


def _identifier_values(store: Store, top: Sequence[Sequence[Any]]) -> list[str]:
    """Every value an event of these (pk, person_id, token) rows can carry."""
    values = {str(token) for pk, _, token, *_ in top if int(pk) >= 0}
    persons = [int(person_id) for _, person_id, *_ in top if person_id is not None]
    if persons:
        marks = ", ".join("?" * len(persons))
        values.update(
            str(value)
            for (value,) in store.query(
                f"SELECT DISTINCT value FROM identity_nodes WHERE person_id IN ({marks})",  # noqa: S608
                persons,
            )
        )
    return sorted(values)


def _label_persons(store: Store, users: list[dict[str, Any]]) -> None:
    """A readable name for each person: an email, else a client id, else an identifier."""
    ids = [u["person_id"] for u in users if u["person_id"] is not None]
    names: dict[int, dict[str, list[str]]] = {}
    if ids:
        marks = ", ".join("?" * len(ids))
        for person_id, kind, value in store.query(
            f"SELECT person_id, kind, value FROM identity_nodes WHERE person_id IN ({marks}) "  # noqa: S608
            "ORDER BY node_id",
            ids,
        ):
            names.setdefault(int(person_id), {}).setdefault(kind, []).append(value)
    for user in users:
        found = names.get(user["person_id"], {}) if user["person_id"] is not None else {}
        user["identifiers"] = [f"{k}:{v}" for k, values in found.items() for v in values] or [
            f"token:{user['token']}"
        ]
        user["label"] = next(
            (found[k][0] for k in ("email", "client_id", "alias", "token") if found.get(k)),
            user["token"],
        )


def funnel(
    store: Store,
    filters: Filters,
    steps: Sequence[str] = DEFAULT_FUNNEL,
    window_seconds: int = 7 * 86400,
    breakdown: str | None = None,
) -> dict[str, Any]:
    """Persons completing ordered steps within the window from their first step-1 event."""
    steps = list(steps)
    sql, params = funnel_query(store, filters, steps, window_seconds, breakdown)
    per_step: dict[str, list[int]] = {}
    for step, grp, count in store.query(sql, params):
        per_step.setdefault(str(grp), [0] * len(steps))[int(step) - 1] = int(count)
    ordered = sorted(per_step.items(), key=lambda item: (-item[1][0], item[0]))
    groups = [_funnel_group(name, counts_, steps) for name, counts_ in ordered]
    if breakdown is None:
        overall = groups[0] if groups else _funnel_group("all", [0] * len(steps), steps)
    else:
        totals = [sum(g["steps"][i]["people"] for g in groups) for i in range(len(steps))]
        overall = _funnel_group("all", totals, steps)
    return {
        "filters": filters.describe(),
        "steps": steps,
        "window_seconds": window_seconds,
        "breakdown": breakdown,
        "overall": overall,
        "groups": groups if breakdown else [],
    }


def funnel_query(
    store: Store,
    filters: Filters,
    steps: Sequence[str],
    window_seconds: int,
    breakdown: str | None,
    *,
    events_path: bool = False,
) -> tuple[str, list[Any]]:
    """The funnel's SQL: rows of (step number, breakdown group, people).

    Both stores read the funnel step tables (folded in first); a custom step, or
    ``events_path`` (tests and benchmarks compare the two), reads the events with the
    identity join. Separate from ``funnel`` so bench/funnel_bounds.py times exactly this.
    """
    if not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
        raise ValueError(f"a funnel has 2 to {MAX_FUNNEL_STEPS} steps")
    steps = [step_name(step) for step in steps]
    if breakdown is not None and breakdown not in BREAKDOWNS:
        raise ValueError(f"breakdown must be one of {', '.join(BREAKDOWNS)}")
    if window_seconds <= 0:
        raise ValueError("the conversion window must be positive")
    # The step tables hold the 13 types only: a custom or form step reads the events.
    custom = any(step not in FUNNEL_STEP_TYPES for step in steps)
    if not events_path and not custom:
        funnel_steps.refresh(store)
        return _funnel_from_step_tables(
            dialect_of(store), filters, list(steps), window_seconds, breakdown
        )
    return _funnel_from_events(store, filters, list(steps), window_seconds, breakdown)


def _step_chain(
    step_rows: Callable[[int], tuple[str, list[Any]]],
    steps: list[str],
    window_seconds: int,
    dialect: Dialect,
    *,
    carry_breakdown: bool,
) -> tuple[list[str], list[Any]]:
    """CTEs ``s2``..``sN`` after an ``s1`` (pk, t1[, bd]): step n is the person's first
    step-n event after step n-1, inside the window that opened with their first step 1.

    ``step_rows(n)`` is a row source of (pk, ts) for step n and its parameters;
    ``carry_breakdown`` takes ``s1``'s breakdown value ``bd`` along the chain."""
    ctes: list[str] = []
    params: list[Any] = []
    carried = ", min(p.bd) AS bd" if carry_breakdown else ""
    for index in range(1, len(steps)):
        n = index + 1
        after = ">" if steps[index] == steps[index - 1] else ">="
        rows, rows_params = step_rows(n)
        ctes.append(
            f"s{n} AS (SELECT e.pk, min(p.t1) AS t1, min(e.ts) AS t{n}{carried} "  # noqa: S608
            f"FROM {rows} e JOIN s{index} p ON p.pk = e.pk WHERE e.ts {after} p.t{index} "
            f"AND e.ts <= p.t1 + {dialect.seconds()} GROUP BY e.pk)"
        )
        params += [*rows_params, window_seconds]
    return ctes, params


def _funnel_from_step_tables(
    dialect: Dialect,
    filters: Filters,
    steps: list[str],
    window_seconds: int,
    breakdown: str | None,
) -> tuple[str, list[Any]]:
    """Each step reads its type's step table (persons resolved, see footfall.funnel_steps);
    the breakdown value, each person's earliest among their step events, is one aggregate
    joined once to every step's persons."""
    where, where_params = filters.where()

    def step_rows(n: int, columns: str = "pk, ts") -> tuple[str, list[Any]]:
        table = funnel_steps.table_of(steps[n - 1])
        return f"(SELECT {columns} FROM {table} WHERE {where})", list(where_params)  # noqa: S608

    first, first_params = step_rows(1)
    ctes = [f"s1 AS (SELECT pk, min(ts) AS t1 FROM {first} e GROUP BY pk)"]  # noqa: S608
    params: list[Any] = list(first_params)
    chain, chain_params = _step_chain(
        step_rows, steps, window_seconds, dialect, carry_breakdown=False
    )
    ctes += chain
    params += chain_params
    if breakdown is None:
        counts = " UNION ALL ".join(
            f"SELECT {i} AS step, 'all' AS grp, count(*) FROM s{i} GROUP BY 2"  # noqa: S608
            for i in range(1, len(steps) + 1)
        )
        return f"{PERSON_ORDER}WITH {', '.join(ctes)} {counts}", params
    kinds = sorted(set(steps))
    valued = []
    for kind in kinds:
        source, source_params = step_rows(steps.index(kind) + 1, f"pk, ts, {breakdown} AS bd")
        valued.append(f"SELECT * FROM {source} v WHERE bd IS NOT NULL")  # noqa: S608
        params += source_params
    valued_rows = " UNION ALL ".join(valued)
    if dialect.name == "duckdb":
        first_value = f"SELECT pk, arg_min(bd, ts) AS bd FROM ({valued_rows}) v GROUP BY pk"  # noqa: S608
    else:
        # One sort of the valued rows instead of an array per person (PostgreSQL has no
        # arg_min).
        first_value = f"SELECT DISTINCT ON (pk) pk, bd FROM ({valued_rows}) v ORDER BY pk, ts"  # noqa: S608
    ctes.append(f"bd AS ({first_value})")
    reached = " UNION ALL ".join(
        f"SELECT {i} AS step, pk FROM s{i}"  # noqa: S608
        for i in range(1, len(steps) + 1)
    )
    return (
        f"{PERSON_ORDER}WITH {', '.join(ctes)} SELECT r.step, "  # noqa: S608
        "coalesce(CAST(b.bd AS VARCHAR), '(none)'), "
        f"count(*) FROM ({reached}) r LEFT JOIN bd b ON b.pk = r.pk GROUP BY 1, 2",
        params,
    )


def _funnel_from_events(
    store: Store, filters: Filters, steps: list[str], window_seconds: int, breakdown: str | None
) -> tuple[str, list[Any]]:
    sql_dialect = dialect_of(store)
    source, params = events_with_persons(store, filters)
    kinds = sorted(set(steps))
    kind_of = {kind: number for number, kind in enumerate(kinds, 1)}
    step_kinds = ", ".join(f"(?, {kind_of[k]})" for k in kinds)
    first = kind_of[steps[0]]
    # A custom step is named custom:NAME; the 13 types by their own name.
    named = (
        f"CASE WHEN src.event = 'custom' THEN '{CUSTOM_PREFIX}' || src.custom_event "
        "ELSE src.event END"
        if any(step.startswith(CUSTOM_PREFIX) for step in steps)
        else "src.event"
    )
    # Steps are small integers and persons BIGINT keys, so every join is on integers; the
    # breakdown value rides along the chain, so no step is joined back to the first.
    if breakdown:
        start_step = (
            f"s1 AS (SELECT pk, min(ts) FILTER (WHERE kind = {first}) AS t1, "  # noqa: S608
            f"{sql_dialect.first_by('bd', 'ts', 'bd IS NOT NULL')} AS bd FROM ev GROUP BY pk "
            f"HAVING count(*) FILTER (WHERE kind = {first}) > 0)"
        )
    else:
        start_step = (
            f"s1 AS (SELECT pk, min(ts) AS t1, NULL AS bd FROM ev WHERE kind = {first} "  # noqa: S608
            "GROUP BY pk)"
        )
    # Joining a few-row table of the step events picks the rows and numbers their kind in
    # one hash probe (a CASE plus an IN list cost a third of the query at 10M events).
    ctes = [
        "ev AS (SELECT pk, ts, k.kind"  # noqa: S608 - constants only
        + (f", {breakdown} AS bd" if breakdown else "")
        + f" FROM ({source}) src JOIN (VALUES {step_kinds}) k(name, kind) ON {named} = k.name"
        " WHERE NOT ephemeral)",
        start_step,
    ]
    chain, chain_params = _step_chain(
        lambda n: (f"(SELECT * FROM ev WHERE kind = {kind_of[steps[n - 1]]})", []),  # noqa: S608
        steps,
        window_seconds,
        sql_dialect,
        carry_breakdown=True,
    )
    ctes += chain
    group = "coalesce(CAST(bd AS VARCHAR), '(none)')" if breakdown else "'all'"
    counts = " UNION ALL ".join(
        f"SELECT {i} AS step, {group} AS grp, count(*) FROM s{i} GROUP BY 2"  # noqa: S608
        for i in range(1, len(steps) + 1)
    )
    return f"{HASH_JOINS}WITH {', '.join(ctes)} {counts}", [*params, *kinds, *chain_params]


def _funnel_group(name: str, counts: list[int], steps: list[str]) -> dict[str, Any]:
    first = counts[0] if counts else 0
    return {
        "group": name,
        "steps": [
            {
                "event": step,
                "people": count,
                "conversion": _ratio(count, first),
                "from_previous": _ratio(count, counts[i - 1]) if i else (1.0 if first else None),
            }
            for i, (step, count) in enumerate(zip(steps, counts, strict=True))
        ],
        "converted": counts[-1] if counts else 0,
        "conversion": _ratio(counts[-1], first) if counts else None,
    }


def ab_test(
    store: Store, filters: Filters, goal: str = "purchase", *, events_path: bool = False
) -> dict[str, Any]:
    """Per A/B group: people, converters, conversion, revenue per person; z-test of the two.

    A person's group is the group of their earliest assigned event in the range.
    """
    if goal not in EVENT_TYPES:
        raise ValueError(f"unknown event type '{goal}'")
    sql_dialect = dialect_of(store)
    # A purchase goal is answered from the daily rollup when it can; other goals need events.
    if goal == "purchase" and not events_path:
        rows_of = person_rows(store, filters)
        reached = f"sum({rows_of.orders}) > 0"
        goal_params: list[Any] = []
    else:
        rows_of = person_rows(store, filters, rollup=False)
        # A re-sent order (``duplicate``) is no new purchase, as in the orders counted.
        reached = "count(*) FILTER (WHERE event = ? AND NOT (duplicate AND event = 'purchase')) > 0"
        goal_params = [goal]
    first_group = sql_dialect.first_by("ab_group", rows_of.group_seen, "ab_group IS NOT NULL")
    if rows_of.rescan and not goal_params:
        # Person days, read twice: each person's group from the rows with a group, the
        # outcome from the rows with an order, so neither grouping sees every row (at 10M
        # events 270 ms instead of 470).
        rows = store.query(
            f"WITH persons AS (SELECT pk, {first_group} AS grp FROM ({rows_of.source}) ev "  # noqa: S608
            "WHERE NOT ephemeral AND ab_group IS NOT NULL GROUP BY pk), "
            f"outcomes AS (SELECT pk, sum({rows_of.revenue}) AS revenue, "
            f"sum({rows_of.orders}) AS orders FROM ({rows_of.source}) ev "
            f"WHERE NOT ephemeral AND {rows_of.bought} GROUP BY pk) "
            "SELECT grp, count(*), count(o.pk), coalesce(sum(revenue), 0), "
            "coalesce(sum(orders), 0) FROM persons LEFT JOIN outcomes o ON o.pk = persons.pk "
            "GROUP BY grp ORDER BY 1",
            [*rows_of.params, *rows_of.params],
        )
    else:
        # One pass: each person's group (from their earliest assigned row) and outcome.
        rows = store.query(
            f"WITH persons AS (SELECT pk, {first_group} AS grp, {reached} AS converted, "  # noqa: S608
            f"sum({rows_of.revenue}) AS revenue, sum({rows_of.orders}) AS orders "
            f"FROM ({rows_of.source}) ev WHERE NOT ephemeral GROUP BY pk) "
            "SELECT grp, count(*), count(*) FILTER (WHERE converted), coalesce(sum(revenue), 0), "
            "sum(orders) FROM persons WHERE grp IS NOT NULL GROUP BY grp ORDER BY 1",
            [*goal_params, *rows_of.params],
        )
    groups = {}
    for name, people, converted, amount, orders in rows:
        people, converted = int(people), int(converted)
        groups[name] = {
            "group": name,
            "people": people,
            "converted": converted,
            "conversion": _ratio(converted, people),
            "revenue_eur": round(float(amount), 2),
            "orders": int(orders),
            "revenue_per_person": round(float(amount) / people, 4) if people else None,
        }
    control, test = groups.get("control"), groups.get("test")
    return {
        "filters": filters.describe(),
        "goal": goal,
        "groups": [groups[g] for g in ("control", "test") if g in groups],
        "comparison": (
            two_proportion_test(
                control["converted"], control["people"], test["converted"], test["people"]
            )
            if control and test
            else None
        ),
    }


def two_proportion_test(c1: int, n1: int, c2: int, n2: int) -> dict[str, Any] | None:
    """Two-sided z-test of p2 vs p1 (pooled) and the 95% interval of p2 - p1 (unpooled)."""
    if not n1 or not n2:
        return None
    p1, p2 = c1 / n1, c2 / n2
    pooled = (c1 + c2) / (n1 + n2)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = p2 - p1
    if se_pooled == 0:
        z, p_value = 0.0, 1.0
    else:
        z = diff / se_pooled
        p_value = math.erfc(abs(z) / math.sqrt(2))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return {
        "difference": round(diff, 6),
        "relative_lift": round(diff / p1, 6) if p1 else None,
        "z": round(z, 4),
        "p_value": p_value,
        "ci95": [round(diff - 1.959964 * se, 6), round(diff + 1.959964 * se, 6)],
        "significant": p_value < 0.05,
    }


def revenue(
    store: Store,
    filters: Filters,
    interval: str = "day",
    top: int = 10,
    *,
    events_path: bool = False,
) -> dict[str, Any]:
    """Revenue in EUR, orders (repeated orderNums once), average order value, top items;
    buyers from person days when they can answer."""
    interval = _interval(interval)
    sql_dialect = dialect_of(store)
    where, params = filters.where()
    rows = store.query(
        f"SELECT date_trunc('{interval}', ts), count(*), "  # noqa: S608
        "count(*) FILTER (WHERE total_value_base IS NULL), coalesce(sum(total_value_base), 0) "
        f"FROM events WHERE {where} AND event = 'purchase' AND NOT duplicate "
        "GROUP BY 1 ORDER BY 1",
        params,
    )
    rows_of = person_rows(store, filters, rollup=not events_path)
    buyers = store.query(
        f"SELECT count(DISTINCT pk) FROM ({rows_of.source}) ev "  # noqa: S608
        f"WHERE {rows_of.bought} AND NOT ephemeral",
        rows_of.params,
    )[0][0]
    orders = sum(int(r[1]) for r in rows)
    unpriced = sum(int(r[2]) for r in rows)
    amount = sum(float(r[3]) for r in rows)
    if rows_of.rescan:  # the rollups answer: items are summed per identifier and day
        on_days, item_params = _rollup_days(filters)
        items_of = f"daily_items WHERE {on_days}"
    else:
        where_e, item_params = filters.where("e")
        items_of = f"({identifier_days.rows_from_events('daily_items', sql_dialect, where_e)}) i"
    items = store.query(
        f"SELECT item_id, sum(quantity), sum(orders), coalesce(sum(revenue_eur), 0) "  # noqa: S608
        f"FROM {items_of} GROUP BY 1 ORDER BY 4 DESC, 2 DESC, 1 LIMIT ?",
        [*item_params, top],
    )
    priced = orders - unpriced
    return {
        "filters": filters.describe(),
        "interval": interval,
        "revenue_eur": round(amount, 2),
        "orders": orders,
        "orders_without_eur": unpriced,
        "buyers": int(buyers),
        "average_order_eur": round(amount / priced, 2) if priced else None,
        "series": [
            {"period": _period(r[0]), "orders": int(r[1]), "revenue_eur": round(float(r[3]), 2)}
            for r in rows
        ],
        "top_items": [
            {
                "item_id": item_id,
                "quantity": int(quantity),
                "orders": int(n),
                "revenue_eur": round(float(value), 2),
            }
            for item_id, quantity, n, value in items
        ],
    }


def feedback(store: Store, filters: Filters) -> dict[str, Any]:
    """Answer feedback per chatbot: likes against dislikes."""
    where, params = filters.where()
    rows = store.query(
        "SELECT coalesce(chatbot_id, '(none)'), "  # noqa: S608
        "count(*) FILTER (WHERE event = 'message_like'), "
        "count(*) FILTER (WHERE event = 'message_dislike') "
        f"FROM events WHERE {where} AND event IN ('message_like', 'message_dislike') "
        "GROUP BY 1 ORDER BY 2 + 3 DESC, 1",
        params,
    )
    return {
        "filters": filters.describe(),
        "chatbots": [
            {
                "chatbot_id": bot,
                "likes": int(likes),
                "dislikes": int(dislikes),
                "like_rate": _ratio(int(likes), int(likes) + int(dislikes)),
            }
            for bot, likes, dislikes in rows
        ],
    }


def popups(store: Store, filters: Filters) -> dict[str, Any]:
    """Popup display to open rate per popup version."""
    where, params = filters.where()
    rows = store.query(
        "SELECT coalesce(popup_version, '(none)'), "  # noqa: S608
        "count(*) FILTER (WHERE event = 'popup_displayed'), "
        "count(*) FILTER (WHERE event = 'popup_opened') "
        f"FROM events WHERE {where} AND event IN ('popup_displayed', 'popup_opened') "
        "GROUP BY 1 ORDER BY 2 DESC, 1",
        params,
    )
    return {
        "filters": filters.describe(),
        "versions": [
            {
                "popup_version": version,
                "displays": int(shown),
                "opens": int(opened),
                "open_rate": _ratio(int(opened), int(shown)),
            }
            for version, shown, opened in rows
        ],
    }


def client_errors(store: Store, filters: Filters, limit: int = 50) -> dict[str, Any]:
    """Errors the widget reported, grouped by message, most frequent first."""
    source, params = events_with_persons(store, filters)
    message = "coalesce(data->>'message', data->>'error', '(no message)')"
    rows = store.query(
        f"SELECT {message}, count(*), count(DISTINCT pk), min(ts), max(ts) "  # noqa: S608
        f"FROM ({source}) ev WHERE event = 'error' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [*params, limit],
    )
    where, plain = filters.where()
    daily = store.query(
        "SELECT date_trunc('day', ts), count(*) FROM events "  # noqa: S608
        f"WHERE {where} AND event = 'error' GROUP BY 1 ORDER BY 1",
        plain,
    )
    return {
        "filters": filters.describe(),
        "total": sum(int(r[1]) for r in daily),
        "errors": [
            {
                "message": text,
                "count": int(n),
                "people": int(people),
                "first_seen": _iso(first),
                "last_seen": _iso(last),
            }
            for text, n, people, first, last in rows
        ],
        "daily": [{"day": _period(d), "errors": int(n)} for d, n in daily],
    }


CUSTOM_PREFIX = "custom:"
"""A funnel step (or a report parameter) naming a custom event: ``custom:Signed Up``."""


def step_name(step: str) -> str:
    """A funnel step: one of the 13 types, or ``custom:NAME`` (checked like a stored name)."""
    if step in EVENT_TYPES:
        return step
    if step.startswith(CUSTOM_PREFIX):
        return CUSTOM_PREFIX + custom_event_name(step[len(CUSTOM_PREFIX) :], "steps")
    # The valid steps in the answer: the API, the CLI and the dashboard show this message.
    raise ValueError(
        f"unknown event type '{step[:50]}'; a step is one of {', '.join(sorted(EVENT_TYPES))}, "
        "or custom:NAME for a custom event"
    )


def custom_events(
    store: Store, filters: Filters, name: str | None = None, limit: int = 50
) -> dict[str, Any]:
    """Custom events (names outside the 13 types) by name: events, people, first and last
    time; with ``name``, that one alone. Never part of the 13 types' counts."""
    source, params = events_with_persons(store, filters)
    only = " AND custom_event = ?" if name is not None else ""
    chosen = [name] if name is not None else []
    rows = store.query(
        "SELECT custom_event, count(*), count(DISTINCT pk) FILTER (WHERE NOT ephemeral), "  # noqa: S608
        f"min(ts), max(ts) FROM ({source}) ev WHERE event = 'custom'{only} "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [*params, *chosen, limit],
    )
    where, plain = filters.where()
    daily = store.query(
        "SELECT date_trunc('day', ts), count(*) FROM events "  # noqa: S608
        f"WHERE {where} AND event = 'custom'{only} GROUP BY 1 ORDER BY 1",
        [*plain, *chosen],
    )
    return {
        "filters": filters.describe(),
        "name": name,
        "total": sum(int(r[1]) for r in daily),
        "events": [
            {
                "name": text,
                "count": int(n),
                "people": int(people),
                "first_seen": _iso(first),
                "last_seen": _iso(last),
            }
            for text, n, people, first, last in rows
        ],
        "daily": [{"day": _period(d), "events": int(n)} for d, n in daily],
    }


DEFLECTION_SESSION_MINUTES = form_events.SESSION_MINUTES
DEFLECTION_WINDOW_DAYS = 7
_FORM_LOOKAROUND = timedelta(days=1)
"""How far beyond the range form events are read, so a session that crosses its start or
end is still cut where it really starts and counted whole (in the range of its start)."""
_SESSION_BUCKETS = 4
"""Buckets of form keys the session windows sort apart (in parallel)."""
_FEEDBACK_EVENTS = "'message_like', 'message_dislike', 'click_through'"
_DEFLECTION_DIMENSIONS = ("day", "site_id", "form", "chatbot", "popup", "grp", "question")
_DEFLECTION_SETS = ((), ("day",), ("site_id", "form"), ("chatbot",), ("popup",), ("grp",))
_DEFLECTION_COUNTS = (
    "sessions",
    "viewed",
    "asked",
    "answered",
    "engaged",
    "tickets",
    "tickets_without_answer",
    "deflected",
    "deferred",
    "filed",
    "likes",
    "dislikes",
    "window_open",
)


def deflection(
    store: Store,
    filters: Filters,
    session_minutes: int = DEFLECTION_SESSION_MINUTES,
    window_days: int = DEFLECTION_WINDOW_DAYS,
    limit: int = 20,
    events_path: bool = False,
) -> dict[str, Any]:
    """The support form's deflection: form sessions, answers shown, tickets filed in the
    session or later by the same person, per day, form, chatbot, popup version and
    question; the holdout's lift; the savings at each site's cost per ticket.

    A form session is one token's events on one form (``data.form``), cut by a ticket or
    by ``session_minutes`` without events. Its person is resolved through the identity graph
    now, and a ticket by that person (any identifier, any site of the tenant) from the
    session's start until ``window_days`` after its last event makes it deferred rather
    than deflected. Ephemeral sessions are counted apart: their person is never known.
    One query, grouping sets for every breakdown, so the sessions are built once.

    The form events come from ``form_events`` (sessions already cut at the default gap);
    ``events_path`` reads the events instead.
    """
    if not 1 <= session_minutes <= 24 * 60:
        raise ValueError("session_minutes must be from 1 to 1440")
    if not 1 <= window_days <= 90:
        raise ValueError("window_days must be from 1 to 90")
    sql_dialect = dialect_of(store)
    sites = store.query(
        "SELECT site_id, coalesce(tenant, site_id), cost_per_ticket, ticket_currency FROM sites"
    )
    tenants = {t for site, t, *_ in sites if filters.sites is None or site in filters.sites}
    ticket_sites = tuple(site for site, t, *_ in sites if t in tenants)
    window = timedelta(days=window_days)
    around = _FORM_LOOKAROUND
    # The form events without persons: a session's person is looked up once, below.
    read = Filters(filters.sites, filters.start - around, filters.end + around)
    where, params = read.where()
    # Feedback and clicks belong to a form only when they name one.
    source = (
        f"SELECT * FROM events WHERE {where} "  # noqa: S608
        f"AND {form_events.form_event_condition(sql_dialect)}"
    )
    person = sql_dialect.person_key("n.person_id", "x.token")
    folded = not events_path
    if folded:
        form_events.refresh(store)
    ticket_source, ticket_params = _with_persons(
        store,
        Filters(ticket_sites, filters.start - around, filters.end + window + around),
        since_beginning=False,
        only=("ticket_submitted",),
        table="form_events" if folded else None,
    )
    first, last, any_of = sql_dialect.first_by, sql_dialect.last_by, sql_dialect.any_value
    gap, after = sql_dialect.seconds(), sql_dialect.seconds()
    order = "PARTITION BY b ORDER BY k, ts, event_id"
    key = sql_dialect.row_key("site_id", "id_kind", "token", "form")
    text = identifier_days.normalised_text("raw")
    columns = ", ".join(_DEFLECTION_DIMENSIONS)
    sets = ", ".join(
        "(" + ", ".join(("ephemeral", *dims)) + ")" for dims in (*_DEFLECTION_SETS, ("question",))
    )
    seconds = session_minutes * 60
    numbered = (
        f"WITH raw AS (SELECT event_id, site_id, id_kind, token, ephemeral, "  # noqa: S608
        "ts, event, ab_group, chatbot_id, popup_version, data->>'form' AS raw_form, "
        f"data->>'question' AS raw_question FROM ({source}) ev), "
        "named AS (SELECT *, coalesce(raw_form, '') AS form FROM raw "
        f"WHERE raw_form IS NOT NULL OR event NOT IN ({_FEEDBACK_EVENTS})), "
        f"keyed AS (SELECT *, {key} AS k, nullif(trim(raw_question), '') AS question "
        "FROM named), "
        f"fe AS (SELECT *, k % {_SESSION_BUCKETS} AS b FROM keyed), "
        # The windows sort narrow rows (key, time, id) in a few buckets of keys, not one
        # partition per key: a session starts where the key changes, after a quiet gap or
        # after a ticket, and the running count of starts numbers the sessions of a whole
        # bucket at once (bucket and number name a session). Sorting every column, or a
        # partition per key, cost most of the report; the numbers are joined back by id.
        "lagged AS (SELECT b, k, ts, event_id, lag(k) OVER w AS prev_k, "
        "lag(ts) OVER w AS prev_ts, "
        f"lag(event) OVER w AS prev_event FROM fe WINDOW w AS ({order})), "
        "marked AS (SELECT b, k, ts, event_id, CASE WHEN prev_k IS NULL OR prev_k <> k "
        f"OR ts > prev_ts + {gap} OR prev_event = 'ticket_submitted' "
        "THEN 1 ELSE 0 END AS starts FROM lagged), "
        "counted AS (SELECT event_id, sum(starts) OVER "
        f"({order} ROWS UNBOUNDED PRECEDING) AS sn FROM marked), "
        "numbered AS (SELECT fe.*, c.sn FROM fe JOIN counted c ON c.event_id = fe.event_id), "
    )
    numbered_params = [*params, seconds]
    if folded:
        numbered, numbered_params = _folded_form_sessions(where, params, read, session_minutes)
    sql = (
        f"{HASH_JOINS}{numbered}"  # noqa: S608 - fixed names and placeholders only
        f"sessions AS (SELECT b, sn, {any_of('site_id')} AS site_id, {any_of('form')} AS form, "
        f"{any_of('id_kind')} AS id_kind, {any_of('token')} AS token, "
        "bool_or(ephemeral) AS ephemeral, "
        "min(ts) AS first_ts, max(ts) AS last_ts, "
        "count(*) FILTER (WHERE event = 'form_viewed') > 0 AS viewed, "
        "count(*) FILTER (WHERE event = 'answer_shown') > 0 AS answered, "
        "count(*) FILTER (WHERE event = 'ticket_submitted') > 0 AS ticket, "
        f"count(*) FILTER (WHERE event IN ({_FEEDBACK_EVENTS})) > 0 AS engaged, "
        "count(*) FILTER (WHERE event = 'message_like') AS likes, "
        "count(*) FILTER (WHERE event = 'message_dislike') AS dislikes, "
        f"{first('ab_group', 'ts', 'ab_group IS NOT NULL')} AS grp, "
        f"{first('chatbot_id', 'ts', 'chatbot_id IS NOT NULL')} AS chatbot, "
        f"{first('popup_version', 'ts', 'popup_version IS NOT NULL')} AS popup, "
        f"{last('question', 'ts', 'question IS NOT NULL')} AS raw_question "
        "FROM numbered GROUP BY b, sn "
        "HAVING min(ts) >= ? AND min(ts) < ?), "
        "sited AS (SELECT x.*, coalesce(s.tenant, s.site_id) AS tenant FROM sessions x "
        "JOIN sites s ON s.site_id = x.site_id), "
        # The person of the session's token when it started, resolved now.
        f"tenanted AS (SELECT x.*, {person} AS pk FROM sited x LEFT JOIN identity_nodes n "
        "ON n.tenant = x.tenant AND n.value = x.token AND n.kind = x.id_kind "
        "AND x.first_ts >= n.valid_from AND x.first_ts < n.valid_to), "
        # PostgreSQL resolves the tickets' persons first: it guesses a handful of sessions
        # and would otherwise pair every session with every ticket of the tenant by time.
        f"tickets AS {'' if sql_dialect.name == 'duckdb' else 'MATERIALIZED '}"
        "(SELECT coalesce(s.tenant, s.site_id) AS tenant, t.pk, t.ts "
        f"FROM ({ticket_source}) t JOIN sites s ON s.site_id = t.site_id "
        "WHERE t.event = 'ticket_submitted' AND NOT t.ephemeral), "
        "later AS (SELECT DISTINCT x.b, x.sn FROM tenanted x "
        "JOIN tickets t ON t.tenant = x.tenant AND t.pk = x.pk AND t.ts >= x.first_ts "
        f"AND t.ts <= x.last_ts + {after} WHERE NOT x.ticket AND NOT x.ephemeral), "
        "flagged AS (SELECT x.*, l.sn IS NOT NULL AS later FROM tenanted x LEFT JOIN later l "
        "ON l.b = x.b AND l.sn = x.sn), "
        "texts AS (SELECT raw, "
        f"{text} AS question FROM (SELECT DISTINCT raw_question AS raw FROM flagged "
        "WHERE raw_question IS NOT NULL) q), "
        "final AS (SELECT f.*, date_trunc('day', f.first_ts) AS day, "
        "nullif(t.question, '') AS question FROM flagged f LEFT JOIN texts t "
        "ON t.raw = f.raw_question), "
        # The sessions summed by every dimension at once first: the grouping sets then
        # add up far fewer rows than there are sessions.
        f"base AS (SELECT ephemeral, {columns}, count(*) AS sessions, "
        "count(*) FILTER (WHERE viewed) AS viewed, "
        "count(*) FILTER (WHERE question IS NOT NULL) AS asked, "
        "count(*) FILTER (WHERE answered) AS answered, "
        "count(*) FILTER (WHERE engaged) AS engaged, "
        "count(*) FILTER (WHERE ticket) AS tickets, "
        "count(*) FILTER (WHERE ticket AND NOT answered) AS unanswered, "
        "count(*) FILTER (WHERE answered AND NOT ticket AND NOT later) AS deflected, "
        "count(*) FILTER (WHERE answered AND NOT ticket AND later) AS deferred, "
        "count(*) FILTER (WHERE ticket OR later) AS filed, sum(likes) AS likes, "
        "sum(dislikes) AS dislikes, count(*) FILTER (WHERE answered AND NOT ticket "
        f"AND NOT later AND last_ts + {after} > ?) AS open_window "
        f"FROM final GROUP BY ephemeral, {columns}) "
        f"SELECT GROUPING({columns}), ephemeral, {columns}, sum(sessions), sum(viewed), "
        "sum(asked), sum(answered), sum(engaged), sum(tickets), sum(unanswered), "
        "sum(deflected), sum(deferred), sum(filed), sum(likes), sum(dislikes), "
        f"sum(open_window) FROM base GROUP BY GROUPING SETS ({sets})"
    )
    window_s = window_days * 86400
    rows = store.query(
        sql,
        [
            *numbered_params,
            filters.start,
            filters.end,
            *ticket_params,
            window_s,
            window_s,
            utcnow(),
        ],
    )
    return _deflection_document(filters, rows, sites, session_minutes, window_days, limit)


def _folded_form_sessions(
    where: str, params: list[Any], read: Filters, session_minutes: int
) -> tuple[str, list[Any]]:
    """The CTEs numbering form sessions from ``form_events``: at the default gap by the
    stored numbers, else with one window (a row starts a session after a ticket, a quiet
    gap, or as its key's first row in the range read)."""
    columns = (
        "site_id, form, id_kind, token, ephemeral, ts, event, ab_group, chatbot_id, "
        "popup_version, nullif(trim(raw_question), '') AS question"
    )
    if session_minutes == form_events.SESSION_MINUTES:
        return (
            f"WITH numbered AS (SELECT k AS b, session_no AS sn, {columns} "  # noqa: S608
            f"FROM form_events WHERE {where}), ",
            list(params),
        )
    gap = Dialect("duckdb").seconds()
    return (
        f"WITH fe AS (SELECT k % {_SESSION_BUCKETS} AS b, k, event_id, {columns}, "  # noqa: S608
        "CASE WHEN prev_ts IS NULL OR prev_ts < ? OR prev_ticket "
        f"OR ts > prev_ts + {gap} THEN 1 ELSE 0 END AS starts FROM form_events WHERE {where}), "
        "numbered AS (SELECT *, sum(starts) OVER (PARTITION BY b ORDER BY k, ts, event_id "
        "ROWS UNBOUNDED PRECEDING) AS sn FROM fe), ",
        [read.start, session_minutes * 60, *params],
    )


def _deflection_document(
    filters: Filters,
    rows: Sequence[tuple[Any, ...]],
    sites: Sequence[tuple[Any, ...]],
    session_minutes: int,
    window_days: int,
    limit: int,
) -> dict[str, Any]:
    """The grouping sets' rows shaped into the report: each row's GROUPING() bits say which
    of the dimensions it is grouped by (a bit set: rolled up)."""
    width = len(_DEFLECTION_DIMENSIONS)
    groups: dict[tuple[str, ...], list[tuple[bool, dict[str, Any], dict[str, int]]]] = {}
    for row in rows:
        mask, ephemeral = int(row[0]), bool(row[1])
        keys = row[2 : 2 + width]
        present = tuple(
            name
            for bit, name in enumerate(_DEFLECTION_DIMENSIONS)
            if not mask & (1 << (width - 1 - bit))
        )
        counts = {
            name: int(value or 0)
            for name, value in zip(_DEFLECTION_COUNTS, row[2 + width :], strict=True)
        }
        values = dict(zip(_DEFLECTION_DIMENSIONS, keys, strict=True))
        groups.setdefault(present, []).append((ephemeral, values, counts))

    def persistent(dims: tuple[str, ...]) -> list[tuple[dict[str, Any], dict[str, int]]]:
        return [(values, counts) for eph, values, counts in groups.get(dims, []) if not eph]

    def figures(counts: dict[str, int]) -> dict[str, Any]:
        return {
            "sessions": counts["sessions"],
            "answered": counts["answered"],
            "tickets": counts["tickets"],
            "deflected": counts["deflected"],
            "deferred": counts["deferred"],
            "deflection_rate": _ratio(counts["deflected"], counts["answered"]),
        }

    empty = dict.fromkeys(_DEFLECTION_COUNTS, 0)
    whole = next((c for _, c in persistent(())), empty)
    apart = next((c for eph, _, c in groups.get((), []) if eph), empty)
    totals = {
        **figures(whole),
        "viewed": whole["viewed"],
        "asked": whole["asked"],
        "tickets_after_answer": whole["tickets"] - whole["tickets_without_answer"],
        "tickets_without_answer": whole["tickets_without_answer"],
        "deflected_window_open": whole["window_open"],
        "likes": whole["likes"],
        "dislikes": whole["dislikes"],
    }
    funnel_counts = [
        ("form_viewed", whole["viewed"]),
        ("question", whole["asked"]),
        ("answer_shown", whole["answered"]),
        ("feedback_or_click", whole["engaged"]),
        ("ticket_submitted", whole["tickets"]),
    ]
    per_site: dict[str, int] = {}
    forms = []
    for values, counts in persistent(("site_id", "form")):
        per_site[values["site_id"]] = per_site.get(values["site_id"], 0) + counts["deflected"]
        forms.append({"site_id": values["site_id"], "form": values["form"], **figures(counts)})
    forms.sort(key=lambda f: (-f["sessions"], f["site_id"], f["form"]))

    def breakdown(dim: str, label: str) -> list[dict[str, Any]]:
        found = [{label: v[dim], **figures(c)} for v, c in persistent((dim,))]
        return sorted(found, key=lambda f: (-f["sessions"], str(f[label])))

    questions = [
        {
            "question": values["question"],
            **figures(counts),
            "dislikes": counts["dislikes"],
        }
        for values, counts in persistent(("question",))
        if values["question"] is not None
    ]
    questions.sort(key=lambda q: (-q["tickets"], -q["deferred"], -q["sessions"], q["question"]))
    by_group = {v["grp"]: c for v, c in persistent(("grp",)) if v["grp"] is not None}
    lift_groups = [
        {
            "group": name,
            "sessions": by_group[name]["sessions"],
            "answered": by_group[name]["answered"],
            "tickets": by_group[name]["filed"],
            "ticket_rate": _ratio(by_group[name]["filed"], by_group[name]["sessions"]),
        }
        for name in ("control", "test")
        if name in by_group
    ]
    control, test = by_group.get("control"), by_group.get("test")
    comparison = (
        two_proportion_test(control["filed"], control["sessions"], test["filed"], test["sessions"])
        if control and test
        else None
    )
    avoided = None
    if comparison is not None and test is not None:
        n = test["sessions"]
        low, high = comparison["ci95"]
        avoided = {
            "tickets": round(-comparison["difference"] * n, 2),
            "ci95": [round(-high * n, 2), round(-low * n, 2)],
        }
    costs = {site: (cost, currency) for site, _, cost, currency in sites}
    savings: dict[str, dict[str, Any]] = {}
    uncosted = []
    for site_id, count in sorted(per_site.items()):
        cost, currency = costs.get(site_id, (None, None))
        if cost is None:
            uncosted.append({"site_id": site_id, "deflected": count})
            continue
        entry = savings.setdefault(currency, {"currency": currency, "amount": 0.0, "deflected": 0})
        entry["amount"] = round(entry["amount"] + count * float(cost), 2)
        entry["deflected"] += count
    return {
        "filters": filters.describe(),
        "session_minutes": session_minutes,
        "window_days": window_days,
        "totals": totals,
        "ephemeral": {
            "sessions": apart["sessions"],
            "answered": apart["answered"],
            "tickets": apart["tickets"],
            "answered_without_ticket": apart["deflected"],
        },
        "funnel": [
            {"step": step, "sessions": count, "of_sessions": _ratio(count, whole["sessions"])}
            for step, count in funnel_counts
        ],
        "series": sorted(
            ({"day": _period(v["day"]), **figures(c)} for v, c in persistent(("day",))),
            key=lambda d: d["day"],
        ),
        "forms": forms,
        "chatbots": breakdown("chatbot", "chatbot_id"),
        "popup_versions": breakdown("popup", "popup_version"),
        "questions": questions[:limit],
        "lift": {
            "outcome": "a ticket in the session or by the same person within the window",
            "groups": lift_groups,
            "comparison": comparison,
            "avoided_tickets": avoided,
        },
        "savings": sorted(savings.values(), key=lambda e: str(e["currency"])),
        "sites_without_cost": uncosted,
    }


@dataclass(frozen=True, slots=True)
class Report:
    """A named report: what the API path, the CLI name and the dashboard share."""

    name: str
    title: str
    run: Callable[..., dict[str, Any]]
    options: tuple[str, ...] = field(default_factory=tuple)


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report("overview", "Overview", overview),
        Report("people", "Unique people", unique_people, ("interval",)),
        Report("retention", "Retention cohorts", retention, ("interval", "periods")),
        Report("power-users", "Power users and their questions", power_users, ("limit",)),
        Report("funnel", "Funnel", funnel, ("steps", "window_seconds", "breakdown")),
        Report("ab", "A/B test", ab_test, ("goal",)),
        Report("revenue", "Revenue", revenue, ("interval", "top")),
        Report("feedback", "Answer feedback", feedback),
        Report("popups", "Popup open rate", popups),
        Report("errors", "Client errors", client_errors, ("limit",)),
        Report("custom-events", "Custom events", custom_events, ("name", "limit")),
        Report(
            "deflection",
            "Support form deflection",
            deflection,
            ("session_minutes", "window_days", "limit"),
        ),
    )
}
