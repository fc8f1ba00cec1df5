"""Analytics at scale: every report on generated events against a plain COUNT(DISTINCT token).

Generates the data set with the same generator as ``footfall demo`` (default: 10,000,000
events from 1,000,000 tokens, 20% of them merged into persons across two sites) into a
DuckDB file, then times each report over the whole range and, in the same run, the
baseline ``SELECT count(DISTINCT token) FROM events`` on the same store. Each figure is the
median of ``--repeat`` runs after one warm-up. Targets: every report under 2 s and at most
5x the baseline.

    .venv/bin/python bench/analytics.py                 # 10M events (about a minute to build)
    .venv/bin/python bench/analytics.py --events 1000000 --keep /tmp/ff-1m.duckdb
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from footfall.analytics import form_events, funnel_steps, reports
from footfall.analytics.reports import Filters
from footfall.demo import DemoPlan, generate
from footfall.identity import IdentityGraph
from footfall.store import open_store
from footfall.store.base import Store

BENCH = Path(__file__).resolve().parent
END = datetime(2026, 11, 1)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first touch of the file's pages
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def build(path: Path, events: int, tokens: int, merged: float) -> Store:
    store = open_store(str(path))
    store.migrate()
    if store.count_events() != events:
        store.upsert_site("default", "Default site", ["*"])
        started = time.perf_counter()
        result = generate(
            store, DemoPlan(events=events, tokens=tokens, merged_share=merged, end=END)
        )
        store.query("CHECKPOINT")
        print(
            f"built {result.events:,} events, {result.tokens:,} tokens, "
            f"{result.persons:,} merged persons in {time.perf_counter() - started:.0f} s"
        )
    return store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tokens", type=int, default=None, help="default: events / 10")
    parser.add_argument("--merged", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="reuse/keep this DuckDB file")
    args = parser.parse_args()
    tokens = args.tokens or args.events // 10
    path = args.keep or Path(tempfile.mkdtemp(prefix="footfall-analytics-")) / "bench.duckdb"
    store = build(path, args.events, tokens, args.merged)
    everything = Filters(None, END - timedelta(days=61), END + timedelta(days=1))
    graph = IdentityGraph(store)
    merged_token = store.query(
        "SELECT value FROM identity_nodes WHERE kind = 'token' ORDER BY node_id LIMIT 1"
    )[0][0]
    person = graph.find("default", merged_token)
    assert person is not None

    started = time.perf_counter()
    days = reports.refresh_presence(store)
    refresh_s = time.perf_counter() - started
    print(f"daily rollup: {days} days rebuilt in {refresh_s:.1f} s (once, after loading)")
    started = time.perf_counter()
    step_rows = funnel_steps.refresh(store)
    steps_s = time.perf_counter() - started
    print(f"funnel step tables: {step_rows:,} rows folded in {steps_s:.1f} s (once, after loading)")
    started = time.perf_counter()
    form_rows = form_events.refresh(store)
    forms_s = time.perf_counter() - started
    print(f"form events table: {form_rows:,} rows folded in {forms_s:.1f} s (once, after loading)")
    quiet_fold = median_seconds(lambda: form_events.refresh(store), args.repeat)
    print(f"form events fold with nothing new: {quiet_fold * 1000:.1f} ms")

    baseline = median_seconds(
        lambda: store.query("SELECT count(DISTINCT token) FROM events"), args.repeat
    )
    runs: list[tuple[str, Callable[[], Any]]] = [
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
    rows: list[dict[str, Any]] = []
    print(f"\nbaseline COUNT(DISTINCT token): {baseline * 1000:.0f} ms\n")
    print(f"{'report':28s} {'ms':>7s} {'x baseline':>11s}  targets (< 2 s, <= 5x)")
    for name, fn in runs:
        seconds = median_seconds(fn, args.repeat)
        ratio = seconds / baseline
        ok = seconds < 2.0 and ratio <= 5.0
        rows.append({"report": name, "seconds": round(seconds, 4), "ratio": round(ratio, 2)})
        print(f"{name:28s} {seconds * 1000:7.0f} {ratio:10.1f}x  {'ok' if ok else 'MISSED'}")
    # The deflection report's events path (PostgreSQL's, and DuckDB's before form_events).
    events_path = median_seconds(
        lambda: reports.deflection(store, everything, events_path=True), args.repeat
    )
    print(
        f"{'(deflection, events path)':28s} {events_path * 1000:7.0f} "
        f"{events_path / baseline:10.1f}x  (not a target: the path form_events replaces)"
    )
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"\nslowest relative to baseline: {worst['report']} at {worst['ratio']}x")
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "analytics.json").write_text(
        json.dumps(
            {
                "events": store.count_events(),
                "tokens": tokens,
                "merged_share": args.merged,
                "baseline_seconds": round(baseline, 4),
                "rollup_refresh_seconds": round(refresh_s, 2),
                "funnel_steps_refresh_seconds": round(steps_s, 2),
                "form_events_refresh_seconds": round(forms_s, 2),
                "form_events_quiet_fold_seconds": round(quiet_fold, 4),
                "deflection_events_path_seconds": round(events_path, 4),
                "reports": rows,
            },
            indent=2,
        )
    )
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
