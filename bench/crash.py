"""Crash durability, many times: full-speed mixed traffic, SIGKILL, restart, repeat.

Each run starts ``footfall serve`` on 127.0.0.1 with a fresh DuckDB file (loads into DuckDB
back to back, so kills land mid-load), sends the mixed traffic of tests/traffic.py from
many threads, kills the server with SIGKILL once enough events were acknowledged, restarts
it (journal replay) and goes on, ``--kills`` times; then stops it cleanly and compares the
file with every event answered 200. Reports acknowledged, stored, lost (must be 0), stored
twice (must be 0), orders counted more than once (must be 0), replayed events, restart time.

    python bench/crash.py [--runs 5] [--kills 3] [--acks 3000] [--workers 16]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from conftest import CLEAN_EXIT, Server, config_with  # noqa: E402
from traffic import CrashTally, load_then_kill  # noqa: E402


def one_run(workdir: Path, kills: int, acks: int, workers: int) -> dict[str, Any]:
    server = Server(workdir, config_with("journal_load_interval_ms = 0"))
    key = server.start_with_key()
    tally = CrashTally()
    errors: list[BaseException] = []
    restarts: list[float] = []
    for cycle in range(kills):
        _, failed = load_then_kill(
            server.url,
            key,
            tally,
            lambda: server.stop(signal.SIGKILL),
            cycle=cycle,
            workers=workers,
            acks=acks,
            within_s=300,
        )
        errors.extend(failed)
        began = time.monotonic()
        server.start()
        restarts.append(time.monotonic() - began)
    clean = server.stop() in CLEAN_EXIT
    stored = dict(server.rows("SELECT token, count(*) FROM events GROUP BY token"))
    orders = server.rows(
        "SELECT count(*) FILTER (WHERE NOT duplicate) FROM events "
        "WHERE event = 'purchase' AND order_num IS NOT NULL GROUP BY order_num"
    )
    replayed = sum(
        int(n) for n in re.findall(r'journal replayed[^\n]*"events": (\d+)', server.log.read_text())
    )
    return {
        "acknowledged": len(tally.acknowledged),
        "stored": len(stored),
        "lost": sum(1 for t in tally.acknowledged if t not in stored),
        "stored_twice": sum(1 for n in stored.values() if n > 1),
        "stored_never_sent": len(set(stored) - tally.sent),
        "stored_unacknowledged": len(set(stored) - tally.acknowledged),
        "orders_counted_not_once": sum(1 for (n,) in orders if n != 1),
        "replayed_events": replayed,
        "restart_seconds_max": round(max(restarts), 2),
        "sender_errors": [repr(e) for e in errors],
        "clean_exit": clean,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per run")
    parser.add_argument("--acks", type=int, default=3000, help="acknowledged events per kill")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="footfall-crash-") as tmp:
        for n in range(args.runs):
            run = one_run(Path(tmp) / f"run{n}", args.kills, args.acks, args.workers)
            print(f"run {n + 1}: {json.dumps(run)}", flush=True)
            runs.append(run)
    keys = ("acknowledged", "lost", "stored_twice", "stored_never_sent", "orders_counted_not_once")
    totals = {k: sum(int(r[k]) for r in runs) for k in (*keys, "replayed_events")}
    summary = {"runs": args.runs, "kills": args.runs * args.kills, **totals, "per_run": runs}
    print(json.dumps({k: v for k, v in summary.items() if k != "per_run"}, indent=2))
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "crash.json").write_text(json.dumps(summary, indent=2) + "\n")
    ok = all(
        r["lost"]
        == r["stored_twice"]
        == r["stored_never_sent"]
        == r["orders_counted_not_once"]
        == 0
        and r["clean_exit"]
        and not r["sender_errors"]
        for r in runs
    )
    print("OK" if ok else "PROBLEM")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
