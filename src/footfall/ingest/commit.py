"""The second step of the write path: the group commit.

Rows of every request waiting at once are handed to one writer thread, made durable together
by a sink (``journal`` for DuckDB, ``direct`` for PostgreSQL) and only then answered, so an
acknowledged event is durable without one disk sync per request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import queue
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Histogram

from footfall.errors import UNAVAILABLE, ApiError
from footfall.ingest.encoded import EncodedRows
from footfall.store.base import EventRow, Store

log = logging.getLogger("footfall.ingest")

SWITCH_INTERVAL_S = 0.0005

EVENTS_COMMITTED = Counter("footfall_events_committed_total", "Events durably written", ["event"])
COMMIT_BATCH = Histogram(
    "footfall_commit_batch_events",
    "Events per group commit (one transaction, or one journal record and sync)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
COMMIT_SECONDS = Histogram(
    "footfall_commit_seconds",
    "Time to make one group durable (transaction commit, or journal write and sync)",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
COMMIT_FAILURES = Counter("footfall_commit_failures_total", "Groups that could not be made durable")

Pending = tuple["list[EventRow] | EncodedRows", "asyncio.Future[list[int]]"]
"""One request's rows (or a worker's encoding of them) and the future its handler awaits."""
Outcome = list[int] | BaseException
"""Per request: its rows' flags (``store.base.STORED`` ...), or the error it gets."""


class GroupCommitter:
    """Makes the events of all waiting requests durable together, then answers them all.

    Requests that arrive while one group is being made durable form the next group, so
    under load one disk sync serves many requests and with no load a request waits for
    just its own. Nothing is acknowledged before it is durable. Subclasses say what
    durable means (``write_group``): a committed transaction, or a synced journal record.
    """

    mode = "direct"

    def __init__(
        self,
        store: Store,
        max_events: int = 5_000,
        queue_limit: int = 100_000,
        linger_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self._linger = linger_seconds
        self._max_events = max_events
        self._queue_limit = queue_limit
        # A C-level queue of per-iteration batches: a put costs a fraction of a Condition's
        # notify. None items only wake the writer up for stop().
        self._queue: queue.SimpleQueue[list[Pending] | None] = queue.SimpleQueue()
        self._batch: list[Pending] = []
        self._flush_scheduled = False
        self._carry: list[Pending] | None = None
        # Each counter has one writing thread, so neither needs a lock.
        self._submitted = 0
        self._taken = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        # The writer thread needs the GIL briefly between its blocking calls; with the
        # default 5 ms switch interval a busy event loop makes it wait that long each time.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="footfall-writer", daemon=True)
        self._thread.start()

    @property
    def queued_events(self) -> int:
        """Events accepted by ``submit`` that the writer has not taken yet."""
        return self._submitted - self._taken

    def backlog(self) -> int:
        """Events held in memory on their way to the store (counted against the limit)."""
        return self.queued_events

    def submit(self, rows: list[EventRow] | EncodedRows) -> asyncio.Future[list[int]]:
        """A future of the rows' duplicate flags, resolved once they are durable; raises 503
        if the writer cannot take them. A plain function, not a coroutine: one level less
        for the request to suspend through and resume."""
        if not rows:  # e.g. a batch of only invalid events: nothing to wait for
            done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        loop = self.loop
        if loop is None or self._closing:
            raise ApiError(503, UNAVAILABLE, "server is shutting down; retry later")
        future: asyncio.Future[list[int]] = loop.create_future()
        if self.backlog() + len(rows) > self._queue_limit:
            raise ApiError(503, UNAVAILABLE, "ingest queue is full; retry later")
        self._submitted += len(rows)
        self._batch.append((rows, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Hand this loop iteration's requests to the writer in one put.

        At most one wake-up of the writer thread per iteration instead of one per request:
        waking a thread costs the event loop a system call and, more, a GIL hand-over.
        """
        self._flush_scheduled = False
        batch, self._batch = self._batch, []
        if self._thread is None or not self._thread.is_alive():  # stopped meanwhile
            closed = ApiError(503, UNAVAILABLE, "server is shutting down; retry later")
            settle(batch, [closed] * len(batch))
            return
        self._queue.put(batch)

    async def settled(self) -> None:
        """Return once every event acknowledged before this call is visible to queries.

        Readers (analytics, person views, export, erase) await it for read-your-writes;
        here an acknowledged event is already committed, so there is nothing to wait for.
        """

    def forget_old_message_ids(self) -> None:
        """Old message ids were deleted from the store (nothing to do here: the store
        decides repeats in the group's transaction)."""

    def health(self) -> dict[str, Any]:
        """What /healthz shows about ingest."""
        return {"mode": self.mode, "queued_events": self.queued_events}

    def stop(self, timeout: float = 30.0) -> None:
        """Make everything already queued durable, then end the writer thread."""
        self._closing = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        # Whatever slipped in after the writer's last look is refused, never left hanging.
        leftovers: list[Pending] = list(self._carry or [])
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftovers.extend(item)
        if leftovers:
            closed = ApiError(503, UNAVAILABLE, "server is shutting down; retry later")
            self._answer(leftovers, [closed] * len(leftovers))

    def _take(self) -> list[Pending] | None:
        """Everything waiting (up to ``max_events``); None once stopping and drained."""
        group: list[Pending] = []
        count = 0
        deadline = 0.0
        while True:
            batch = self._carry
            self._carry = None
            wait = 0.0
            if batch is None:
                if group and deadline and not self._closing:
                    wait = deadline - time.monotonic()
                try:
                    if not group:  # block until work arrives; once stopping, only drain
                        batch = self._queue.get(block=not self._closing)
                    elif wait > 0:  # linger: a moment's wait gives fewer, larger groups
                        batch = self._queue.get(timeout=wait)
                    else:
                        batch = self._queue.get_nowait()
                except queue.Empty:
                    if not group:
                        return None
                    if wait > 0:
                        continue
                    break
            if batch is None:
                continue
            for index, item in enumerate(batch):
                if group and count + len(item[0]) > self._max_events:
                    self._carry = batch[index:]
                    self._taken += count
                    return group
                group.append(item)
                count += len(item[0])
            if self._linger and not deadline:
                deadline = time.monotonic() + self._linger
        self._taken += count
        return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            self._answer(group, self.write_group(group))

    def _answer(self, group: list[Pending], outcomes: list[Outcome]) -> None:
        """Hand the outcomes to the event loop: one wake-up per group, not per request."""
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(settle, group, outcomes)
        except RuntimeError:  # loop already closed: nobody is waiting any more
            log.warning("event loop closed before answers were delivered")

    def write_group(self, group: list[Pending]) -> list[Outcome]:
        raise NotImplementedError


def split_flags(group: list[Pending], flags: Sequence[int]) -> list[Outcome]:
    """The flags of a whole group (order flags alone are bools: 1 is ``REPEATED_ORDER``),
    cut back into one list per request."""
    outcomes: list[Outcome] = []
    offset = 0
    for rows, _ in group:
        outcomes.append(list(flags[offset : offset + len(rows)]))
        offset += len(rows)
    return outcomes


_COMMITTED_CHILDREN: dict[str, Any] = {}
_event_of = operator.attrgetter("event")


def record_commit(rows: list[EventRow], started: float) -> None:
    """The metrics of a group made durable (``started``: its ``perf_counter`` at the start)."""
    COMMIT_SECONDS.observe(time.perf_counter() - started)
    COMMIT_BATCH.observe(len(rows))
    count_committed(rows)


def record_group(count: int, events: Mapping[str, int], started: float) -> None:
    """``record_commit`` for a group of ``count`` rows, ``events`` of them per type."""
    COMMIT_SECONDS.observe(time.perf_counter() - started)
    COMMIT_BATCH.observe(count)
    _count_events(events)


def count_committed(rows: list[EventRow]) -> None:
    _count_events(collections.Counter(map(_event_of, rows)))


def _count_events(events: Mapping[str, int]) -> None:
    for name, n in events.items():
        child = _COMMITTED_CHILDREN.get(name)
        if child is None:  # labels() costs a lock and a tuple per call: once per name
            child = _COMMITTED_CHILDREN[name] = EVENTS_COMMITTED.labels(name)
        child.inc(n)


def settle(group: list[Pending], outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the client went away; its events are stored all the same
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
