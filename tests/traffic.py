"""Traffic for the soak and crash tests (and their long versions in bench/): a steady
scheduled load from many client IPs with a few over the rate limit, a full-speed mixed load
that a SIGKILL interrupts, and the server's resident memory read from /proc.

Every event carries a token of its own, so what the server acknowledged can be compared
one by one with what the DuckDB file holds.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TRACK = "/api/analytics/track"
BATCH = "/api/analytics/batch"
BATCH_SIZE = 5
ORDER_POOL = 40
"""Purchases draw their order numbers from a small pool: repeats are flagged duplicate."""


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in MiB per minute."""
    return change_per_minute([(t, kib / 1024) for t, kib in samples])


def change_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [value for _, value in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread


def event(token: str, rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.1:
        order = f"SOAK-{rng.randrange(ORDER_POOL)}"
        item = {"item_id": "sku-1", "value": 9.5, "quantity": 2, "currency": "USD"}
        return {"event": "purchase", "token": token, "data": {"orderNum": order, "items": [item]}}
    name = rng.choice(["visitor", "bot_open", "convo_started", "message_sent", "popup_opened"])
    return {"event": name, "token": token, "data": {"text": "how do I return an item?"}}


@dataclass(slots=True)
class Answer:
    ip: str
    kind: str
    sent_at: float
    """Seconds since the run started (client clock), when the request went out."""
    latency: float
    status: int
    tokens: list[str]
    """Tokens of the events this request sent."""
    stored: list[str]
    """Tokens of the events the answer acknowledged."""


def send(
    client: httpx.Client, kind: str, ip: str, token: str, rng: random.Random, key: str
) -> tuple[int, list[str], list[str]]:
    """One request of ``kind``; returns (status, tokens sent, tokens acknowledged)."""
    headers = {"x-forwarded-for": ip}
    if kind == "track":
        answer = client.post(TRACK, json=event(token, rng), headers=headers)
        tokens = [token]
    elif kind == "get":
        params = {"e": "visitor", "u": token, "d": '{"text":"hello"}'}
        answer = client.get(TRACK, params=params, headers=headers)
        tokens = [token]
    elif kind == "batch":
        tokens = [f"{token}-{j}" for j in range(BATCH_SIZE)]
        answer = client.post(BATCH, json=[event(t, rng) for t in tokens], headers=headers)
        if answer.status_code == 200:
            results = answer.json()["results"]
            stored = [t for t, r in zip(tokens, results, strict=True) if r["success"]]
            return answer.status_code, tokens, stored
        return answer.status_code, tokens, []
    elif kind == "identify":
        user = {"uniqueClientId": f"user-{token}", "email": f"{token}@soak.test"}
        answer = client.post("/api/identify", json={"token": token, "user": user}, headers=headers)
        tokens = []
    elif kind == "vendor":
        params = {"_k": key, "_p": token, "_n": "vendor_event", "plan": "pro"}
        answer = client.get("/e", params=params, headers=headers)
        tokens = [token]
    else:
        raise ValueError(kind)
    return answer.status_code, tokens, tokens if answer.status_code == 200 else []


KINDS = ("track", "track", "track", "track", "track", "track", "batch", "get", "identify", "vendor")


@dataclass
class LoadPlan:
    duration: float
    """Seconds of scheduled sending."""
    light_ips: int
    light_rate: float
    """Requests per second of each light IP (under the limit)."""
    heavy_ips: int
    heavy_rate: float
    """Requests per second of each heavy IP (over the limit)."""
    workers: int = 16
    seed: int = 8

    def schedule(self) -> list[tuple[float, str, str]]:
        """(offset seconds, client IP, kind), in time order; each IP's requests evenly spaced
        from a random phase."""
        rng = random.Random(self.seed)
        plan: list[tuple[float, str, str]] = []
        groups = (
            (self.light_ips, self.light_rate, "10.200"),
            (self.heavy_ips, self.heavy_rate, "10.201"),
        )
        for count, rate, prefix in groups:
            for n in range(count):
                ip = f"{prefix}.{n // 250}.{n % 250 + 1}"
                step = 1 / rate
                t = rng.uniform(0, step)
                while t < self.duration:
                    # Vendor events are keyed, not rate limited: heavy IPs send public calls.
                    kind = rng.choice(KINDS if prefix == "10.200" else KINDS[:-1])
                    plan.append((t, ip, kind))
                    t += step
        plan.sort()
        return plan

    def is_heavy(self, ip: str) -> bool:
        return ip.startswith("10.201.")


@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, KiB) samples of the server's resident memory."""
    wall: float = 0.0
    late: int = 0
    """Requests sent more than a second after their scheduled time (load generator behind)."""

    @property
    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    @property
    def acknowledged(self) -> int:
        return sum(len(a.stored) for a in self.answers)

    def latencies(self) -> list[float]:
        return [a.latency for a in self.answers]

    def per_ip(self) -> dict[str, list[Answer]]:
        grouped: dict[str, list[Answer]] = {}
        for answer in self.answers:
            grouped.setdefault(answer.ip, []).append(answer)
        return grouped


RATE_LIMITED_KINDS = frozenset({"track", "get", "batch", "identify"})


def accepted_in_window(answers: list[Answer], window: float = 60.0) -> int:
    """Most rate-limited calls of one IP accepted that certainly reached the server within
    one ``window``: a call arrived between its send time and its answer, so the calls sent
    at or after one call's send time and answered within ``window`` of it all arrived in
    that window. The server's sliding log must never have let more than its limit through
    in such a group (send times alone can show 121: a call sent just inside a minute may
    arrive just outside it)."""
    calls = sorted(
        (a.sent_at, a.sent_at + a.latency)
        for a in answers
        if a.kind in RATE_LIMITED_KINDS and a.status != 429
    )
    best = 0
    for first, (start, _) in enumerate(calls):
        # Calls answered before start + window arrived in [start, start + window).
        count = 0
        for sent, answered in calls[first:]:
            if sent >= start + window:
                break
            count += answered < start + window
        best = max(best, count)
    return best


def run_load(
    base_url: str,
    key: str,
    plan: LoadPlan,
    pid: int,
    progress: Callable[[float, LoadResult], None] | None = None,
) -> LoadResult:
    """Send ``plan`` on schedule from ``plan.workers`` threads; sample RSS every second."""
    schedule = plan.schedule()
    result = LoadResult()
    cursor = itertools.count()
    sequence = itertools.count()
    start = time.monotonic()
    done = threading.Event()

    def worker(n: int) -> None:
        rng = random.Random(plan.seed * 1000 + n)
        with httpx.Client(base_url=base_url, timeout=60) as client:
            while (index := next(cursor)) < len(schedule):
                offset, ip, kind = schedule[index]
                wait = start + offset - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -1:
                    result.late += 1
                token = f"soak-{next(sequence):08d}"
                sent = time.monotonic()
                status, tokens, stored = send(client, kind, ip, token, rng, key)
                latency = time.monotonic() - sent
                result.answers.append(
                    Answer(ip, kind, sent - start, latency, status, tokens, stored)
                )

    def sampler() -> None:
        last_report = 0.0
        while not done.is_set():
            elapsed = time.monotonic() - start
            result.rss.append((elapsed, rss_kib(pid)))
            if progress is not None and elapsed - last_report >= 10:
                last_report = elapsed
                progress(elapsed, result)
            done.wait(1.0)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(plan.workers)]
    watcher = threading.Thread(target=sampler)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall = time.monotonic() - start
    done.set()
    watcher.join()
    result.rss.append((result.wall, rss_kib(pid)))
    return result


# --------------------------------------------------------------- full speed, then SIGKILL


@dataclass
class CrashTally:
    """Tokens sent and acknowledged while a server is killed mid-run."""

    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, tokens: list[str], stored: list[str]) -> None:
        with self.lock:
            self.sent.update(tokens)
            self.acknowledged.update(stored)


def full_speed(
    base_url: str, key: str, tally: CrashTally, stop: threading.Event, worker: int, cycle: int
) -> None:
    """Mixed requests back to back until ``stop`` or the connection is refused (killed)."""
    rng = random.Random(cycle * 100 + worker)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for n in itertools.count():
            if stop.is_set():
                return
            token = f"crash-{cycle}-{worker:02d}-{n:06d}"
            ip = f"10.202.{worker}.{n // 100 % 250 + 1}"  # under the limit: 100 per IP
            kind = rng.choice(KINDS)
            tally.record([token] if kind != "batch" else [], [])  # sent before the answer
            if kind == "batch":
                tally.record([f"{token}-{j}" for j in range(BATCH_SIZE)], [])
            try:
                status, tokens, stored = send(client, kind, ip, token, rng, key)
            except httpx.TransportError:
                return  # the server is gone
            tally.record(tokens, stored)
            if status >= 500 and status != 503:
                raise AssertionError(f"{kind} answered {status}")


def load_then_kill(
    base_url: str,
    key: str,
    tally: CrashTally,
    kill: Callable[[], int],
    *,
    cycle: int,
    workers: int,
    acks: int,
    within_s: float,
) -> tuple[int, list[BaseException]]:
    """Full-speed senders until ``acks`` more events are acknowledged (or ``within_s`` has
    passed, or a sender failed), then ``kill()`` in the middle of the traffic. Returns what
    ``kill`` returned and the senders' errors."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def sender(worker: int) -> None:
        try:
            full_speed(base_url, key, tally, stop, worker, cycle)
        except BaseException as exc:  # handed to the caller, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(workers)]
    target = len(tally.acknowledged) + acks
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + within_s
    while len(tally.acknowledged) < target and time.monotonic() < deadline and not errors:
        time.sleep(0.005)
    status = kill()
    stop.set()
    for thread in threads:
        thread.join()
    return status, errors
