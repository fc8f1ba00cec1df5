"""Batch ingest throughput: Footfall's batch API and the Segment-spec /v1/batch against a
parse-only baseline (the same body read and JSON-decoded, nothing stored) on one server.

Starts ``footfall serve`` on 127.0.0.1 with a fresh DuckDB file and a write key, drives it
with autocannon (500-event batches, exact request counts, alternating rounds), stops the
server and checks that the stored events equal the events acknowledged.

    python bench/batch.py [--requests 200] [--size 500] [--connections 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb
import psutil

from ingest import (
    BENCH,
    child_pids,
    ensure_loadgen,
    free_port,
    metric_means,
    peak_rss_mib,
    wait_healthy,
)

ROUTES = (
    ("baseline", "/bench/noop-batch", "tracking"),
    ("batch", "/api/analytics/batch", "tracking"),
    ("segment", "/v1/batch", "segment"),
)


def load(
    url: str, amount: int, connections: int, size: int, mode: str, auth: str
) -> tuple[float, float]:
    """Events per second of one round, and the client's CPU seconds; raises unless every
    request got a 200."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "node",
            str(BENCH / "batchgen.js"),
            url,
            str(amount),
            str(connections),
            str(size),
            mode,
            auth,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.strip().splitlines()[-1])
    if result["statuses"] != {"200": amount}:
        raise RuntimeError(f"{url}: not every batch was accepted: {result['statuses']}")
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(result["events_per_s"]), client_cpu


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def drained(base: str, deadline_s: float = 120.0) -> None:
    """Wait until everything acknowledged is loaded into DuckDB, so a round's CPU counts
    its whole work (the journal loader runs after the answers) and no round inherits the
    one before's."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
            ingest = json.loads(answer.read())["ingest"]
        if not ingest["queued_events"] and not ingest.get("unloaded_events"):
            return
        time.sleep(0.05)
    raise RuntimeError("the server did not load what it acknowledged in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="batches per round")
    parser.add_argument("--size", type=int, default=500, help="events per batch")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    ensure_loadgen()
    workdir = Path(tempfile.mkdtemp(prefix="footfall-batch-"))
    database = workdir / "bench.duckdb"
    env = {
        **os.environ,
        "FOOTFALL_BENCH_NOOP": "true",
        "FOOTFALL_TRUSTED_PROXIES": "127.0.0.1",
        "FOOTFALL_LOG_LEVEL": "warning",
    }
    write_key = subprocess.run(
        [
            sys.executable,
            "-m",
            "footfall",
            "sites",
            "write-key",
            "default",
            "--database",
            str(database),
        ],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "footfall",
            "serve",
            "--port",
            str(port),
            "--database",
            str(database),
        ],
        env=env,
        cwd=workdir,
    )
    rates: dict[str, list[float]] = {name: [] for name, _, _ in ROUTES}
    cpu: dict[str, dict[str, float]] = {
        name: {"server": 0.0, "workers": 0.0, "client": 0.0, "events": 0} for name, _, _ in ROUTES
    }
    acknowledged = 0
    try:
        wait_healthy(base)
        for name, path, mode in ROUTES:  # warm-up (starts the workers), counted like the rest
            load(base + path, 20, args.connections, args.size, mode, auth)
            acknowledged += 0 if name == "baseline" else 20 * args.size
        drained(base)
        for _ in range(args.rounds):
            for name, path, mode in ROUTES:
                workers = child_pids(server.pid)
                server_before = cpu_seconds(server.pid)
                workers_before = sum(cpu_seconds(pid) for pid in workers)
                rate, client_cpu = load(
                    base + path, args.requests, args.connections, args.size, mode, auth
                )
                drained(base)
                rates[name].append(rate)
                spent = cpu[name]
                spent["server"] += cpu_seconds(server.pid) - server_before
                spent["workers"] += sum(cpu_seconds(pid) for pid in workers) - workers_before
                spent["client"] += client_cpu
                spent["events"] += args.requests * args.size
                acknowledged += 0 if name == "baseline" else args.requests * args.size
        peak = peak_rss_mib(server.pid)
        workers_peak = [peak_rss_mib(pid) for pid in child_pids(server.pid)]
        means = metric_means(base)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    con = duckdb.connect(str(database), read_only=True)
    row = con.execute("SELECT count(*) FROM events").fetchone()
    con.close()
    stored = int(row[0]) if row else -1
    medians = {name: statistics.median(values) for name, values in rates.items()}
    report = {
        "batches_per_round": args.requests,
        "events_per_batch": args.size,
        "connections": args.connections,
        "rounds": args.rounds,
        "events_per_s": {name: round(value) for name, value in medians.items()},
        "rounds_events_per_s": {n: [round(v) for v in vs] for n, vs in rates.items()},
        "cpu_us_per_event": {
            name: {
                part: round(spent[part] / spent["events"] * 1e6, 2)
                for part in ("server", "workers", "client")
            }
            for name, spent in cpu.items()
        },
        "ratio_batch": round(medians["batch"] / medians["baseline"], 3),
        "ratio_segment": round(medians["segment"] / medians["baseline"], 3),
        "server_peak_rss_mib": round(peak, 1),
        "ingest_workers_peak_rss_mib": [round(value, 1) for value in workers_peak],
        "events_per_group_commit": round(means["events_per_group"], 1),
        "events_per_duckdb_load": round(means["events_per_load"], 1),
        "load_average_before": round(load_before, 2),
        "acknowledged": acknowledged,
        "stored_events": stored,
    }
    for name, _, _ in ROUTES:
        print(
            f"{name:9}: {medians[name]:9.0f} events/s  (rounds: {[round(v) for v in rates[name]]})"
        )
    for name, parts in report["cpu_us_per_event"].items():
        print(
            f"CPU/event: {name:9} server {parts['server']:5.2f} µs, ingest workers "
            f"{parts['workers']:5.2f} µs, load generator {parts['client']:5.2f} µs"
        )
    print(
        f"ratio    : batch {report['ratio_batch']:.1%}, segment {report['ratio_segment']:.1%} "
        "of the baseline (target >= 50%, and >= 150,000 events/s)"
    )
    print(
        f"peak RSS : {peak:.0f} MiB, ingest workers {[round(v) for v in workers_peak]} MiB; "
        f"events per group commit {means['events_per_group']:.0f}, "
        f"per DuckDB load {means['events_per_load']:.0f}; load average before {load_before:.2f}"
    )
    print(
        f"stored   : {stored} of {acknowledged} acknowledged "
        f"({'equal' if stored == acknowledged else 'MISMATCH'})"
    )
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "batch.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if stored == acknowledged else 1


if __name__ == "__main__":
    sys.exit(main())
