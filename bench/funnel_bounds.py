"""How fast could a funnel be? The shipped funnel against faster layouts of the same data.

Issue 5 asks for every report at most 5x a plain ``COUNT(DISTINCT token)``. Funnels miss it
(plain about 4-5x, with a breakdown about 6-7x on the 2-core machine). This benchmark
measures what the funnel would cost if parts of its work were done ahead of time, so the
choice between relaxing the target and building such a layout rests on numbers:

- *shipped*: ``analytics.funnel_query``, as the reports run it;
- *identity resolved*: the step events with their person key already in a table (no
  events scan, no identity join), read through the same CTE;
- *resolved, by event type*: the same table sorted by event type and read directly per
  step, so each step scans only its rows (the floor for an exact SQL funnel here);
- *per-event-type index*: a narrow copy of the events sorted by type with an integer
  token key, the identity join done per step on integers (a layout that could be kept up
  to date without rewriting rows on every merge);
- *+ breakdown per person*: the breakdown value precomputed per person and joined to each
  step's persons (what a maintained person table would give).

Every variant's counts are checked equal to the shipped funnel's; the tables go to a
scratch database file, so the store file is not changed. Build the store with ``bench/analytics.py
--keep PATH`` first.

    .venv/bin/python bench/funnel_bounds.py PATH [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

# bench/analytics.py (this directory is first on sys.path), not footfall.analytics
from analytics import END, median_seconds
from footfall import analytics
from footfall.analytics import DEFAULT_FUNNEL, Filters
from footfall.store import open_store
from footfall.store.base import Store

WINDOW = 7 * 86400
STEPS = list(DEFAULT_FUNNEL)
BREAKDOWN = "ab_group"


def chain(step_rows: Callable[[int], str], steps: int, person_values: str | None) -> str:
    """The shipped funnel's step chain over ``step_rows(n)`` (rows of pk, ts for step n)."""
    window = f"INTERVAL {WINDOW} SECOND"
    ctes = [f"s1 AS (SELECT pk, min(ts) AS t1 FROM {step_rows(1)} e GROUP BY pk)"]  # noqa: S608
    for n in range(2, steps + 1):
        ctes.append(
            f"s{n} AS (SELECT e.pk, min(p.t1) AS t1, min(e.ts) AS t{n} "  # noqa: S608
            f"FROM {step_rows(n)} e JOIN s{n - 1} p ON p.pk = e.pk "
            f"WHERE e.ts >= p.t{n - 1} AND e.ts <= p.t1 + {window} GROUP BY e.pk)"
        )
    return f"WITH {', '.join(ctes)} {counting(steps, person_values)}"


def counting(steps: int, person_values: str | None) -> str:
    """People per step; with ``person_values`` (a table of pk, bd) per breakdown value."""
    if person_values is None:
        return " UNION ALL ".join(
            f"SELECT {i}, 'all', count(*) FROM s{i}"  # noqa: S608 - integers only
            for i in range(1, steps + 1)
        )
    return " UNION ALL ".join(
        f"SELECT {i}, coalesce(b.bd, '(none)'), count(*) FROM s{i} "  # noqa: S608
        f"LEFT JOIN {person_values} b ON b.pk = s{i}.pk GROUP BY 2"
        for i in range(1, steps + 1)
    )


def prepare(store: Store, everything: Filters) -> None:
    """Tables of the layouts, in a scratch database file attached beside the store (stored
    and compressed like the store's own tables; the store file is not changed)."""
    scratch = Path(tempfile.mkdtemp(prefix="footfall-funnel-")) / "scratch.duckdb"
    store.query(f"ATTACH '{scratch}' AS scratch")
    source, params = analytics.events_with_persons(store, everything)
    codes = ", ".join(f"('{name}', {n})" for n, name in enumerate(STEPS, 1))
    store.query(
        "CREATE OR REPLACE TABLE scratch.resolved AS SELECT pk, ts, k.step, "  # noqa: S608
        f"{BREAKDOWN} AS bd FROM ({source}) src JOIN (VALUES {codes}) k(name, step) "
        "ON src.event = k.name WHERE NOT ephemeral ORDER BY k.step, ts",
        params,
    )
    # The breakdown value the shipped funnel uses: each person's earliest over step events.
    store.query(
        "CREATE OR REPLACE TABLE scratch.person_values AS SELECT pk, "
        "arg_min(bd, ts) FILTER (WHERE bd IS NOT NULL) AS bd FROM scratch.resolved GROUP BY pk"
    )
    start, end = everything.start, everything.end
    store.query(
        "CREATE OR REPLACE TABLE scratch.step_index AS SELECT event, ts, "
        "CAST(hash(token) >> 1 AS BIGINT) AS token_key, id_kind, ephemeral FROM events "
        "WHERE ts >= ? AND ts < ? ORDER BY event, ts",
        [start, end],
    )
    store.query(
        "CREATE OR REPLACE TABLE scratch.node_keys AS SELECT tenant, "
        "CAST(hash(value) >> 1 AS BIGINT) AS value_key, kind, person_id, valid_from, valid_to "
        "FROM identity_nodes"
    )


def variants(store: Store) -> dict[str, str]:
    tenant = store.query("SELECT coalesce(tenant, site_id) FROM sites LIMIT 1")[0][0]

    def from_cte(n: int) -> str:
        return f"(SELECT pk, ts FROM ev WHERE step = {n})"  # noqa: S608 - integers only

    def by_type(n: int) -> str:
        return f"(SELECT pk, ts FROM scratch.resolved WHERE step = {n})"  # noqa: S608

    def index(n: int) -> str:
        return (
            "(SELECT coalesce(-k.person_id, i.token_key) AS pk, i.ts FROM scratch.step_index i "  # noqa: S608
            f"LEFT JOIN scratch.node_keys k ON k.tenant = '{tenant}' AND k.value_key = i.token_key "
            "AND k.kind = i.id_kind AND i.ts >= k.valid_from AND i.ts < k.valid_to "
            f"WHERE i.event = '{STEPS[n - 1]}' AND NOT i.ephemeral)"
        )

    through_cte = "WITH ev AS MATERIALIZED (SELECT pk, ts, step FROM scratch.resolved), "
    return {
        "identity resolved (through a CTE)": through_cte
        + chain(from_cte, len(STEPS), None)[len("WITH ") :],
        "resolved, by event type": chain(by_type, len(STEPS), None),
        "per-event-type index": chain(index, len(STEPS), None),
        "resolved by type + breakdown per person": chain(
            by_type, len(STEPS), "scratch.person_values"
        ),
        "index + breakdown per person": chain(index, len(STEPS), "scratch.person_values"),
    }


def counts(rows: list[tuple[Any, ...]]) -> list[tuple[int, str, int]]:
    return sorted((int(step), str(group), int(people)) for step, group, people in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a store built by bench/analytics.py --keep")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = open_store(str(args.store))
    everything = Filters(None, END - timedelta(days=61), END + timedelta(days=1))
    started = time.perf_counter()
    prepare(store, everything)
    print(f"scratch tables built in {time.perf_counter() - started:.1f} s\n")

    plain_sql, plain_params = analytics.funnel_query(store, everything, STEPS, WINDOW, None)
    split_sql, split_params = analytics.funnel_query(store, everything, STEPS, WINDOW, BREAKDOWN)
    store.query("CHECKPOINT scratch")
    plain = counts(store.query(plain_sql, plain_params))
    split = counts(store.query(split_sql, split_params))
    # The shipped plain chain, its counts joined to the precomputed per-person values.
    head, found, _ = plain_sql.partition(" SELECT 1 AS step")
    if not found:
        raise SystemExit("funnel_query no longer ends with its per-step counts; update this")
    joined = f"{head} {counting(len(STEPS), 'scratch.person_values')}"

    baseline = 1000 * median_seconds(
        lambda: store.query("SELECT count(DISTINCT token) FROM events"), args.repeat + 4
    )
    print(f"baseline COUNT(DISTINCT token): {baseline:.0f} ms\n")
    print(f"{'funnel (5 steps)':42s} {'ms':>6s} {'x base':>7s}  counts equal")
    failures = 0

    def report(
        name: str, sql: str, params: list[Any], expected: list[tuple[int, str, int]]
    ) -> None:
        nonlocal failures
        got = counts(store.query(sql, params))
        same = got == expected
        failures += not same
        ms = 1000 * median_seconds(lambda: store.query(sql, params), args.repeat)
        print(f"{name:42s} {ms:6.0f} {ms / baseline:6.1f}x  {'yes' if same else 'NO'}")

    report("shipped", plain_sql, plain_params, plain)
    report(f"shipped, by {BREAKDOWN}", split_sql, split_params, split)
    report("shipped + breakdown per person", joined, plain_params, split)
    for name, sql in variants(store).items():
        report(name, sql, [], split if "breakdown" in name else plain)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
