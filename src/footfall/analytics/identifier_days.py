"""Rollups kept per identifier and day, folded together from the events (both stores).

- ``daily_presence``: one row per (site, day, identifier, ephemeral) with its first and last
  event time and the counts the person reports need; ``person_days`` is derived from it.
- ``daily_items``: per identifier-day and item of its purchases, the quantity, the orders
  naming the item and their EUR value (revenue's top items without a look at every
  purchase's JSON).
- ``daily_questions``: per identifier-day and normalised message text, how many times it
  was sent (power users' most asked questions without reading every message's JSON).

All three are keyed by the identifier-day, so they fold alike and are forgotten alike:

- a first fold (or a migration that resets the mark) builds them from every event;
- on DuckDB only the new events are grouped and combined with the rows already held for
  their identifier-days (every column is a count, a sum, a first or a last): a fold costs
  what it brings in, not a day of events;
- on PostgreSQL (no time index; the token index finds an identifier's events) the
  identifier-days the new events touch are rebuilt from their events;
- an erase deletes the rows of the person's identifiers, retention whole days.

They are not per person: the reports that need persons read ``person_days``, or resolve
identifiers at query time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from footfall.analytics import watermark
from footfall.analytics.dialect import Dialect
from footfall.analytics.watermark import Window
from footfall.ingest.validate import EUR_RATES
from footfall.store.base import Transaction, affected_rows

KEY = ("site_id", "day", "id_kind", "token", "ephemeral")
_KEY_OF_EVENT = "e.site_id, CAST(e.ts AS DATE) AS day, e.id_kind, e.token, e.ephemeral"


def normalised_text(column: str) -> str:
    """A message text lower-cased, its runs of blanks made one space, trailing blanks and
    punctuation dropped: "How do I  reset?!" and "how do i reset" are one question."""
    return (
        f"trim(regexp_replace(regexp_replace(lower({column}), '\\s+', ' ', 'g'), "
        "'[[:space:][:punct:]]+$', '', 'g'))"
    )


def eur_value(value: str, currency: str) -> str:
    """EUR value of an amount, with the static rate table written into the SQL."""
    whens = " ".join(f"WHEN '{code}' THEN {rate!r}" for code, rate in sorted(EUR_RATES.items()))
    return f"({value} * CASE {currency} {whens} END)"


def event_counts(dialect: Dialect, prefix: str = "") -> str:
    """Over a group of events (columns of ``prefix``, e.g. ``e.``): how many, visits,
    orders (re-sent purchases once), conversations, messages, EUR revenue, the first A/B
    group and when it was seen; the presence rollup's counts and the person days' alike."""
    ts, group = f"{prefix}ts", f"{prefix}ab_group"
    purchase = f"{prefix}event = 'purchase' AND NOT {prefix}duplicate"
    return (
        f"count(*), count(*) FILTER (WHERE {prefix}event = 'visitor'), "
        f"count(*) FILTER (WHERE {purchase}), "
        f"count(*) FILTER (WHERE {prefix}event = 'convo_started'), "
        f"count(*) FILTER (WHERE {prefix}event = 'message_sent'), "
        f"sum({prefix}total_value_base) FILTER (WHERE {purchase}), "
        f"{dialect.first_by(group, ts, f'{group} IS NOT NULL')}, "
        f"min({ts}) FILTER (WHERE {group} IS NOT NULL)"
    )


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    extra_key: tuple[str, ...]
    """Key columns after the identifier-day's."""
    rows: Callable[[Dialect, str, str], str]
    """The rows of the events ``e`` in a FROM clause (its first argument) matching a
    condition (its second), grouped by the full key."""
    combine: Callable[[Dialect], str]
    """Over rows of the table grouped by the full key: the columns after the key."""


def _presence_rows(dialect: Dialect, events: str, where: str) -> str:
    return (
        f"SELECT {_KEY_OF_EVENT}, min(e.ts), max(e.ts), {event_counts(dialect, 'e.')} "  # noqa: S608
        f"FROM {events} WHERE {where} GROUP BY 1, 2, 3, 4, 5"
    )


def _presence_combine(dialect: Dialect) -> str:
    sums = ", ".join(
        f"sum({c})" for c in ("events", "visits", "orders", "conversations", "messages", "revenue")
    )
    first_group = dialect.first_by("ab_group", "ab_ts", "ab_group IS NOT NULL")
    return f"min(first_ts), max(last_ts), {sums}, {first_group}, min(ab_ts)"


def _items_rows(dialect: Dialect, events: str, where: str) -> str:
    quantity = "CAST(coalesce(item->>'quantity', '1') AS BIGINT)"
    price = "CAST(item->>'value' AS DOUBLE PRECISION)"
    # Each item's value to the micro-euro, so sums are exact in any order: the rollup's
    # sums of sums and the events' one sum round to the same cent.
    in_eur = eur_value(f"{price} * {quantity}", "item->>'currency'")
    value = f"CAST({in_eur} AS DECIMAL(38, 6))"
    return (
        f"SELECT {_KEY_OF_EVENT}, item->>'item_id' AS item_id, sum({quantity}) AS quantity, "  # noqa: S608
        f"count(*) AS orders, sum({value}) AS revenue_eur "
        f"FROM {events} CROSS JOIN LATERAL {dialect.items('e.items')} WHERE {where} "
        "AND e.event = 'purchase' AND NOT e.duplicate AND e.items IS NOT NULL "
        "GROUP BY 1, 2, 3, 4, 5, 6"
    )


def _questions_rows(dialect: Dialect, events: str, where: str) -> str:
    # Texts are grouped raw first and normalised once per distinct text of a day.
    question = normalised_text("raw")
    return (
        f"SELECT site_id, day, id_kind, token, ephemeral, {question} AS question, "  # noqa: S608
        "sum(n) AS n FROM ("
        f"SELECT {_KEY_OF_EVENT}, "
        f"e.data->>'text' AS raw, count(*) AS n FROM {events} WHERE {where} "
        "AND e.event = 'message_sent' GROUP BY 1, 2, 3, 4, 5, 6) texts "
        f"WHERE raw IS NOT NULL AND {question} <> '' GROUP BY 1, 2, 3, 4, 5, 6"
    )


ROLLUPS = (
    Rollup("daily_presence", (), _presence_rows, _presence_combine),
    Rollup(
        "daily_items",
        ("item_id",),
        _items_rows,
        lambda _: "sum(quantity), sum(orders), sum(revenue_eur)",
    ),
    Rollup("daily_questions", ("question",), _questions_rows, lambda _: "sum(n)"),
)
TABLES = tuple(r.table for r in ROLLUPS)


def rows_from_events(table: str, dialect: Dialect, where: str) -> str:
    """What rollup ``table`` holds for the events ``e`` matching ``where``, straight from
    the events: the reports' events path, grouped as the rollup is."""
    rollup = next(r for r in ROLLUPS if r.table == table)
    return rollup.rows(dialect, "events e", where)


def build(tx: Transaction, window: Window, dialect: Dialect) -> None:
    """Every rollup from every event the window's mark holds."""
    for rollup in ROLLUPS:
        tx.query(f"DELETE FROM {rollup.table}")  # noqa: S608 - fixed names
        tx.query(
            # By day, so a fold's look at a few days skips the rest by row group statistics.
            f"INSERT INTO {rollup.table} "
            + rollup.rows(dialect, "events e", window.folded)
            + " ORDER BY day",
            window.folded_params,
        )


def merge_new(tx: Transaction, window: Window, days: list[date], dialect: Dialect) -> None:
    """DuckDB: group the window's new events and combine them with the rows held for their
    identifier-days (on ``days``, the days they fall on)."""
    same_key = " AND ".join(f"p.{c} = n.{c}" for c in KEY)
    on_days = f"p.day IN ({', '.join('?' * len(days))})"
    for rollup in ROLLUPS:
        table, new, old = rollup.table, f"{rollup.table}_new", f"{rollup.table}_old"
        full_key = ", ".join((*KEY, *rollup.extra_key))
        tx.query(f"DROP TABLE IF EXISTS {new}")
        tx.query(
            f"CREATE TEMP TABLE {new} AS {rollup.rows(dialect, 'events e', window.condition)}",
            window.params,
        )
        tx.query(f"DROP TABLE IF EXISTS {old}")
        tx.query(
            f"CREATE TEMP TABLE {old} AS SELECT p.* FROM {table} p WHERE {on_days} "  # noqa: S608
            f"AND EXISTS (SELECT 1 FROM {new} n WHERE {same_key})",
            days,
        )
        tx.query(
            f"DELETE FROM {table} p USING (SELECT DISTINCT {', '.join(KEY)} FROM {new}) n "  # noqa: S608
            f"WHERE {on_days} AND {same_key}",
            days,
        )
        # The table's rows first: the union takes their column names.
        tx.query(
            f"INSERT INTO {table} SELECT {full_key}, {rollup.combine(dialect)} FROM "  # noqa: S608
            f"(SELECT * FROM {old} UNION ALL SELECT * FROM {new}) u GROUP BY {full_key}"
        )
        tx.query(f"DROP TABLE {new}")
        tx.query(f"DROP TABLE {old}")


def rebuild_touched(tx: Transaction, window: Window, dialect: Dialect) -> None:
    """PostgreSQL: the identifier-days the window's new events touch, from their events
    (found by the token index), the new ones and those already folded alike."""
    tx.query("DROP TABLE IF EXISTS touched_days")
    tx.query(
        "CREATE TEMP TABLE touched_days AS SELECT DISTINCT site_id, CAST(ts AS DATE) AS day, "  # noqa: S608
        f"id_kind, token FROM events e WHERE {window.condition}",
        window.params,
    )
    # Each touched identifier-day's events and rollup rows by the token indexes (events'
    # and migration 17's), whatever the planner guesses of the new temporary table.
    same_day = "{t}.token = k.token AND {t}.site_id = k.site_id AND {t}.id_kind = k.id_kind"
    found = same_day.format(t="e") + " AND e.ts >= k.day AND e.ts < k.day + 1"
    events = "touched_days k " + dialect.index_lookup("events", "e", found)
    for rollup in ROLLUPS:
        rows = dialect.index_lookup(
            rollup.table, "p", same_day.format(t="p") + " AND p.day = k.day"
        )
        tx.query(
            f"DELETE FROM {rollup.table} WHERE ctid = ANY(ARRAY("  # noqa: S608
            f"SELECT p.ctid FROM touched_days k {rows}))"
        )
        tx.query(
            f"INSERT INTO {rollup.table} " + rollup.rows(dialect, events, window.folded),
            window.folded_params,
        )
    tx.query("DROP TABLE touched_days")


def forget_erased(tx: Transaction, dialect: Dialect, values: list[str], tenant: str) -> None:
    """An erase, after it deleted the person's events: the rows of the person's
    identifiers on the tenant's sites, made again from the events of those identifiers it
    kept (another person's, after a token was taken over) that the rollups had folded."""
    if not values:
        return
    marks = ", ".join("?" * len(values))
    on_sites = (
        f"token IN ({marks}) AND site_id IN "  # noqa: S608
        "(SELECT site_id FROM sites WHERE coalesce(tenant, site_id) = ?)"
    )
    for table in TABLES:
        tx.query(f"DELETE FROM {table} WHERE {on_sites}", [*values, tenant])  # noqa: S608
    backend = "duckdb" if dialect.name == "duckdb" else "postgresql"
    mark = watermark.read_mark(tx, backend, "daily_presence")
    if mark == 0:
        return  # nothing folded yet: the first fold builds from the events as they are
    folded, folded_params = watermark.folded_before(backend, mark, "e")
    kept = f"e.{on_sites} AND {folded}"
    for rollup in ROLLUPS:
        tx.query(
            f"INSERT INTO {rollup.table} " + rollup.rows(dialect, "events e", kept),
            [*values, tenant, *folded_params],
        )


def forget_before(tx: Transaction, day: date) -> int:
    """Data retention: the days before ``day``."""
    return sum(
        affected_rows(tx.query(f"DELETE FROM {table} WHERE day < ?", [day]))  # noqa: S608
        for table in TABLES
    )
