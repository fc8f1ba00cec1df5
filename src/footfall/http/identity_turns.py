"""Identity work of the ingest routes, in fair turns per tenant.

An identify costs a store transaction of some twenty statements (about 20 ms on DuckDB), so
one batch of thousands of them used to hold the store for minutes while another tenant's
single identify waited behind it. Here each request's identity calls join its tenant's
queue; tenants take turns of a few calls each (round robin), so another tenant waits at
most one turn per busy tenant. A tenant whose queue is full is answered 429 (nothing of the
request is stored, so a retry is exact) and a full server 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from footfall.errors import RATE_LIMITED, UNAVAILABLE, ApiError

IdentityWork = Callable[[], object]
"""One identity operation, applied in a worker thread; it handles its own refusals."""

TURN_CALLS = 8
"""Calls a tenant applies per turn before the next tenant's turn."""
IDENTITY_LANES_SHARED = 4
"""Tenants whose turns run at once on PostgreSQL (its identity lock is per tenant)."""


class IdentityBacklogged(ApiError):
    """429 for one tenant whose identity work has backed up; says when to come back."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            429,
            RATE_LIMITED,
            "too much identity work (identify, alias, group) queued for this site's tenant; "
            "retry later",
        )
        self.retry_after = retry_after


@dataclass(slots=True)
class _Job:
    calls: Sequence[IdentityWork]
    done: asyncio.Future[None]
    next: int = 0


@dataclass(slots=True)
class _Tenant:
    jobs: deque[_Job] = field(default_factory=deque)
    pending: int = 0
    in_turn: bool = False


class IdentityTurns:
    """Fair turns over a few dedicated threads (``lanes``): DuckDB serialises identity
    transactions anyway, so one lane; PostgreSQL locks per tenant, so several tenants may
    run at once. A tenant never has two turns at once: its calls apply in arrival order."""

    def __init__(self, lanes: int, tenant_backlog: int, total_backlog: int) -> None:
        self._lanes = max(1, lanes)
        self._executor = ThreadPoolExecutor(self._lanes, thread_name_prefix="identity-turns")
        self._tenant_backlog = tenant_backlog
        self._total_backlog = total_backlog
        self._tenants: dict[str, _Tenant] = {}
        self._ready: deque[str] = deque()
        self._running = 0
        self._total = 0
        self._seconds_per_call = 0.02
        self._turns: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Identity calls queued or being applied (for /healthz and /metrics)."""
        return self._total

    async def run(self, tenant: str, calls: Sequence[IdentityWork]) -> None:
        """Apply ``calls`` in order in the tenant's turns; returns once all are applied."""
        if not calls:
            return
        state = self._tenants.get(tenant)
        queued = state.pending if state is not None else 0
        # A tenant with nothing queued is always admitted, so no request is refused forever.
        if queued and queued + len(calls) > self._tenant_backlog:
            raise IdentityBacklogged(max(1.0, queued * self._seconds_per_call / self._lanes))
        if self._total and self._total + len(calls) > self._total_backlog:
            raise ApiError(503, UNAVAILABLE, "identity work is backed up; retry later")
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        job = _Job(calls, asyncio.get_running_loop().create_future())
        if not state.jobs and not state.in_turn:
            self._ready.append(tenant)
        state.jobs.append(job)
        state.pending += len(calls)
        self._total += len(calls)
        self._dispatch()
        # A client that goes away does not cancel work already queued (it may be half done).
        await asyncio.shield(job.done)

    def _dispatch(self) -> None:
        while self._running < self._lanes and self._ready:
            tenant = self._ready.popleft()
            self._tenants[tenant].in_turn = True
            self._running += 1
            turn = asyncio.get_running_loop().create_task(self._turn(tenant))
            self._turns.add(turn)
            turn.add_done_callback(self._turns.discard)

    async def _turn(self, tenant: str) -> None:
        state = self._tenants[tenant]
        job = state.jobs[0]
        chunk = job.calls[job.next : job.next + TURN_CALLS]
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, _apply, chunk)
        except Exception as exc:  # handed to the request that waits
            failure = exc
        spent = (time.perf_counter() - started) / len(chunk)
        self._seconds_per_call = 0.9 * self._seconds_per_call + 0.1 * spent
        # A failure (a bug: calls handle their own refusals) ends the job: its rest is dropped.
        settled = len(chunk) if failure is None else len(job.calls) - job.next
        job.next += len(chunk)
        finished = failure is not None or job.next >= len(job.calls)
        state.pending -= settled
        self._total -= settled
        if finished:
            state.jobs.popleft()
            if not job.done.done():
                if failure is None:
                    job.done.set_result(None)
                else:
                    job.done.set_exception(failure)
        state.in_turn = False
        self._running -= 1
        if state.jobs:
            self._ready.append(tenant)  # to the back: every other tenant goes first
        else:
            del self._tenants[tenant]
        self._dispatch()

    def close(self) -> None:
        """At shutdown, after the requests ended: the turn under way finishes."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _apply(calls: Sequence[IdentityWork]) -> None:
    for call in calls:
        call()
