"""What hostile bodies cost everyone else: the event loop's stall and another tenant's wait.

Against a real ``footfall serve`` on 127.0.0.1 (DuckDB file), with two tenants:
  - gzip members: a ~5 MB ``/api/analytics/batch`` body of ~238,000 one-byte gzip members
    (no key needed), sent while ``/healthz`` is polled: the slowest ``/healthz`` answer is
    the event loop's stall; the baseline is ``/healthz`` on an idle server in the same run.
  - identity load: eight ``/v1/batch`` bodies of ``--identifies`` identify messages each
    (one tenant's public write key) sent at once, while the other tenant sends single
    ``/api/identify`` calls: their latency against the same call on an idle server.

    .venv/bin/python bench/hostile.py [--identifies 3842] [--floods 8]

Each wait is bounded (``--timeout``); a call that times out counts as that many seconds.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from ingest import free_port, wait_healthy

CONFIG = """
default_site = "default"
allowed_origins = ["https://shop.test"]
trusted_proxies = ["127.0.0.1"]
rate_limit_per_minute = 0

[[sites]]
id = "rival"
name = "Another tenant"
allowed_origins = ["https://rival.test"]
tenant = "rival"
"""


def footfall(workdir: Path, *args: str) -> str:
    env = {**os.environ, "FOOTFALL_CONFIG": str(workdir / "footfall.toml")}
    done = subprocess.run(
        [sys.executable, "-m", "footfall", *args, "--database", str(workdir / "bench.duckdb")],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def timed_get(client: httpx.Client, path: str, timeout: float) -> float:
    started = time.perf_counter()
    try:
        client.get(path, timeout=timeout)
    except httpx.TimeoutException:
        return timeout
    return time.perf_counter() - started


def gzip_stall(base: str, timeout: float) -> dict[str, float | int]:
    """The slowest /healthz while the many-member body is handled, and the body's answer."""
    member = gzip.compress(b" ", mtime=0)
    body = member * (5_000_000 // len(member))
    with httpx.Client(base_url=base) as idle:
        baseline = statistics.median(timed_get(idle, "/healthz", timeout) for _ in range(50))
    slowest = 0.0
    done = threading.Event()

    def poll() -> None:
        nonlocal slowest
        with httpx.Client(base_url=base) as client:
            while not done.is_set():
                slowest = max(slowest, timed_get(client, "/healthz", timeout))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    started = time.perf_counter()
    try:
        answer = httpx.post(
            base + "/api/analytics/batch",
            content=body,
            headers={"origin": "https://shop.test", "content-encoding": "gzip"},
            timeout=timeout,
        )
        status = answer.status_code
    except httpx.TimeoutException:
        status = 0
    handled = time.perf_counter() - started
    time.sleep(0.2)
    done.set()
    poller.join()
    return {
        "body_bytes": len(body),
        "members": len(body) // len(member),
        "status": status,
        "handled_s": round(handled, 3),
        "healthz_idle_s": round(baseline, 4),
        "healthz_worst_s": round(slowest, 3),
        "stall_ratio": round(slowest / baseline, 1),
    }


def identify_call(client: httpx.Client, n: int, timeout: float) -> float:
    started = time.perf_counter()
    try:
        client.post(
            "/api/identify",
            headers={"origin": "https://rival.test"},
            json={"token": f"rival-token-{n:06d}", "user": {"email": f"r{n}@rival.test"}},
            timeout=timeout,
        )
    except httpx.TimeoutException:
        return timeout
    return time.perf_counter() - started


def identity_load(
    base: str, write_key: str, identifies: int, floods: int, timeout: float
) -> dict[str, object]:
    basic = {
        "authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
        "content-type": "application/json",
    }
    with httpx.Client(base_url=base) as rival:
        idle = statistics.median(identify_call(rival, n, timeout) for n in range(10))
    answers: list[str] = []

    def flood(seed: int) -> None:
        messages = [
            {
                "type": "identify",
                "userId": f"user-{seed}-{i}",
                "anonymousId": f"anon-{seed}-{i:06d}",
                "traits": {"email": f"u{seed}-{i}@shop.test"},
            }
            for i in range(identifies)
        ]
        body = json.dumps({"batch": messages}).encode()
        try:
            answer = httpx.post(base + "/v1/batch", content=body, headers=basic, timeout=timeout)
            answers.append(str(answer.status_code))
        except httpx.TimeoutException:
            answers.append("timeout")

    threads = [threading.Thread(target=flood, args=(seed,)) for seed in range(floods)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    with httpx.Client(base_url=base) as rival:
        loaded = [identify_call(rival, 100 + n, timeout) for n in range(10)]
    for thread in threads:
        thread.join()
    return {
        "identifies_per_batch": identifies,
        "batches": floods,
        "batch_answers": sorted(answers),
        "other_tenant_idle_s": round(idle, 4),
        "other_tenant_loaded_median_s": round(statistics.median(loaded), 3),
        "other_tenant_loaded_worst_s": round(max(loaded), 3),
        "ratio": round(statistics.median(loaded) / idle, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identifies", type=int, default=3842)
    parser.add_argument("--floods", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="footfall-hostile-"))
    (workdir / "footfall.toml").write_text(CONFIG)
    env = {
        **os.environ,
        "FOOTFALL_CONFIG": str(workdir / "footfall.toml"),
        "FOOTFALL_LOG_LEVEL": "warning",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "footfall", "serve", "--port", str(port)]
    command += ["--database", str(workdir / "bench.duckdb")]
    server = subprocess.Popen(command, env=env, cwd=workdir)
    try:
        wait_healthy(base)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    write_key = footfall(workdir, "sites", "write-key", "default")
    server = subprocess.Popen(command, env=env, cwd=workdir)
    try:
        wait_healthy(base)
        report = {
            "gzip_members": gzip_stall(base, args.timeout),
            "identity_load": identity_load(
                base, write_key, args.identifies, args.floods, args.timeout
            ),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
