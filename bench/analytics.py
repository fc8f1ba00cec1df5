"""Analytics at scale: every report on generated events against a plain COUNT(DISTINCT token).

Generates the data set with the same generator as ``footfall demo`` (default: 10,000,000
events from 1,000,000 tokens, 20% of them merged into persons across two sites) into a
DuckDB file, builds the derived tables (daily rollup, person days, funnel step tables, form
events), then times each report over the whole range and, in the same run, the baseline
``SELECT count(DISTINCT token) FROM events`` on the same store. Each figure is the median
of ``--repeat`` runs after one warm-up. It also times the folds that keep the derived
tables current: after 10,000 new events and after 100 merges.

Targets: every report at most 1x the baseline, and under 0.3 s at 10M events (2 s at 100M);
a fold after 10,000 new events under 0.2 s. With ``--postgres`` the same data goes into
PostgreSQL too and every report is also timed there: target within 3x DuckDB's time.

    .venv/bin/python bench/analytics.py                 # 10M events (about a minute to build)
    .venv/bin/python bench/analytics.py --events 100000000 --memory-limit 4GB \\
        --keep /tmp/ff-100m.duckdb
    .venv/bin/python bench/analytics.py --postgres local   # a throwaway server, or a URL
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from footfall.analytics import form_events, funnel_steps, reports
from footfall.analytics.reports import Filters
from footfall.demo import DemoPlan, generate
from footfall.identity import IdentityGraph
from footfall.ingest.validate import RequestContext, validate_event
from footfall.store import open_store
from footfall.store.base import Store

BENCH = Path(__file__).resolve().parent
END = datetime(2026, 11, 1)
EPOCH = datetime(1970, 1, 1)
NEW_EVENTS = 10_000
MERGES = 100


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first touch of the file's pages
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def peak_rss_mib() -> float:
    """This process's peak resident memory (DuckDB runs inside it; PostgreSQL does not)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(target: str, args: argparse.Namespace, tokens: int) -> tuple[Store, float | None]:
    store = open_store(target, memory_limit=args.memory_limit)
    store.migrate()
    seconds = None
    if store.count_events() == 0:  # a kept file is reused as it is
        store.upsert_site("default", "Default site", ["*"])
        plan = DemoPlan(events=args.events, tokens=tokens, merged_share=args.merged, end=END)
        seconds, result = timed(lambda: generate(store, plan))
        if store.backend == "duckdb":
            store.query("CHECKPOINT")
        else:
            store.query("ANALYZE")
        print(f"{store.backend}: built {args.events:,} events in {seconds:.0f} s ({result})")
    return store, seconds


FOLDS: tuple[tuple[str, Callable[[Store], int]], ...] = (
    ("rollup_and_person_days", reports.refresh_presence),
    ("funnel_steps", funnel_steps.refresh),
    ("form_events", form_events.refresh),
)


def derive(store: Store) -> dict[str, float]:
    """Build every derived table once (the first fold after loading)."""
    out = {}
    for name, fold in FOLDS:
        seconds, _ = timed(partial(fold, store))
        out[name] = round(seconds, 2)
        print(f"{store.backend}: {name} built in {seconds:.1f} s")
    return out


def fold_after_changes(store: Store) -> dict[str, float]:
    """Folds after 10,000 new events (returning visitors, the last hour) and 100 merges."""
    sample = [
        t for (t,) in store.query("SELECT DISTINCT token FROM events ORDER BY token LIMIT 5000")
    ]
    kinds = ("visitor", "bot_open", "message_sent", "convo_started")
    base = END - timedelta(hours=1)
    rows = []
    for i in range(NEW_EVENTS):
        moment = base + timedelta(milliseconds=300 * i)
        body: dict[str, Any] = {"event": kinds[i % 4], "token": sample[i % len(sample)]}
        if body["event"] == "message_sent":
            body["data"] = {"text": "where is my order"}
        rows.append(validate_event(body, RequestContext("default", _us(moment))))
    store.insert_events(rows)
    out = {}
    for name, fold in FOLDS:
        out[f"new_events_{name}"] = round(timed(partial(fold, store))[0], 4)
    graph = IdentityGraph(store)
    loners = store.query(
        "SELECT DISTINCT token FROM events WHERE token NOT IN "
        "(SELECT value FROM identity_nodes) ORDER BY token DESC LIMIT ?",
        [2 * MERGES],
    )
    for i in range(0, len(loners) - 1, 2):
        graph.alias("default", loners[i][0], loners[i + 1][0])
    out["merges_rollup_and_person_days"] = round(
        timed(lambda: reports.refresh_presence(store))[0], 4
    )
    out["merges_funnel_steps"] = round(timed(lambda: funnel_steps.refresh(store))[0], 4)
    quiet = median_seconds(lambda: reports.refresh_presence(store), 3)
    out["nothing_new_rollup_and_person_days"] = round(quiet, 4)
    for name, seconds in out.items():
        print(f"{store.backend}: fold {name}: {seconds * 1000:.1f} ms")
    return out


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def report_runs(store: Store) -> list[tuple[str, Callable[[], Any]]]:
    everything = Filters(None, END - timedelta(days=61), END + timedelta(days=1))
    graph = IdentityGraph(store)
    merged_token = store.query(
        "SELECT value FROM identity_nodes WHERE kind = 'token' ORDER BY node_id LIMIT 1"
    )[0][0]
    person = graph.find("default", merged_token)
    assert person is not None
    return [
        ("overview", lambda: reports.overview(store, everything)),
        ("people per day", lambda: reports.unique_people(store, everything, "day")),
        ("people per week", lambda: reports.unique_people(store, everything, "week")),
        ("people per month", lambda: reports.unique_people(store, everything, "month")),
        ("retention (weekly)", lambda: reports.retention(store, everything, "week")),
        ("journey of a person", lambda: graph.person_events("default", person.person_id)),
        ("power users + questions", lambda: reports.power_users(store, everything)),
        ("funnel (5 steps)", lambda: reports.funnel(store, everything)),
        (
            "funnel by A/B group",
            lambda: reports.funnel(store, everything, breakdown="ab_group"),
        ),
        (
            "funnel by popup version",
            lambda: reports.funnel(store, everything, breakdown="popup_version"),
        ),
        ("A/B test", lambda: reports.ab_test(store, everything)),
        ("revenue + top items", lambda: reports.revenue(store, everything)),
        ("answer feedback", lambda: reports.feedback(store, everything)),
        ("popup open rate", lambda: reports.popups(store, everything)),
        ("client errors", lambda: reports.client_errors(store, everything)),
        ("support form deflection", lambda: reports.deflection(store, everything)),
    ]


def measure(store: Store, repeat: int) -> dict[str, Any]:
    baseline = median_seconds(
        lambda: store.query("SELECT count(DISTINCT token) FROM events"), repeat
    )
    rows = []
    for name, fn in report_runs(store):
        seconds = median_seconds(fn, repeat)
        rows.append(
            {"report": name, "seconds": round(seconds, 4), "ratio": round(seconds / baseline, 2)}
        )
    return {"baseline_seconds": round(baseline, 4), "reports": rows}


@contextmanager
def postgres_database(spec: str) -> Iterator[str]:
    """``local``: a throwaway PostgreSQL server on loopback (tests/pgserver.py); else a URL
    of a scratch database the bench may fill."""
    if spec != "local":
        yield spec
        return
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from pgserver import PostgresServer

    server = PostgresServer(settings=("shared_buffers=1GB", "work_mem=64MB")).start()
    try:
        yield server.create_database("bench_analytics")
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tokens", type=int, default=None, help="default: events / 10")
    parser.add_argument("--merged", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="reuse/keep this DuckDB file")
    parser.add_argument("--memory-limit", default=None, help="DuckDB's cap, e.g. 4GB")
    parser.add_argument(
        "--postgres", default=None, help="also on PostgreSQL: 'local' or a scratch database URL"
    )
    args = parser.parse_args()
    tokens = args.tokens or args.events // 10
    path = args.keep or Path(tempfile.mkdtemp(prefix="footfall-analytics-")) / "bench.duckdb"
    duck, built = build(str(path), args, tokens)
    results: dict[str, Any] = {
        "events": args.events,
        "tokens": tokens,
        "merged_share": args.merged,
        "memory_limit": args.memory_limit,
        "duckdb": {"build_seconds": built, "derive_seconds": derive(duck)},
    }
    results["duckdb"].update(measure(duck, args.repeat))
    results["duckdb"]["folds"] = fold_after_changes(duck)
    results["duckdb"]["peak_rss_mib"] = round(peak_rss_mib())
    duck.close()
    if args.postgres:
        with postgres_database(args.postgres) as url:
            pg, pg_built = build(url, args, tokens)
            results["postgresql"] = {"build_seconds": pg_built, "derive_seconds": derive(pg)}
            results["postgresql"].update(measure(pg, args.repeat))
            results["postgresql"]["folds"] = fold_after_changes(pg)
            pg.close()
    print_table(results)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / f"analytics-{args.events // 1_000_000}m.json").write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict[str, Any]) -> None:
    duck = results["duckdb"]
    pg = results.get("postgresql")
    print(
        f"\nbaseline COUNT(DISTINCT token): DuckDB {duck['baseline_seconds'] * 1000:.0f} ms"
        + (f", PostgreSQL {pg['baseline_seconds'] * 1000:.0f} ms" if pg else "")
    )
    header = f"{'report':26s} {'DuckDB ms':>9s} {'x base':>7s}"
    if pg:
        header += f" {'PG ms':>8s} {'PG/Duck':>8s}"
    print(header)
    limit = 0.3 if results["events"] <= 10_000_000 else 2.0
    for i, row in enumerate(duck["reports"]):
        line = f"{row['report']:26s} {row['seconds'] * 1000:9.0f} {row['ratio']:6.2f}x"
        ok = row["ratio"] <= 1.0 and row["seconds"] <= limit
        if pg:
            pg_row = pg["reports"][i]
            within = pg_row["seconds"] / row["seconds"]
            line += f" {pg_row['seconds'] * 1000:8.0f} {within:7.1f}x"
            ok = ok and within <= 3.0
        print(line + ("" if ok else "  MISSED"))


if __name__ == "__main__":
    raise SystemExit(main())
