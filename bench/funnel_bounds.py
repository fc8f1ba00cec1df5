"""Funnels: the step tables the reports read against the events path, in one run.

Issue 5 asks for every report at most 5x a plain ``COUNT(DISTINCT token)``. Funnels read
through the events path (every event scanned and joined to the identity graph, then
grouped by person) took 4-5x plain and 6-8x with a breakdown on the 2-core machine. On
the embedded store they now read the funnel step tables (footfall/funnel_steps.py). This
benchmark times both on the same store, for the plain funnel and every breakdown, checks
that their counts are equal, and times a fold that has nothing to do (what every funnel
pays before it runs on a quiet store) and one after a batch of new events.

Build the store with ``bench/analytics.py --keep PATH`` first (it folds the step tables
in once, 6-7 s at 10M events).

    .venv/bin/python bench/funnel_bounds.py PATH [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# bench/analytics.py (this directory is first on sys.path), not footfall.analytics
from analytics import END, median_seconds
from footfall.analytics import funnel_steps, reports
from footfall.analytics.reports import BREAKDOWNS, DEFAULT_FUNNEL, Filters
from footfall.ingest.validate import RequestContext, validate_event
from footfall.store import open_store

WINDOW = 7 * 86400
STEPS = list(DEFAULT_FUNNEL)
NEW_EVENTS = 10_000


def counts(rows: list[tuple[Any, ...]]) -> list[tuple[int, str, int]]:
    return sorted((int(step), str(group), int(people)) for step, group, people in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a store built by bench/analytics.py --keep")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # A copy: the run adds events to time a fold, and the given store stays as it was.
    copy = Path(tempfile.mkdtemp(prefix="footfall-funnels-")) / "store.duckdb"
    shutil.copyfile(args.store, copy)
    store = open_store(str(copy))
    everything = Filters(None, END - timedelta(days=61), END + timedelta(days=1))
    started = time.perf_counter()
    folded = funnel_steps.refresh(store)
    print(f"fold before the run: {folded:,} rows in {time.perf_counter() - started:.1f} s")

    baseline = 1000 * median_seconds(
        lambda: store.query("SELECT count(DISTINCT token) FROM events"), args.repeat + 4
    )
    print(f"baseline COUNT(DISTINCT token): {baseline:.0f} ms\n")
    print(f"{'funnel (5 steps)':24s} {'events path':>17s} {'step tables':>17s}  counts equal")
    failures = 0
    for breakdown in (None, *BREAKDOWNS):
        timings = []
        results = []
        for events_path in (True, False):
            sql, params = reports.funnel_query(
                store, everything, STEPS, WINDOW, breakdown, events_path=events_path
            )
            results.append(counts(store.query(sql, params)))
            ms = 1000 * median_seconds(lambda: store.query(sql, params), args.repeat)  # noqa: B023
            timings.append(f"{ms:6.0f} ms {ms / baseline:5.1f}x")
        same = results[0] == results[1] and bool(results[0])
        failures += not same
        name = f"by {breakdown}" if breakdown else "plain"
        print(f"{name:24s} {timings[0]:>17s} {timings[1]:>17s}  {'yes' if same else 'NO'}")

    quiet = 1000 * median_seconds(lambda: funnel_steps.refresh(store), args.repeat)
    print(f"\nfold with nothing new: {quiet:.1f} ms")
    # A batch of new visits by known tokens, as a live server would have loaded since the
    # last report.
    tokens = [t for (t,) in store.query("SELECT token FROM events LIMIT ?", [NEW_EVENTS])]
    moment = (END - timedelta(hours=1) - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    store.insert_events(
        [
            validate_event({"event": "visitor", "token": t}, RequestContext("default", moment))
            for t in tokens
        ]
    )
    started = time.perf_counter()
    folded = funnel_steps.refresh(store)
    print(
        f"fold after {len(tokens):,} new events: {folded:,} rows in "
        f"{1000 * (time.perf_counter() - started):.0f} ms"
    )
    store.close()
    shutil.rmtree(copy.parent)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
