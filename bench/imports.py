"""``footfall import`` throughput: a generated NDJSON file of Segment messages (page views,
product and custom tracks, orders with products, some identifies) into a fresh embedded
store, against a baseline measured in the same run (the same file read and JSON-decoded line
by line, nothing validated or stored); then the same file again (idempotent: nothing added).

    python bench/imports.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import msgspec

BENCH = Path(__file__).resolve().parent


def generate(path: Path, events: int, seed: int = 7) -> int:
    """``events`` event lines plus one identify per 50 visitors; returns the lines."""
    rnd = random.Random(seed)
    visitors = max(1, events // 8)
    lines = 0
    with path.open("w") as out:
        for i in range(events):
            who = rnd.randrange(visitors)
            anon = f"anon-{who:09d}"
            ts = f"2026-10-{1 + i * 28 // events:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}.000Z"
            roll = rnd.random()
            if roll < 0.5:
                message = {
                    "type": "page",
                    "anonymousId": anon,
                    "properties": {"path": f"/p/{i % 300}", "title": "Shop"},
                    "context": {
                        "page": {"url": f"https://shop.test/p/{i % 300}"},
                        "userAgent": "Mozilla/5.0",
                        "ip": "203.0.113.7",
                    },
                }
            elif roll < 0.8:
                message = {
                    "type": "track",
                    "event": "Product Viewed",
                    "anonymousId": anon,
                    "properties": {"product_id": f"SKU-{i % 500}", "price": 19.9},
                }
            elif roll < 0.95:
                message = {
                    "type": "track",
                    "event": "Product Added",
                    "anonymousId": anon,
                    "properties": {
                        "product_id": f"SKU-{i % 500}",
                        "price": 19.9,
                        "quantity": 1,
                        "currency": "EUR",
                    },
                }
            else:
                message = {
                    "type": "track",
                    "event": "Order Completed",
                    "anonymousId": anon,
                    "properties": {
                        "order_id": f"ORD-{i}",
                        "currency": "EUR",
                        "revenue": 39.8,
                        "products": [{"product_id": "SKU-1", "price": 19.9, "quantity": 2}],
                    },
                }
            message.update(messageId=f"msg-{i:010d}", timestamp=ts, sentAt=ts)
            out.write(json.dumps(message, separators=(",", ":")) + "\n")
            lines += 1
            if who % 50 == 0 and rnd.random() < 0.02:
                identify = {
                    "type": "identify",
                    "anonymousId": anon,
                    "userId": f"user-{who}",
                    "traits": {"email": f"user{who}@shop.test"},
                    "messageId": f"id-{i:010d}",
                    "timestamp": ts,
                }
                out.write(json.dumps(identify, separators=(",", ":")) + "\n")
                lines += 1
    return lines


def baseline(path: Path) -> float:
    """Seconds to read and JSON-decode every line (what any import must do at least)."""
    decoder = msgspec.json.Decoder()
    started = time.perf_counter()
    with path.open("rb") as handle:
        for line in handle:
            decoder.decode(line)
    return time.perf_counter() - started


def run_import(path: Path, database: Path, workers: int | None) -> float:
    """Seconds for one ``footfall import`` process, from its start to its end."""
    command = [sys.executable, "-m", "footfall", "import", str(path), "--database", str(database)]
    if workers is not None:
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "COLUMNS": "200"},  # its summary on one line
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"import failed:\n{done.stdout}\n{done.stderr}")
    print(done.stdout.strip().splitlines()[-1])
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=None, help="import's --workers")
    args = parser.parse_args()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="footfall-import-"))
    source = workdir / "events.ndjson"
    lines = generate(source, args.events)
    database = workdir / "import.duckdb"
    base = baseline(source)
    first = run_import(source, database, args.workers)
    second = run_import(source, database, args.workers)
    load_after = os.getloadavg()
    con = duckdb.connect(str(database), read_only=True)
    row = con.execute("SELECT count(*) FROM events").fetchone()
    con.close()
    stored = int(row[0]) if row else -1
    report = {
        "events": args.events,
        "lines": lines,
        "baseline_decode_s": round(base, 2),
        "import_s": round(first, 2),
        "import_events_per_s": round(args.events / first),
        "reimport_s": round(second, 2),
        "ratio_to_decode_only": round(base / first, 3),
        "stored_events": stored,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    print(f"decode only : {base:7.1f} s ({lines / base:,.0f} lines/s)")
    print(
        f"import      : {first:7.1f} s ({args.events / first:,.0f} events/s, process included;"
        " target >= 100,000)"
    )
    print(f"again       : {second:7.1f} s (adds nothing)")
    verdict = "equal" if stored == args.events else "MISMATCH"
    print(f"stored      : {stored:,} of {args.events:,} ({verdict})")
    print(
        f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} cores)"
    )
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "imports.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if stored == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
