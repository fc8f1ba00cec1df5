"""What the site pages read, against a scan of the events table on the same store.

The sites list reads every site's last event time and events today (``site_activity``: one
grouped scan on DuckDB, index reads per site on PostgreSQL); a site's install check polls,
every 2 s while its page is open, the newest events received in the last 24 hours
(``recent_events``) and today's count (``events_today``), both range reads on ``received_at``
(zone maps on DuckDB, the (site_id, received_at) index on PostgreSQL), so they should cost
far less than a scan however large the table grows. The baseline is
``SELECT count(DISTINCT token) FROM events``, as in bench/analytics.py. Each figure is the
median of ``--repeat`` runs after a warm-up, with its ratio to the baseline of the same run.

    .venv/bin/python bench/admin.py                                # 1M events, DuckDB
    .venv/bin/python bench/admin.py --postgres postgresql://...    # and on that database
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

# bench/analytics.py (this directory is first on sys.path), not footfall.analytics
from analytics import BENCH, END, median_seconds
from footfall import sites
from footfall.demo import DemoPlan, generate
from footfall.ingest.validate import now_us
from footfall.store import open_store
from footfall.store.base import EventRow, Store


def prepare(store: Store, events: int) -> None:
    store.migrate()
    store.upsert_site("default", "Default site", ["*"])
    if store.count_events() < events:
        started = time.perf_counter()
        generate(store, DemoPlan(events=events, tokens=events // 10, end=END))
        print(f"  built {events:,} events in {time.perf_counter() - started:.0f} s")
    now = now_us()  # what an install check finds: a few events of the last minutes
    store.insert_events(
        [EventRow("default", now - i, now - i, "visitor", f"bench-live-{i:04d}") for i in range(20)]
    )


def measure(store: Store, repeat: int) -> dict[str, float]:
    baseline = median_seconds(
        lambda: store.query("SELECT count(DISTINCT token) FROM events"), repeat
    )
    timed = {
        "baseline count(DISTINCT token)": baseline,
        "site_activity (sites list)": median_seconds(lambda: sites.site_activity(store), repeat),
        "recent_events (install check)": median_seconds(
            lambda: sites.recent_events(store, "default"), repeat
        ),
        "events_today (install check)": median_seconds(
            lambda: sites.events_today(store, "default"), repeat
        ),
    }
    for name, seconds in timed.items():
        print(f"  {name:32} {seconds * 1000:8.1f} ms  {seconds / baseline:5.2f}x baseline")
    return {name: round(seconds * 1000, 2) for name, seconds in timed.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--postgres", help="also on this (scratch) PostgreSQL database")
    args = parser.parse_args()
    results: dict[str, object] = {"events": args.events}
    with tempfile.TemporaryDirectory(prefix="footfall-admin-") as scratch:
        print("DuckDB")
        store = open_store(str(Path(scratch) / "admin.duckdb"))
        prepare(store, args.events)
        store.query("CHECKPOINT")
        results["duckdb"] = measure(store, args.repeat)
        store.close()
    if args.postgres:
        print("PostgreSQL")
        store = open_store(args.postgres)
        prepare(store, args.events)
        store.query("ANALYZE events")
        results["postgresql"] = measure(store, args.repeat)
        store.close()
    out = BENCH / "results" / "admin.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
