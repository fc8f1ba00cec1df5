"""Ingest worker processes: the per-event CPU work of large batches, outside the server.

One Python process runs one thread of Python at a time, and a large batch spends most of
its time in exactly that: decoding, checking and encoding each event, and later building
the Arrow batch the journal loader inserts. Worker processes do both, so the server's own
interpreter is left with HTTP, the group commit and DuckDB. A batch comes back either
encoded (every event valid, on the fast path) or as None, and the server then handles it
itself by the exact rules, which say precisely what is wrong with which event: a worker
never decides an answer the server would give differently.

A worker that dies (killed, out of memory) breaks the pool: everything then runs in the
server process, as with ``ingest_workers = 0``, and one error is logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa
from prometheus_client import Counter

from footfall.errors import ApiError
from footfall.ingest.encoded import EncodedRows, encode_rows, read_ipc, write_ipc
from footfall.ingest.journal import journal_table
from footfall.ingest.segment import (
    MAX_MESSAGE_BYTES,
    Envelope,
    decode_segment_batch,
    fast_message_decoder,
    fast_message_row,
)
from footfall.ingest.validate import (
    MAX_PAYLOAD_BYTES,
    RequestContext,
    fast_decode,
    fast_event_decoder,
    fast_rows,
    parse_batch,
)

log = logging.getLogger("footfall.ingest")

PARENT_CHECK_SECONDS = 0.5
WORKER_BATCHES = Counter(
    "footfall_ingest_worker_batches_total",
    "Large batches offered to ingest worker processes: taken whole, or handed back",
    ["outcome"],
)
_TAKEN = WORKER_BATCHES.labels("taken")
_HANDED_BACK = WORKER_BATCHES.labels("handed_back")
WORKER_MIN_BYTES = 32 * 1024
"""Smaller bodies are handled in the server: the hop to a worker and back (two pickles,
two pipe writes, a thread hand-off) costs more than a few dozen events' work."""


class IngestWorkers:
    """A pool of worker processes (started on first use) for large batches and loads."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # spawn, not fork: the server has threads (writer, loader) by the time a worker
        # starts, and a forked copy of a lock one of them held would never be released.
        self._pool: concurrent.futures.ProcessPoolExecutor | None = (
            concurrent.futures.ProcessPoolExecutor(
                processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker_of,
                initargs=(os.getpid(),),
            )
        )

    async def tracking_batch(
        self, raw: bytes, ctx: RequestContext, max_events: int
    ) -> EncodedRows | None:
        """A tracking batch body's rows, encoded; None when the server must decide."""
        return await self._run(tracking_rows, raw, ctx, max_events)

    async def segment_batch(self, raw: bytes, envelope: Envelope) -> EncodedRows | None:
        """A Segment batch body's rows, encoded; None when the server must decide."""
        return await self._run(segment_rows, raw, envelope)

    async def _run(
        self, function: Callable[..., EncodedRows | None], *args: object
    ) -> EncodedRows | None:
        pool = self._pool
        if pool is None:
            return None
        try:
            future = pool.submit(function, *args)
        except (BrokenProcessPool, RuntimeError):  # a worker died, or shutting down
            self._broken()
            return None
        try:
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._broken()
            return None
        except Exception:  # a bug in the worker: the server decides this batch itself
            log.exception("an ingest worker failed on a batch; handled in the server")
            return None
        if isinstance(result, EncodedRows):
            _TAKEN.inc()
            return result
        _HANDED_BACK.inc()
        return None

    def journal_table(self, payloads: list[bytes]) -> pa.Table:
        """``journal.journal_table`` in a worker (in this process if the pool is gone)."""
        pool = self._pool
        if pool is not None:
            try:
                data = pool.submit(journal_ipc, payloads).result()
                return read_ipc(data)
            except (BrokenProcessPool, RuntimeError):
                self._broken()
            except Exception:
                log.exception("an ingest worker failed on a load; built in the server")
        return journal_table(payloads)

    def health(self) -> int:
        """Worker processes at hand: as configured, or 0 once one died and the server
        carries on alone (see the log)."""
        return 0 if self._pool is None else self.processes

    def _broken(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            log.error("an ingest worker process died; batches are handled in the server now")
            pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- run in the workers


def start_worker_of(parent: int) -> None:
    """What every Footfall worker process does first (the server's and ``footfall
    import``'s): Ctrl-C is left to the parent (which shuts its pool down), and the worker
    ends itself once ``parent`` is gone, since it holds both ends of its task pipe and would
    otherwise wait forever for a parent killed outright. The parent passes its own pid: read
    here (``os.getppid``) it is already init's when the parent was killed while this process
    was starting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:
        os._exit(0)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def tracking_rows(raw: bytes, ctx: RequestContext, max_events: int) -> EncodedRows | None:
    """The rows of a tracking batch whose every event passes the fast path, else None."""
    try:
        events, named = parse_batch(raw)
    except ApiError:
        return None
    if not events or len(events) > max_events or named not in (None, ctx.site_id):
        return None
    rows = fast_rows(fast_decode(events, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    if None in rows:
        return None
    return encode_rows(rows, arrow=True)  # type: ignore[arg-type]  # no None left


def segment_rows(raw: bytes, envelope: Envelope) -> EncodedRows | None:
    """The rows of a Segment batch whose every message passes the fast path, else None."""
    try:
        body = decode_segment_batch(raw)
    except ApiError:
        return None
    items = body.batch
    if not items or max(map(len, items)) > MAX_MESSAGE_BYTES:
        return None
    rows = []
    for message in fast_decode(items, fast_message_decoder, MAX_MESSAGE_BYTES):
        row = None if message is None else fast_message_row(message, envelope)
        if row is None:
            return None
        rows.append(row)
    return encode_rows(rows, arrow=True)


def journal_ipc(payloads: list[bytes]) -> bytes:
    """``journal_table`` as Arrow IPC bytes, the cheapest form to send back."""
    return write_ipc(journal_table(payloads))
