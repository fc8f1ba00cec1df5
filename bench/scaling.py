"""Ingest throughput by store and process count: DuckDB with one process, PostgreSQL with one
and with three ``footfall serve`` processes on one database.

Everything runs on this machine over loopback: a throwaway PostgreSQL server with its
default (durable) settings, the servers, and one autocannon load generator per server
(single-event POSTs, exact request counts, 65,536 client IPs via the trusted proxy header).
Per scenario: a warm-up, then alternating measured rounds; the figure is the median round.
CPU seconds of the Footfall processes and of PostgreSQL are sampled around each round, so
the report says where the time goes. After each scenario the servers stop and the stored
event count must equal the number of 200 answers.

A second part times the query every people report rests on (distinct persons through the
identity graph, ``event_persons``) on the same synthetic events bulk-loaded into DuckDB and
into PostgreSQL, next to a plain distinct-token count: the single-machine limit for reads.
A third times merges (alias calls) from one and from three clients, on one tenant (which
PostgreSQL serialises with the tenant's lock) and on three.

    python bench/scaling.py [--requests 30000] [--connections 150] [--rounds 3]
                            [--analytics-events 2000000] [--merges 600] [--skip-ingest]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psutil
import psycopg
import pyarrow as pa

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from footfall.store import Store, open_store  # noqa: E402
from ingest import ensure_loadgen, free_port, load, wait_healthy  # noqa: E402
from pgserver import PostgresServer  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def children(parent: int) -> list[int]:
    """The parent and its direct children (PostgreSQL's backends and helpers)."""
    return [parent, *(child.pid for child in psutil.Process(parent).children())]


@dataclass
class Scenario:
    name: str
    processes: int
    database: str
    count_stored: Callable[[], int]
    postgres_pid: int | None = None
    rounds: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_footfall_ms_per_event: list[float] = field(default_factory=list)
    cpu_postgres_ms_per_event: list[float] = field(default_factory=list)
    answered_200: int = 0
    stored: int = -1


@contextmanager
def servers(
    scenario: Scenario, workdir: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")},
        "FOOTFALL_TRUSTED_PROXIES": "127.0.0.1",
        "FOOTFALL_LOG_LEVEL": "warning",
    }
    running: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for i in range(scenario.processes):
            port = free_port()
            log = (workdir / f"{scenario.name}-{i}.log").open("ab")
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "footfall", "serve"),
                    *("--port", str(port), "--database", scenario.database),
                ],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=log,
            )
            running.append((process, f"http://127.0.0.1:{port}"))
        for _, base in running:
            wait_healthy(base, 60)
        yield running
    finally:
        for process, _ in running:
            process.send_signal(signal.SIGTERM)
        for process, _ in running:
            process.wait(timeout=120)


def round_trip(bases: list[str], requests: int, connections: int) -> dict[str, Any]:
    """One load generator per server, all at once; events/s over the slowest one's time."""
    share, per_conn = requests // len(bases), max(1, connections // len(bases))
    with ThreadPoolExecutor(len(bases)) as pool:
        results = list(pool.map(lambda b: load(b + "/api/analytics/track", share, per_conn), bases))
    answered = sum(_number(r["statuses"], "200") for r in results)
    seconds = max(float(str(r["duration_s"])) for r in results)
    return {
        "answered": answered,
        "events_per_s": answered / seconds,
        "p99_ms": max(_number(r["latency_ms"], "p99") for r in results),
    }


def _number(mapping: object, key: str) -> int:
    """A number inside the load generator's JSON summary (0 when absent)."""
    assert isinstance(mapping, dict)
    return int(mapping.get(key, 0))


def run(scenario: Scenario, workdir: Path, requests: int, connections: int, rounds: int) -> None:
    with servers(scenario, workdir) as running:
        bases = [base for _, base in running]
        server_pids = [process.pid for process, _ in running]
        warm = round_trip(bases, max(3_000, requests // 10), connections)
        scenario.answered_200 += warm["answered"]
        for _ in range(rounds):
            pg_pids = children(scenario.postgres_pid) if scenario.postgres_pid else []
            cpu_ff, cpu_pg = cpu_seconds(server_pids), cpu_seconds(pg_pids)
            result = round_trip(bases, requests, connections)
            cpu_ff = cpu_seconds(server_pids) - cpu_ff
            cpu_pg = cpu_seconds(pg_pids) - cpu_pg if pg_pids else 0.0
            scenario.answered_200 += result["answered"]
            scenario.rounds.append(result["events_per_s"])
            scenario.p99_ms.append(result["p99_ms"])
            scenario.cpu_footfall_ms_per_event.append(1000 * cpu_ff / result["answered"])
            scenario.cpu_postgres_ms_per_event.append(1000 * cpu_pg / result["answered"])
            time.sleep(1)
    scenario.stored = scenario.count_stored()


PERSONS_SQL = "SELECT count(DISTINCT person_key) FROM event_persons WHERE ts >= ? AND ts < ?"
TOKENS_SQL = "SELECT count(DISTINCT token) FROM events WHERE ts >= ? AND ts < ?"
_T0 = 1_767_225_600_000_000  # 2026-01-01, microseconds


def synthetic(events: int) -> tuple[pa.Table, pa.Table]:
    """Events over 30 days from events/3 tokens; every other token belongs to a person of
    three tokens (identity nodes), the rest are anonymous."""
    import random

    rnd = random.Random(7)
    tokens = max(3, events // 3)
    names = [f"tok{n:09d}" for n in range(tokens)]
    ts = [_T0 + rnd.randrange(30 * 86_400_000_000) for _ in range(events)]
    event_table = pa.table(
        {
            "site_id": pa.array(["default"] * events),
            "ts": pa.array(ts, pa.timestamp("us")),
            "received_at": pa.array(ts, pa.timestamp("us")),
            "event": pa.array(["visitor"] * events),
            "token": pa.array([names[rnd.randrange(tokens)] for _ in range(events)]),
            "ephemeral": pa.array([False] * events),
            "duplicate": pa.array([False] * events),
            "data": pa.array(["{}"] * events),
            "id_kind": pa.array(["token"] * events),
        }
    )
    linked = range(0, tokens, 2)
    count = len(linked)
    node_table = pa.table(
        {
            "node_id": pa.array([n + 1 for n in linked], pa.int64()),
            "tenant": pa.array(["default"] * count),
            "kind": pa.array(["token"] * count),
            "value": pa.array([names[n] for n in linked]),
            "valid_from": pa.array([0] * count, pa.timestamp("us")),
            "valid_to": pa.array([253_402_214_400_000_000] * count, pa.timestamp("us")),
            "person_id": pa.array([n // 6 + 1 for n in linked], pa.int64()),
            "created_at": pa.array([_T0] * count, pa.timestamp("us")),
        }
    )
    return event_table, node_table


def time_query(store: Store, sql: str, repeat: int = 3) -> tuple[float, int]:
    """Median seconds of ``repeat`` runs (after one warm-up) and the answer."""
    start = datetime(2026, 1, 1)
    params = [start, start + timedelta(days=30)]
    answer = int(store.query(sql, params)[0][0])
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        store.query(sql, params)
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), answer


def analytics(postgres: PostgresServer, workdir: Path, events: int) -> dict[str, Any]:
    event_table, node_table = synthetic(events)
    stores = {
        "duckdb": open_store(str(workdir / "analytics.duckdb")),
        "postgresql": open_store(postgres.create_database("bench_analytics")),
    }
    out: dict[str, Any] = {"events": events}
    for name, store in stores.items():
        try:
            store.migrate()
            store.upsert_site("default", "Default", ["*"])
            began = time.perf_counter()
            store.load_arrow("events", event_table)
            store.load_arrow("identity_nodes", node_table)
            loaded = time.perf_counter() - began
            if name == "postgresql":
                store.query("ANALYZE")
            persons_s, persons = time_query(store, PERSONS_SQL)
            tokens_s, tokens = time_query(store, TOKENS_SQL)
            out[name] = {
                "bulk_load_rows_per_s": round((events + node_table.num_rows) / loaded),
                "distinct_persons_s": round(persons_s, 3),
                "distinct_persons": persons,
                "distinct_tokens_s": round(tokens_s, 3),
                "distinct_tokens": tokens,
            }
            print(f"   {name}: {out[name]}", flush=True)
        finally:
            store.close()
    return out


def merges(url_or_path: str, clients: int, shared_tenant: bool, per_client: int) -> float:
    """Alias calls per second from ``clients`` threads, each with its own store (a process's
    worth of connections); one tenant for all (serialised) or one tenant each (parallel)."""
    stores = [open_store(url_or_path) for _ in range(clients)]
    try:
        from footfall.identity import IdentityGraph

        graphs = [IdentityGraph(store) for store in stores]

        def client(i: int) -> None:
            tenant = "shared" if shared_tenant else f"tenant{i}"
            for n in range(per_client):
                graphs[i].alias(tenant, f"c{i}-tok{n:06d}", f"email:c{i}-{n // 3}@example.com")

        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        return clients * per_client / (time.perf_counter() - began)
    finally:
        for store in stores:
            store.close()


def merge_rates(postgres: PostgresServer, workdir: Path, per_client: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    duck = str(workdir / "merges.duckdb")
    first = open_store(duck)
    first.migrate()
    first.close()
    out["duckdb_1_client"] = round(merges(duck, 1, True, per_client))
    print(f"   duckdb_1_client: {out['duckdb_1_client']} merges/s", flush=True)
    for name, clients, shared in (
        ("postgresql_1_client", 1, True),
        ("postgresql_3_clients_one_tenant", 3, True),
        ("postgresql_3_clients_3_tenants", 3, False),
    ):
        url = postgres.create_database(f"bench_{name}")
        migrated = open_store(url)
        migrated.migrate()
        migrated.close()
        out[name] = round(merges(url, clients, shared, per_client))
        print(f"   {name}: {out[name]} merges/s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000, help="requests per round")
    parser.add_argument("--connections", type=int, default=150, help="in total, all servers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--analytics-events", type=int, default=2_000_000)
    parser.add_argument("--merges", type=int, default=600, help="alias calls per client")
    parser.add_argument("--skip-ingest", action="store_true", help="no ingest scenarios")
    args = parser.parse_args()
    ensure_loadgen()
    workdir = Path(tempfile.mkdtemp(prefix="footfall-scaling-"))
    # PostgreSQL's defaults keep durability; memory sized like a small dedicated server.
    postgres = PostgresServer(
        durable=True, settings=("shared_buffers=1GB", "work_mem=64MB")
    ).start()
    scenarios: list[Scenario] = []
    queries: dict[str, Any] = {}
    try:
        assert postgres.process is not None
        duck_file = str(workdir / "bench.duckdb")

        def duck_count() -> int:
            with duckdb.connect(duck_file, read_only=True) as con:
                row = con.execute("SELECT count(*) FROM events").fetchone()
            return int(row[0]) if row else -1

        def pg_count(url: str) -> Callable[[], int]:
            def count() -> int:
                with psycopg.connect(url) as conn:
                    row = conn.execute("SELECT count(*) FROM events").fetchone()
                return int(row[0]) if row else -1

            return count

        pg_one = postgres.create_database("bench_one")
        pg_three = postgres.create_database("bench_three")
        scenarios = [
            Scenario("duckdb-1", 1, duck_file, duck_count),
            Scenario("postgresql-1", 1, pg_one, pg_count(pg_one), postgres.process.pid),
            Scenario("postgresql-3", 3, pg_three, pg_count(pg_three), postgres.process.pid),
        ]
        if args.skip_ingest:
            scenarios = []
        for scenario in scenarios:
            print(f"== {scenario.name}", flush=True)
            run(scenario, workdir, args.requests, args.connections, args.rounds)
        if args.merges:
            print("== merges (alias calls, one transaction each)", flush=True)
            queries["merges_per_s"] = merge_rates(postgres, workdir, args.merges)
        if args.analytics_events:
            print(f"== distinct persons over {args.analytics_events} events", flush=True)
            queries.update(analytics(postgres, workdir, args.analytics_events))
    finally:
        postgres.stop()

    report: dict[str, Any] = {
        "requests_per_round": args.requests,
        "connections": args.connections,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH
        ).stdout.strip(),
        "scenarios": {},
        "queries": queries,
    }
    ok = True
    print(f"{'scenario':14} {'events/s':>9} {'p99 ms':>7} {'CPU ms/event':>22} {'stored':>18}")
    for s in scenarios:
        median = statistics.median(s.rounds)
        cpu_ff = statistics.median(s.cpu_footfall_ms_per_event)
        cpu_pg = statistics.median(s.cpu_postgres_ms_per_event)
        equal = s.stored == s.answered_200
        ok = ok and equal
        report["scenarios"][s.name] = {
            "processes": s.processes,
            "events_per_s": round(median),
            "rounds": [round(r) for r in s.rounds],
            "p99_ms": max(s.p99_ms),
            "cpu_ms_per_event_footfall": round(cpu_ff, 3),
            "cpu_ms_per_event_postgresql": round(cpu_pg, 3),
            "answered_200": s.answered_200,
            "stored_events": s.stored,
        }
        cpu = f"footfall {cpu_ff:.2f} + pg {cpu_pg:.2f}"
        stored = f"{s.stored} {'=' if equal else '!='} {s.answered_200}"
        print(f"{s.name:14} {median:9.0f} {max(s.p99_ms):7.0f} {cpu:>22} {stored:>18}")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
