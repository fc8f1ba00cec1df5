"""Ingest throughput: the real tracking endpoint against a no-op endpoint on the same stack.

Starts ``footfall serve`` on 127.0.0.1 with a fresh DuckDB file, drives it with autocannon
(single-event POSTs, exact request counts, alternating rounds), then stops the server and
checks that the stored event count equals the number of 200 answers.

    python bench/ingest.py [--requests 30000] [--connections 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb
import psutil

BENCH = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_loadgen() -> None:
    if not (BENCH / "node_modules" / "autocannon").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=BENCH, check=True
        )


def wait_healthy(base: str, deadline_s: float = 30.0) -> None:
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def load(url: str, amount: int, connections: int) -> dict[str, object]:
    out = subprocess.run(
        ["node", str(BENCH / "loadgen.js"), url, str(amount), str(connections)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def metric_means(base: str) -> dict[str, float]:
    """Mean events per group commit and per DuckDB load, from the server's /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("footfall_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    means = {}
    for key, metric in (
        ("events_per_group", "footfall_commit_batch_events"),
        ("events_per_load", "footfall_journal_load_batch_events"),
    ):
        count = values.get(f"{metric}_count", 0.0)
        means[key] = values.get(f"{metric}_sum", 0.0) / count if count else 0.0
        means[key.replace("events_per_", "") + "s"] = count
    return means


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started (the server's ingest workers)."""
    return [child.pid for child in psutil.Process(pid).children()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000, help="requests per round")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--direct",
        action="store_true",
        help="commit each group to DuckDB (ingest_journal = false) instead of the journal",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    ensure_loadgen()

    workdir = Path(tempfile.mkdtemp(prefix="footfall-bench-"))
    database = workdir / "bench.duckdb"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FOOTFALL_BENCH_NOOP": "true",
        "FOOTFALL_TRUSTED_PROXIES": "127.0.0.1",
        "FOOTFALL_LOG_LEVEL": "warning",
        "FOOTFALL_INGEST_JOURNAL": "false" if args.direct else "true",
    }
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
    ok_answers = 0
    noop_rates: list[float] = []
    real_rates: list[float] = []
    real_p99: list[float] = []
    try:
        wait_healthy(base)
        warm = max(1_000, args.requests // 10)
        load(base + "/bench/noop", warm, args.connections)
        warm_real = load(base + "/api/analytics/track", warm, args.connections)
        ok_answers += int(dict(warm_real["statuses"]).get("200", 0))  # type: ignore[call-overload]
        for _ in range(args.rounds):
            noop = load(base + "/bench/noop", args.requests, args.connections)
            real = load(base + "/api/analytics/track", args.requests, args.connections)
            noop_rates.append(float(noop["requests_per_s"]))  # type: ignore[arg-type]
            real_rates.append(float(real["requests_per_s"]))  # type: ignore[arg-type]
            real_p99.append(float(dict(real["latency_ms"])["p99"]))  # type: ignore[call-overload]
            ok_answers += int(dict(real["statuses"]).get("200", 0))  # type: ignore[call-overload]
        peak = peak_rss_mib(server.pid)
        means = metric_means(base)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    con = duckdb.connect(str(database), read_only=True)
    stored_row = con.execute("SELECT count(*) FROM events").fetchone()
    con.close()
    stored = int(stored_row[0]) if stored_row else -1
    noop_rate = statistics.median(noop_rates)
    real_rate = statistics.median(real_rates)
    ratio = real_rate / noop_rate
    report = {
        "requests_per_round": args.requests,
        "connections": args.connections,
        "rounds": args.rounds,
        "noop_events_per_s": round(noop_rate),
        "track_events_per_s": round(real_rate),
        "ratio": round(ratio, 3),
        "noop_rounds": [round(r) for r in noop_rates],
        "track_rounds": [round(r) for r in real_rates],
        "track_p99_ms": real_p99,
        "server_peak_rss_mib": round(peak, 1),
        "ingest": "direct" if args.direct else "journal",
        "events_per_group_commit": round(means["events_per_group"], 1),
        "events_per_duckdb_load": round(means["events_per_load"], 1),
        "duckdb_loads": int(means["loads"]),
        "load_average_before": round(load_before, 2),
        "answered_200": ok_answers,
        "stored_events": stored,
    }
    print(f"no-op endpoint   : {noop_rate:8.0f} requests/s   (rounds: {report['noop_rounds']})")
    print(f"track endpoint   : {real_rate:8.0f} events/s     (rounds: {report['track_rounds']})")
    print(f"ratio            : {ratio:8.1%}   (target >= 60%)")
    print(f"track p99        : {max(real_p99):8.0f} ms")
    print(f"server peak RSS  : {peak:8.1f} MiB")
    print(f"ingest mode      : {report['ingest']:>8}   (load average before: {load_before:.2f})")
    print(f"events per group : {means['events_per_group']:8.1f}   (one sync or transaction)")
    if not args.direct:
        print(
            f"events per load  : {means['events_per_load']:8.1f}   "
            f"({int(means['loads'])} DuckDB loads)"
        )
    print(f"200 answers      : {ok_answers:8d}")
    print(f"stored events    : {stored:8d}   ({'equal' if stored == ok_answers else 'MISMATCH'})")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if stored == ok_answers else 1


if __name__ == "__main__":
    sys.exit(main())
