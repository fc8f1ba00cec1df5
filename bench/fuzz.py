"""The long fuzzing run: the harness of tests/test_fuzz.py with many more cases.

Starts ``footfall serve`` on 127.0.0.1 with a fresh DuckDB file and an API key, runs
schemathesis over every operation of the server's own /openapi.json (positive and negative
cases), then hypothesis-made headers, query strings and garbled or oversized payloads; stops
the server cleanly and compares the events in the file with the events answered 200.
Exits non-zero on any 5xx, broken promise or count mismatch.

    python bench/fuzz.py [--examples 100] [--garbled 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from conftest import CLEAN_EXIT, Server  # noqa: E402
from fuzzing import Tally, client_ips, run_garbled, run_schemathesis  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="per operation and mode")
    parser.add_argument("--garbled", type=int, default=3000, help="hypothesis requests")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="footfall-fuzz-") as tmp:
        server = Server(Path(tmp) / "srv").start()
        server.stop()
        key = server.new_key("default")
        server.start()
        started = time.monotonic()
        schema_tally, garbled_tally = Tally(), Tally()
        try:
            run_schemathesis(
                server.url,
                key,
                args.examples,
                schema_tally,
                client_ips("10.90"),
                progress=lambda step: print(f"  schemathesis: {step}", flush=True),
            )
            print(f"schemathesis: {schema_tally.requests} requests", flush=True)
            run_garbled(server.url, key, args.garbled, garbled_tally, client_ips("10.91"))
            print(f"garbled: {garbled_tally.requests} requests", flush=True)
        finally:
            code = server.stop()
        seconds = time.monotonic() - started
        stored = int(server.rows("SELECT count(*) FROM events")[0][0])

    tallies = {"schemathesis": schema_tally, "garbled": garbled_tally}
    expected = sum(t.expected_stored for t in tallies.values())
    result = {
        "seconds": round(seconds, 1),
        "requests": sum(t.requests for t in tallies.values()),
        "server_errors": sum(t.server_errors for t in tallies.values()),
        "failures": sum(len(t.failures) for t in tallies.values()),
        "events_acknowledged": sum(t.acknowledged for t in tallies.values()),
        "events_erased": sum(t.erased for t in tallies.values()),
        "events_stored": stored,
        "clean_exit": code in CLEAN_EXIT,
        **{
            name: {
                "requests": t.requests,
                "statuses": dict(sorted(t.statuses.items())),
                "operations": len(t.by_operation),
            }
            for name, t in tallies.items()
        },
    }
    print(json.dumps(result, indent=2))
    for tally in tallies.values():
        for failure in tally.failures[:10]:
            print("FAILURE:", failure[:2000])
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    ok = (
        result["server_errors"] == 0
        and result["failures"] == 0
        and stored == expected
        and result["clean_exit"]
    )
    print("OK" if ok else f"PROBLEM: stored {stored}, expected {expected}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
