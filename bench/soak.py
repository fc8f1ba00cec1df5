"""Soak: minutes of steady, scheduled load against one server; memory, latency, the limiter.

Starts ``footfall serve`` on 127.0.0.1 with a fresh DuckDB file and drives it with the
traffic of tests/traffic.py: light client IPs under the 120/min limit and a few heavy ones
over it (events, purchases with repeated order numbers, batches, legacy GETs, identify and
vendor events). Samples the server's RSS every second. Reports latency p50/p90/p99, RSS
first/last/max and its slope after warm-up, what the limiter let through per heavy IP per
minute and in any sliding minute, 429s of the light IPs, and stored == acknowledged after a
clean stop. Exits non-zero on a 5xx, a limiter miss or a count mismatch.

    python bench/soak.py [--minutes 5] [--light-ips 150] [--light-rate 0.5]
                         [--heavy-ips 10] [--heavy-rate 4] [--name soak]
                         [--duckdb-memory-limit 64MB] [--malloc-arena-max 0]

The memory options set the server's duckdb_memory_limit and malloc_arena_max (FOOTFALL_*
variables are not passed on to the server; others are, so MALLOC_ARENA_MAX=2 in the
environment reaches glibc). Results: bench/results/<name>.json, the server's log in
<name>-server.log and a plot of RSS, DuckDB's buffer memory and Python's blocks over time in
<name>-rss.png. Besides the slope after warm-up, RSS is fitted over the tail of the run (the
last hour of runs of two hours or more, else the second half), also less DuckDB's buffers.

The defaults (about 115 requests/s) are what the Python load generator keeps on schedule
on a 2-core machine it shares with the server; "sent_late" counts requests sent more than a
second behind schedule (latencies then include the generator's own queueing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from conftest import CLEAN_EXIT, CONFIG, Server, config_with  # noqa: E402
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
    duckdb_at: list[tuple[float, float]] = field(default_factory=list)
    """(seconds, MiB) of DuckDB's buffer memory, for the plot."""
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
        if held:
            self.duckdb_at.append((elapsed, float(held) / 2**20))
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


def outside_buffers(
    rss: list[tuple[float, int]], duckdb_at: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """(seconds, MiB) of RSS less DuckDB's buffer memory, at each buffer sample (paired with
    the RSS sample taken closest before it; RSS is sampled every second)."""
    paired: list[tuple[float, float]] = []
    index = 0
    for t, mib in duckdb_at:
        while index + 1 < len(rss) and rss[index + 1][0] <= t:
            index += 1
        if rss:
            paired.append((t, rss[index][1] / 1024 - mib))
    return paired


def tail_window(duration: float) -> float:
    """Where the tail slope starts: an hour before the end of runs of two hours or more
    (the issue's measure), else half-way."""
    return duration - 3600 if duration >= 7200 else duration / 2


def plot(
    path: Path,
    rss: list[tuple[float, int]],
    memory: MemorySamples,
    tail_from: float,
    tail_slope: float,
    title: str,
) -> None:
    """RSS, DuckDB's buffers and Python's blocks against minutes, with the tail slope's line:
    growth and where it goes are seen at a glance (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 7), sharex=True, height_ratios=(3, 1.3), layout="constrained"
    )
    minutes = [t / 60 for t, _ in rss]
    top.plot(minutes, [kib / 1024 for _, kib in rss], lw=0.8, label="server RSS")
    if memory.duckdb_at:
        top.plot(
            [t / 60 for t, _ in memory.duckdb_at],
            [mib for _, mib in memory.duckdb_at],
            lw=0.8,
            label="DuckDB buffer memory (duckdb_memory())",
        )
    tail = [(t, kib / 1024) for t, kib in rss if t >= tail_from]
    if len(tail) >= 2:
        mean_t = sum(t for t, _ in tail) / len(tail)
        mean_v = sum(v for _, v in tail) / len(tail)
        ends = (tail[0][0], tail[-1][0])
        top.plot(
            [t / 60 for t in ends],
            [mean_v + tail_slope / 60 * (t - mean_t) for t in ends],
            "k--",
            lw=1.2,
            label=f"RSS slope from minute {tail_from / 60:.0f}: {tail_slope:+.2f} MiB/min",
        )
    top.set_ylabel("MiB")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.legend(loc="lower right")
    top.set_title(title, fontsize=10)
    if memory.python_blocks:
        bottom.plot(
            [t / 60 for t, _ in memory.python_blocks],
            [n / 1000 for _, n in memory.python_blocks],
            lw=0.8,
            color="tab:green",
        )
    bottom.set_ylabel("Python blocks (k)")
    bottom.set_xlabel("minutes")
    bottom.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--light-ips", type=int, default=150)
    parser.add_argument("--light-rate", type=float, default=0.5, help="req/s per light IP")
    parser.add_argument("--heavy-ips", type=int, default=10)
    parser.add_argument("--heavy-rate", type=float, default=4.0, help="req/s per heavy IP")
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--duckdb-memory-limit", help="the server's duckdb_memory_limit (64MB)")
    parser.add_argument(
        "--malloc-arena-max", type=int, help="the server's malloc_arena_max (0: glibc's default)"
    )
    parser.add_argument(
        "--name", default="soak", help="results file names (name.json, name-rss.png)"
    )
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
        settings = []
        if args.duckdb_memory_limit:
            settings.append(f'duckdb_memory_limit = "{args.duckdb_memory_limit}"')
        if args.malloc_arena_max is not None:
            settings.append(f"malloc_arena_max = {args.malloc_arena_max}")
        config = config_with(*settings) if settings else CONFIG
        server = Server(Path(tmp) / "srv", config)
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
        # Kept for a look at what the server said (warnings, a 5xx's exception): the
        # temporary directory goes with the database.
        (BENCH / "results").mkdir(exist_ok=True)
        shutil.copyfile(server.log, BENCH / "results" / f"{args.name}-server.log")

    latencies = result.latencies()
    ok_latencies = [a.latency for a in result.answers if a.status == 200]
    warm_from = min(60.0, plan.duration / 5)
    warm = [(t, kib) for t, kib in result.rss if t >= warm_from]
    rss = [kib for _, kib in result.rss]
    warm_blocks = [(t, n) for t, n in memory.python_blocks if t >= warm_from]
    tail_from = tail_window(plan.duration)
    tail_slope = slope_per_minute([(t, kib) for t, kib in result.rss if t >= tail_from])
    outside = outside_buffers(result.rss, memory.duckdb_at)
    outside_slope = change_per_minute([(t, mib) for t, mib in outside if t >= tail_from])
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
        "env_malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "malloc_arena_max": args.malloc_arena_max,
        "duckdb_memory_limit": args.duckdb_memory_limit,
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
            "tail_from_minute": round(tail_from / 60, 1),
            "slope_tail_mib_per_min": round(tail_slope, 3),
            # RSS less DuckDB's buffer memory: what grows besides the data's cache, which
            # duckdb_memory_limit bounds.
            "slope_tail_outside_duckdb_buffers_mib_per_min": round(outside_slope, 3),
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
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    env_arenas = summary["env_malloc_arena_max"]
    variant = ", ".join(
        part
        for part in (
            f"MALLOC_ARENA_MAX={env_arenas}" if env_arenas else "",
            f"malloc_arena_max={args.malloc_arena_max}"
            if args.malloc_arena_max is not None
            else "",
            f"duckdb_memory_limit={args.duckdb_memory_limit}" if args.duckdb_memory_limit else "",
        )
        if part
    )
    plot(
        results / f"{args.name}-rss.png",
        result.rss,
        memory,
        tail_from,
        tail_slope,
        f"soak: {args.minutes:g} min at {summary['rate_per_second']} requests/s"
        + (f" ({variant})" if variant else ""),
    )
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
