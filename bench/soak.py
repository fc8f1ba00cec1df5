"""Soak: minutes of steady, scheduled load against one server; memory, latency, the limiter.

Starts ``footfall serve`` on 127.0.0.1 with a fresh DuckDB file and drives it with the
traffic of tests/traffic.py: light client IPs under the 120/min limit and a few heavy ones
over it (events, purchases with repeated order numbers, batches, legacy GETs, identify and
vendor events). Samples the server's RSS every second. Reports latency p50/p90/p99, RSS
first/last/max and its slope after warm-up, what the limiter let through per heavy IP per
minute and in any sliding minute, 429s of the light IPs, and stored == acknowledged after a
clean stop. Exits non-zero on a 5xx, a limiter miss or a count mismatch.

    python bench/soak.py [--minutes 5] [--light-ips 150] [--light-rate 0.5]
                         [--heavy-ips 10] [--heavy-rate 4]

The defaults (about 115 requests/s) are what the Python load generator keeps on schedule
on a 2-core machine it shares with the server; "sent_late" counts requests sent more than a
second behind schedule (latencies then include the generator's own queueing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from conftest import CLEAN_EXIT, Server  # noqa: E402
from traffic import (  # noqa: E402
    RATE_LIMITED_KINDS,
    LoadPlan,
    LoadResult,
    accepted_in_window,
    change_per_minute,
    percentile,
    run_load,
    slope_per_minute,
)


@dataclass
class MemorySamples:
    """What the server's /metrics says its memory is made of, sampled with the progress."""

    duckdb_mib: list[float | None] = field(default_factory=list)
    python_blocks: list[tuple[float, int]] = field(default_factory=list)

    def sample(self, base_url: str, elapsed: float) -> None:
        with urllib.request.urlopen(base_url + "/metrics", timeout=10) as answer:
            gauges = dict(
                line.split(" ", 1)
                for line in answer.read().decode().splitlines()
                if line.startswith(("footfall_store_memory_bytes ", "footfall_python_allocated"))
            )
        held = gauges.get("footfall_store_memory_bytes")
        self.duckdb_mib.append(round(float(held) / 2**20, 1) if held else None)
        blocks = gauges.get("footfall_python_allocated_blocks")
        if blocks:
            self.python_blocks.append((elapsed, int(float(blocks))))


def reporter(base_url: str, memory: MemorySamples) -> Callable[[float, LoadResult], None]:
    def report(elapsed: float, result: LoadResult) -> None:
        answers = list(result.answers)
        last = result.rss[-1][1] // 1024 if result.rss else 0
        memory.sample(base_url, elapsed)
        blocks = memory.python_blocks[-1][1] if memory.python_blocks else None
        print(
            f"  {elapsed:5.0f} s: {len(answers)} requests, RSS {last} MiB, "
            f"DuckDB {memory.duckdb_mib[-1]} MiB, Python blocks {blocks}",
            flush=True,
        )

    return report


def loop_stalls(log: Path) -> list[dict[str, object]]:
    """The watchdog's reports from the server log: how long the event loop stood still and
    the last lines of where it was when the watchdog looked."""
    stalls: list[dict[str, object]] = []
    for line in log.read_text().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("message") == "event loop blocked":
            stalls.append({"at": record["time"], "stack": record["stack"].splitlines()[-4:]})
        elif record.get("message") == "event loop turning again" and stalls:
            stalls[-1]["seconds"] = record["stalled_seconds"]
    return stalls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--light-ips", type=int, default=150)
    parser.add_argument("--light-rate", type=float, default=0.5, help="req/s per light IP")
    parser.add_argument("--heavy-ips", type=int, default=10)
    parser.add_argument("--heavy-rate", type=float, default=4.0, help="req/s per heavy IP")
    parser.add_argument("--workers", type=int, default=24)
    args = parser.parse_args()
    plan = LoadPlan(
        duration=args.minutes * 60,
        light_ips=args.light_ips,
        light_rate=args.light_rate,
        heavy_ips=args.heavy_ips,
        heavy_rate=args.heavy_rate,
        workers=args.workers,
    )
    with tempfile.TemporaryDirectory(prefix="footfall-soak-") as tmp:
        server = Server(Path(tmp) / "srv")
        key = server.start_with_key()
        assert server.process is not None
        try:
            memory = MemorySamples()
            result = run_load(
                server.url, key, plan, server.process.pid, progress=reporter(server.url, memory)
            )
        finally:
            code = server.stop()
        stored = int(server.rows("SELECT count(*) FROM events")[0][0])
        stalls = loop_stalls(server.log)

    latencies = result.latencies()
    ok_latencies = [a.latency for a in result.answers if a.status == 200]
    warm_from = min(60.0, plan.duration / 5)
    warm = [(t, kib) for t, kib in result.rss if t >= warm_from]
    rss = [kib for _, kib in result.rss]
    warm_blocks = [(t, n) for t, n in memory.python_blocks if t >= warm_from]
    heavy: dict[str, object] = {}
    light_429 = 0
    limiter_ok = True
    for ip, answers in sorted(result.per_ip().items()):
        limited = [a for a in answers if a.kind in RATE_LIMITED_KINDS]
        if not plan.is_heavy(ip):
            light_429 += sum(a.status == 429 for a in limited)
            continue
        minutes = [0] * (int(plan.duration // 60) + 1)
        for answer in limited:
            if answer.status != 429:
                minutes[min(int(answer.sent_at // 60), len(minutes) - 1)] += 1
        window = accepted_in_window(answers)
        full = minutes[: int(plan.duration // 60)]
        heavy[ip] = {
            "sent": len(limited),
            "accepted": sum(minutes),
            "accepted_per_minute": minutes,
            "max_in_any_60s": window,
        }
        limiter_ok &= window <= 120 and all(n == 120 for n in full)
    statuses = dict(sorted(result.statuses.items()))
    summary = {
        "minutes": args.minutes,
        "requests": len(result.answers),
        "rate_per_second": round(len(result.answers) / result.wall, 1),
        "sent_late": result.late,
        "statuses": statuses,
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "server_loop_stalls": stalls,
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5) * 1000, 1),
            "p90": round(percentile(latencies, 0.9) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
            "p99_of_200s": round(percentile(ok_latencies, 0.99) * 1000, 1),
        },
        "rss_mib": {
            "first": rss[0] // 1024,
            "last": rss[-1] // 1024,
            "max": max(rss) // 1024,
            "slope_after_warmup_mib_per_min": round(slope_per_minute(warm), 2),
            "every_10s": list({int(t) // 10: kib // 1024 for t, kib in result.rss}.values()),
            "duckdb_buffers_every_10s": memory.duckdb_mib,
        },
        # Blocks per minute after warm-up: about zero unless Python code keeps objects.
        "python_blocks": {
            "first": memory.python_blocks[0][1] if memory.python_blocks else None,
            "last": memory.python_blocks[-1][1] if memory.python_blocks else None,
            "slope_after_warmup_per_min": round(
                change_per_minute([(t, float(n)) for t, n in warm_blocks])
            ),
            "every_10s": [n for _, n in memory.python_blocks],
        },
        "limiter": {
            "limit_per_minute": 120,
            "heavy_ips": heavy,
            "light_ips": args.light_ips,
            "light_ip_429s": light_429,
        },
        "events_acknowledged": result.acknowledged,
        "events_per_second": round(result.acknowledged / result.wall, 1),
        "events_stored": stored,
        "clean_exit": code in CLEAN_EXIT,
    }
    print(json.dumps(summary, indent=2))
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    ok = (
        summary["server_errors"] == 0
        and limiter_ok
        and light_429 == 0
        and stored == result.acknowledged
        and code in CLEAN_EXIT
    )
    print("OK" if ok else "PROBLEM")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
