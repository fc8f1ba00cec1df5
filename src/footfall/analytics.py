"""Analytics as SQL inside the store; persons come from the identity graph at query time.

Every report takes a ``Filters`` (sites and a half-open time range) and returns plain JSON
data, so the HTTP API, the terminal reports and the dashboard show the same numbers. The
heavy lifting (distinct persons, cohorts, ordered funnels, revenue) happens in the
database; Python only shapes rows and computes the closed-form A/B statistics from the
aggregates. Persons are the connected components of the identity graph, resolved through
the ``event_persons`` view, so a merge changes every report at once.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from footfall.ingest import EUR_RATES, EVENT_TYPES
from footfall.store.base import HASH_JOINS, Store

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


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few SQL spellings that differ between DuckDB and PostgreSQL."""

    name: str

    def first_by(self, value: str, order: str) -> str:
        """The value of the row with the smallest ``order`` in a group."""
        if self.name == "duckdb":
            return f"arg_min({value}, {order})"
        return f"(array_agg({value} ORDER BY {order}))[1]"

    def items(self, column: str) -> str:
        """A lateral row source with one JSON ``item`` per element of a JSON array column."""
        if self.name == "duckdb":
            return f"(SELECT unnest(CAST({column} AS JSON[])) AS item)"
        return f"jsonb_array_elements({column}) AS item"

    def seconds(self, placeholder: str = "?") -> str:
        return f"({placeholder} * INTERVAL '1 second')"

    def person_key(self, person_id: str, token: str) -> str:
        """One BIGINT per person: ``-person_id`` for identity-graph persons, else a 63-bit
        hash of the token (a person of one identifier).

        Integers group and join several times faster than strings at 10M events. Two of a
        million unlinked tokens share a hash with a probability of about 3 in 100 million.
        """
        if self.name == "duckdb":
            hashed = f"CAST(hash({token}) >> 1 AS BIGINT)"
        else:
            hashed = f"(hashtextextended({token}, 0) & 9223372036854775807)"
        return f"coalesce(-{person_id}, {hashed})"


def dialect_of(store: Store) -> Dialect:
    return Dialect("duckdb" if store.backend == "duckdb" else "postgresql")


def events_with_persons(
    store: Store,
    filters: Filters,
    *,
    since_beginning: bool = False,
) -> tuple[str, list[Any]]:
    """A row source: the filtered events, each with its ``person_id`` and person key ``pk``.

    The identity join names its tenant as a constant (one branch per tenant of the chosen
    sites), so the database hash-joins on the identifier alone instead of joining the sites
    table for every event. ``since_beginning`` drops the range's start (cohorts need each
    person's first visit ever).
    """
    dialect = dialect_of(store)
    tenants: dict[str, list[str]] = {}
    for site_id, tenant in store.query("SELECT site_id, coalesce(tenant, site_id) FROM sites"):
        if filters.sites is None or site_id in filters.sites:
            tenants.setdefault(tenant, []).append(site_id)
    if not tenants:
        return (
            "SELECT e.*, CAST(NULL AS BIGINT) AS person_id, CAST(NULL AS BIGINT) AS pk "
            "FROM events e WHERE FALSE"
        ), []
    parts: list[str] = []
    params: list[Any] = []
    pk = dialect.person_key("n.person_id", "e.token")
    for tenant, site_ids in sorted(tenants.items()):
        time_sql = "e.ts < ?" if since_beginning else "e.ts >= ? AND e.ts < ?"
        parts.append(
            f"SELECT e.*, n.person_id, {pk} AS pk FROM events e "  # noqa: S608
            "LEFT JOIN identity_nodes n ON n.tenant = ? AND n.value = e.token "
            "AND n.kind = e.id_kind AND e.ts >= n.valid_from AND e.ts < n.valid_to "
            f"WHERE e.site_id IN ({', '.join('?' * len(site_ids))}) AND {time_sql}"
        )
        params += [tenant, *site_ids]
        params += [filters.end] if since_beginning else [filters.start, filters.end]
    return " UNION ALL ".join(parts), params


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


_NORMALISED_TEXT = (
    "trim(regexp_replace(regexp_replace(lower({col}), '\\s+', ' ', 'g'), "
    "'[[:space:][:punct:]]+$', '', 'g'))"
)


def normalise_question(text: str) -> str:
    """What ``_NORMALISED_TEXT`` does in SQL, for the tests and the dashboard's search."""
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


def unique_people(store: Store, filters: Filters, interval: str = "day") -> dict[str, Any]:
    """Distinct persons per period and over the whole range, after identity resolution.

    One pass over the events reduces them to (period, person) pairs; both the series and
    the range total are counted from those pairs, a few times fewer rows than events.
    """
    source, params = events_with_persons(store, filters)
    period = f"date_trunc('{_interval(interval)}', ts)"
    rows = store.query(
        f"WITH seen AS (SELECT {period} AS period, pk, ephemeral FROM ({source}) ev "  # noqa: S608
        "GROUP BY 1, 2, 3) "
        "SELECT period, count(DISTINCT pk) FILTER (WHERE NOT ephemeral), "
        "count(DISTINCT pk) FILTER (WHERE ephemeral) FROM seen "
        "GROUP BY GROUPING SETS ((period), ()) ORDER BY period NULLS FIRST",
        params,
    )
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


def overview(store: Store, filters: Filters) -> dict[str, Any]:
    """The headline numbers and daily trends of the dashboard's first page, in one pass."""
    source, params = events_with_persons(store, filters)
    rows = store.query(
        "WITH seen AS (SELECT date_trunc('day', ts) AS day, pk, ephemeral, "  # noqa: S608
        " count(*) FILTER (WHERE event = 'visitor') AS visits, "
        " count(*) FILTER (WHERE event = 'convo_started') AS conversations, "
        " count(*) FILTER (WHERE event = 'message_sent') AS messages, "
        " count(*) FILTER (WHERE event = 'purchase' AND NOT duplicate) AS orders, "
        " sum(total_value_base) FILTER (WHERE event = 'purchase' AND NOT duplicate) AS revenue, "
        " count(*) AS events "
        f" FROM ({source}) ev GROUP BY 1, 2, 3) "
        "SELECT day, count(DISTINCT pk) FILTER (WHERE NOT ephemeral), sum(visits), "
        "sum(conversations), sum(messages), sum(orders), coalesce(sum(revenue), 0), "
        "count(DISTINCT pk) FILTER (WHERE orders > 0 AND NOT ephemeral), sum(events) "
        "FROM seen GROUP BY GROUPING SETS ((day), ()) ORDER BY day NULLS FIRST",
        params,
    )
    total = next((r for r in rows if r[0] is None), None)
    people = int(total[1]) if total else 0
    buyers = int(total[7]) if total else 0

    def number(value: Any) -> int:
        return int(value or 0)

    return {
        "filters": filters.describe(),
        "people": people,
        "visits": number(total[2]) if total else 0,
        "conversations": number(total[3]) if total else 0,
        "messages": number(total[4]) if total else 0,
        "orders": number(total[5]) if total else 0,
        "revenue_eur": round(float(total[6]), 2) if total else 0.0,
        "buyers": buyers,
        "conversion_rate": _ratio(buyers, people),
        "events": number(total[8]) if total else 0,
        "daily": [
            {
                "day": _period(r[0]),
                "people": int(r[1]),
                "visits": number(r[2]),
                "conversations": number(r[3]),
                "messages": number(r[4]),
                "orders": number(r[5]),
                "revenue_eur": round(float(r[6]), 2),
            }
            for r in rows
            if r[0] is not None
        ],
    }


def retention(
    store: Store, filters: Filters, interval: str = "week", periods: int = 8
) -> dict[str, Any]:
    """Cohorts by the period of each person's first event; who came back k periods later.

    First activity is looked up over all history before the range's end, so a person who
    first came before the range is not a new cohort member inside it.
    """
    interval = _interval(interval)
    source, params = events_with_persons(store, filters, since_beginning=True)
    if interval == "month":
        offset = (
            "CAST((EXTRACT(YEAR FROM a.period) - EXTRACT(YEAR FROM f.cohort)) * 12 "
            "+ EXTRACT(MONTH FROM a.period) - EXTRACT(MONTH FROM f.cohort) AS INTEGER)"
        )
    else:
        seconds = 86400 if interval == "day" else 7 * 86400
        offset = f"CAST(round(EXTRACT(EPOCH FROM (a.period - f.cohort)) / {seconds}) AS INTEGER)"
    rows = store.query(
        f"WITH active AS (SELECT DISTINCT pk, date_trunc('{interval}', ts) AS period "  # noqa: S608
        f"FROM ({source}) ev WHERE NOT ephemeral), "
        "firsts AS (SELECT pk, min(period) AS cohort FROM active GROUP BY pk) "
        f"SELECT f.cohort, {offset} AS k, count(*) FROM active a JOIN firsts f ON f.pk = a.pk "
        f"WHERE f.cohort >= date_trunc('{interval}', CAST(? AS TIMESTAMP)) "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        [*params, filters.start],
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


def power_users(
    store: Store, filters: Filters, limit: int = 20, questions: int = 3, common: int = 20
) -> dict[str, Any]:
    """The persons with the most conversations and messages, and what they ask most.

    Texts are grouped raw first and normalised once per distinct text, not once per message.
    """
    source, params = events_with_persons(store, filters)
    text = _NORMALISED_TEXT.format(col="raw")
    rows = store.query(
        f"WITH chat AS (SELECT pk, person_id, token, event, data FROM ({source}) ev "  # noqa: S608
        "WHERE NOT ephemeral AND event IN ('convo_started', 'message_sent')), "
        "top AS (SELECT pk, max(person_id) AS person_id, min(token) AS token, "
        " count(*) FILTER (WHERE event = 'convo_started') AS conversations, "
        " count(*) FILTER (WHERE event = 'message_sent') AS messages "
        " FROM chat GROUP BY pk ORDER BY conversations DESC, messages DESC, pk LIMIT ?), "
        "raw_asked AS (SELECT c.pk, c.data->>'text' AS raw, count(*) AS n FROM chat c "
        " JOIN top t ON t.pk = c.pk WHERE c.event = 'message_sent' GROUP BY 1, 2), "
        f"asked AS (SELECT pk, {text} AS question, sum(n) AS n FROM raw_asked "
        " WHERE raw IS NOT NULL GROUP BY 1, 2) "
        "SELECT t.pk, t.person_id, t.token, t.conversations, t.messages, a.question, a.n "
        "FROM top t LEFT JOIN asked a ON a.pk = t.pk AND a.question <> '' "
        "ORDER BY t.conversations DESC, t.messages DESC, t.pk, a.n DESC, a.question",
        [*params, limit],
    )
    users: dict[int, dict[str, Any]] = {}
    for pk, person_id, token, convos, messages, question, n in rows:
        user = users.setdefault(
            int(pk),
            {
                "person_id": int(person_id) if person_id is not None else None,
                "token": token,
                "conversations": int(convos),
                "messages": int(messages),
                "questions": [],
            },
        )
        if question is not None and len(user["questions"]) < questions:
            user["questions"].append({"text": question, "count": int(n)})
    _label_persons(store, list(users.values()))
    asked_most = store.query(
        f"WITH texts AS (SELECT data->>'text' AS raw FROM ({source}) ev "  # noqa: S608
        "WHERE event = 'message_sent'), "
        "by_raw AS (SELECT raw, count(*) AS n FROM texts WHERE raw IS NOT NULL GROUP BY raw), "
        f"norm AS (SELECT raw, {text} AS question FROM by_raw) "
        "SELECT norm.question, sum(by_raw.n) AS n FROM by_raw JOIN norm ON norm.raw = by_raw.raw "
        "WHERE norm.question <> '' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [*params, common],
    )
    return {
        "filters": filters.describe(),
        "users": list(users.values()),
        "common_questions": [{"text": q, "count": int(n)} for q, n in asked_most],
    }


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
    if not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
        raise ValueError(f"a funnel has 2 to {MAX_FUNNEL_STEPS} steps")
    for step in steps:
        if step not in EVENT_TYPES:
            raise ValueError(f"unknown event type '{step}'")
    if breakdown is not None and breakdown not in BREAKDOWNS:
        raise ValueError(f"breakdown must be one of {', '.join(BREAKDOWNS)}")
    if window_seconds <= 0:
        raise ValueError("the conversion window must be positive")
    sql_dialect = dialect_of(store)
    source, params = events_with_persons(store, filters)
    kinds = sorted(set(steps))
    ctes = [
        f"ev AS (SELECT pk, event, ts{', ' + breakdown + ' AS bd' if breakdown else ''} "  # noqa: S608 - names from BREAKDOWNS
        f"FROM ({source}) src WHERE NOT ephemeral "
        f"AND event IN ({', '.join('?' * len(kinds))}))",
        "s1 AS (SELECT pk, min(ts) AS t1 FROM ev WHERE event = ? GROUP BY pk)",
    ]
    query_params: list[Any] = [*params, *kinds, steps[0]]
    for index in range(1, len(steps)):
        n = index + 1
        after = ">" if steps[index] == steps[index - 1] else ">="
        ctes.append(
            f"s{n} AS (SELECT p.pk, p.t1, min(e.ts) AS t{n} FROM s{index} p "  # noqa: S608
            f"JOIN ev e ON e.pk = p.pk AND e.event = ? AND e.ts {after} p.t{index} "
            f"AND e.ts <= p.t1 + {sql_dialect.seconds()} GROUP BY p.pk, p.t1)"
        )
        query_params.extend([steps[index], window_seconds])
    joins = "".join(f" LEFT JOIN s{i} ON s{i}.pk = s1.pk" for i in range(2, len(steps) + 1))
    if breakdown:
        ctes.append(
            f"bd AS (SELECT pk, {sql_dialect.first_by('bd', 'ts')} AS value FROM ev "  # noqa: S608
            "WHERE bd IS NOT NULL GROUP BY pk)"
        )
        group = "coalesce(CAST(b.value AS VARCHAR), '(none)')"
        joins = " LEFT JOIN bd b ON b.pk = s1.pk" + joins
    else:
        group = "'all'"
    counts = ", ".join(f"count(s{i}.pk)" for i in range(1, len(steps) + 1))
    rows = store.query(
        f"{HASH_JOINS}WITH {', '.join(ctes)} SELECT {group} AS grp, {counts} FROM s1{joins} "  # noqa: S608
        "GROUP BY 1 ORDER BY 2 DESC, 1",
        query_params,
    )
    groups = [_funnel_group(str(r[0]), [int(v) for v in r[1:]], steps) for r in rows]
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


def ab_test(store: Store, filters: Filters, goal: str = "purchase") -> dict[str, Any]:
    """Per A/B group: people, converters, conversion, revenue per person; z-test of the two.

    A person's group is the group of their earliest assigned event in the range.
    """
    if goal not in EVENT_TYPES:
        raise ValueError(f"unknown event type '{goal}'")
    sql_dialect = dialect_of(store)
    source, params = events_with_persons(store, filters)
    rows = store.query(
        f"WITH ev AS (SELECT pk, ab_group, event, ts, total_value_base, duplicate "  # noqa: S608
        f"FROM ({source}) src WHERE NOT ephemeral), "
        f"grp AS (SELECT pk, {sql_dialect.first_by('ab_group', 'ts')} AS grp FROM ev "
        "WHERE ab_group IS NOT NULL GROUP BY pk), "
        "outcome AS (SELECT pk, count(*) FILTER (WHERE event = ?) > 0 AS converted, "
        " coalesce(sum(total_value_base) FILTER (WHERE event = 'purchase' AND NOT duplicate), 0)"
        " AS revenue, count(*) FILTER (WHERE event = 'purchase' AND NOT duplicate) AS orders "
        " FROM ev WHERE event IN (?, 'purchase') GROUP BY pk) "
        "SELECT g.grp, count(*), count(*) FILTER (WHERE o.converted), "
        "coalesce(sum(o.revenue), 0), coalesce(sum(o.orders), 0) "
        "FROM grp g LEFT JOIN outcome o ON o.pk = g.pk GROUP BY g.grp ORDER BY 1",
        [*params, goal, goal],
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


def _eur_case(value: str, currency: str) -> str:
    """EUR value of an item, with the static rate table written into the SQL as constants."""
    whens = " ".join(f"WHEN '{code}' THEN {rate!r}" for code, rate in sorted(EUR_RATES.items()))
    return f"({value} * CASE {currency} {whens} END)"


def revenue(store: Store, filters: Filters, interval: str = "day", top: int = 10) -> dict[str, Any]:
    """Revenue in EUR, orders (repeated orderNums once), average order value, top items."""
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
    source, person_params = events_with_persons(store, filters)
    buyers = store.query(
        f"SELECT count(DISTINCT pk) FROM ({source}) ev "  # noqa: S608
        "WHERE event = 'purchase' AND NOT duplicate AND NOT ephemeral",
        person_params,
    )[0][0]
    orders = sum(int(r[1]) for r in rows)
    unpriced = sum(int(r[2]) for r in rows)
    amount = sum(float(r[3]) for r in rows)
    qty = "CAST(coalesce(item->>'quantity', '1') AS BIGINT)"
    price = "CAST(item->>'value' AS DOUBLE PRECISION)"
    eur = _eur_case(f"{price} * {qty}", "item->>'currency'")
    where_e, params_e = filters.where("e")
    items = store.query(
        f"SELECT item->>'item_id' AS item_id, sum({qty}), count(*), "  # noqa: S608
        f"coalesce(sum({eur}), 0) FROM events e CROSS JOIN LATERAL {sql_dialect.items('e.items')} "
        f"WHERE {where_e} AND e.event = 'purchase' AND NOT e.duplicate "
        "AND e.items IS NOT NULL GROUP BY 1 ORDER BY 4 DESC, 2 DESC, 1 LIMIT ?",
        [*params_e, top],
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
    """Popup display to open rate per popup version (events and people)."""
    source, params = events_with_persons(store, filters)
    rows = store.query(
        "SELECT coalesce(popup_version, '(none)'), "  # noqa: S608
        "count(*) FILTER (WHERE event = 'popup_displayed'), "
        "count(*) FILTER (WHERE event = 'popup_opened'), "
        "count(DISTINCT pk) FILTER (WHERE event = 'popup_displayed'), "
        "count(DISTINCT pk) FILTER (WHERE event = 'popup_opened') "
        f"FROM ({source}) ev WHERE event IN ('popup_displayed', 'popup_opened') "
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
                "people_shown": int(people_shown),
                "people_opened": int(people_opened),
            }
            for version, shown, opened, people_shown, people_opened in rows
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
    )
}
