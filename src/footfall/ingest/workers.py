"""Ingest worker processes: the per-event CPU work of large batches, outside the server.

One Python process runs one thread of Python at a time, and a large batch spends most of
its time in exactly that: decoding, checking and encoding each event, and later building
the Arrow batch the journal loader inserts. Worker processes do both, so the server's own
interpreter is left with HTTP, the group commit and DuckDB. A batch comes back either
encoded (every event valid, on the fast path) or as None, and the server then handles it
itself by the exact rules, which say precisely what is wrong with which event: a worker
never decides an answer the server would give differently.

Each worker has a pipe of its own (a socket pair) and one thread in the server that sends
it one task at a time and waits for the answer, the pipe and the process's sentinel
together. So a worker that dies (killed, out of memory) is seen at once, whatever it was
doing: its pipe ends (even halfway through an answer: no other process holds that pipe)
and its sentinel fires. Nothing here uses ``multiprocessing``'s queues, locks or
semaphores, so nothing depends on its resource tracker process either.

``concurrent.futures.ProcessPoolExecutor``, used before, shares one result pipe between
all workers: one killed while writing its answer left the pool's manager thread reading
the rest of that answer forever (the other workers hold the pipe open), so it never saw
the dead worker, every later batch waited, ``/healthz`` still counted the worker and
shutdown waited for the thread.

A worker that dies is not replaced: the task it held (and any later one, once none is
left) is handled in the server, exactly as with ``ingest_workers = 0``, the others carry
on, one error is logged and ``/healthz`` counts the workers left. Replacing it would risk
a loop of workers started and killed (by the OOM killer, say) that costs more than the
server doing their work; a restart of the server brings them all back. A worker that does
not answer within ``timeout`` (stopped, or far behind) costs its batch no more than that
wait: the batch is handled in the server, the late answer is dropped when it comes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import pyarrow as pa
from prometheus_client import Counter

from footfall.errors import ApiError
from footfall.ingest.encoded import EncodedRows, encode_rows, read_ipc, write_ipc
from footfall.ingest.journal import journal_table
from footfall.ingest.segment import (
    MAX_BATCH_MESSAGES,
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
    "Large batches offered to ingest worker processes: taken whole, handed back, or not "
    "answered in time (then handled in the server)",
    ["outcome"],
)
_TAKEN = WORKER_BATCHES.labels("taken")
_HANDED_BACK = WORKER_BATCHES.labels("handed_back")
_TIMED_OUT = WORKER_BATCHES.labels("timed_out")
WORKER_MIN_BYTES = 32 * 1024
"""Smaller bodies are handled in the server: the hop to a worker and back (two pickles,
two pipe writes, a thread hand-off) costs more than a few dozen events' work."""
WORKER_WAIT_SECONDS = 10.0
"""The longest a batch or a load waits for a worker (to be free, and to answer) before the
server does the work itself; a worker's own work on the largest batch takes milliseconds."""
CHECK_SECONDS = 0.5
"""How often a worker's thread looks at its process while there is nothing to send."""
STOP_SECONDS = 5.0
"""At shutdown: how long the workers get to finish the task in hand, before they are killed."""
_TIMEOUT_LOG_SECONDS = 60.0


class WorkerLost(Exception):
    """The worker died holding the task, or none is left: the server does the work."""


class WorkerFailed(Exception):
    """The task raised in the worker (a bug); the message is the worker's traceback."""


class _Task:
    __slots__ = ("args", "function", "future")

    def __init__(self, function: Callable[..., Any], args: tuple[object, ...]) -> None:
        self.function = function
        self.args = args
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class IngestWorkers:
    """Worker processes (started on first use) for large batches and loads."""

    def __init__(self, processes: int, timeout: float = WORKER_WAIT_SECONDS) -> None:
        self.processes = processes
        self.timeout = timeout
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._live = processes  # not known to be dead (started or not yet)
        self._closed = False
        self._timeout_logged = -_TIMEOUT_LOG_SECONDS

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
        future = self._submit(function, args)
        if future is None:
            return None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:  # the task, if not begun yet, is cancelled
            self._timed_out("a batch")
            return None
        except WorkerLost:
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
        """``journal.journal_table`` in a worker (in this process if none is left, or none
        answers in time)."""
        future = self._submit(journal_ipc, (payloads,))
        if future is not None:
            try:
                return read_ipc(future.result(self.timeout))
            except TimeoutError:
                future.cancel()
                self._timed_out("a load")
            except WorkerLost:
                pass
            except Exception:
                log.exception("an ingest worker failed on a load; built in the server")
        return journal_table(payloads)

    def health(self) -> int:
        """Worker processes at hand: as configured (they start at the first large batch)
        less those that died (each one's thread sees it within ``CHECK_SECONDS``); 0 once
        none is left and the server carries on alone (see the log)."""
        with self._lock:
            return self._live

    def _submit(
        self, function: Callable[..., Any], args: tuple[object, ...]
    ) -> concurrent.futures.Future[Any] | None:
        """The task's future, queued for the first free worker; None when none is left."""
        with self._lock:
            if self._closed or self._live <= 0:
                return None
            if not self._workers:
                self._workers = [_Worker(self, n) for n in range(self.processes)]
                for worker in self._workers:
                    worker.thread.start()
            task = _Task(function, args)
            self._tasks.put(task)
            return task.future

    def _timed_out(self, what: str) -> None:
        _TIMED_OUT.inc()
        now = time.monotonic()
        if now - self._timeout_logged >= _TIMEOUT_LOG_SECONDS:  # once a minute at most
            self._timeout_logged = now
            log.warning(
                f"no ingest worker answered {what} in time; handled in the server",
                extra={"seconds": self.timeout},
            )

    def _lost(self, worker: _Worker, exitcode: int | None) -> None:
        """``worker``'s process is gone: one fewer; when none is left, the queued tasks go
        back to their requests (handled in the server)."""
        orphans: list[_Task] = []
        with self._lock:
            self._live -= 1
            live, closed = self._live, self._closed
            if live <= 0:
                while True:
                    try:
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        break
                    if task is not None:
                        orphans.append(task)
        for task in orphans:
            _fail(task, WorkerLost())
        if not closed:
            log.error(
                "an ingest worker process died; "
                + (
                    "the other workers carry on"
                    if live
                    else "batches are handled in the server now"
                ),
                extra={"worker": worker.name, "exit_code": exitcode, "ingest_workers": live},
            )

    def stop(self) -> None:
        """Let each worker finish the task in hand (``STOP_SECONDS`` at most), then end
        it: asked to, or killed. Returns once every process has been reaped (or after a
        few seconds more, for a thread that cannot be woken)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = self._workers
        for _ in workers:
            self._tasks.put(None)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.thread.is_alive():  # stopped, or stuck in a task: killed
                worker.kill()
        for worker in workers:
            worker.thread.join(STOP_SECONDS)
        while True:  # tasks no worker took: their requests are handled in the server
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                _fail(task, WorkerLost())


def _fail(task: _Task, error: Exception) -> None:
    if not task.future.done():
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            task.future.set_exception(error)


class _Worker:
    """One worker process, its pipe, and the server thread that talks to it."""

    def __init__(self, owner: IngestWorkers, number: int) -> None:
        self.owner = owner
        self.name = f"footfall-ingest-{number}"
        self.process: BaseProcess | None = None
        self._task: _Task | None = None
        """The task sent to the process, until its answer (or its end)."""
        self.thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._started = threading.Event()

    def kill(self) -> None:
        """SIGKILL the process (a stopped process too); its thread then sees it gone."""
        self._started.wait(STOP_SECONDS)
        if self.process is not None:
            self.process.kill()  # nothing once reaped

    def _serve(self) -> None:
        try:
            conn = self._start()
        except Exception:
            log.exception("an ingest worker process did not start")
            self._started.set()
            self.owner._lost(self, None)
            return
        process = self.process
        assert process is not None
        try:
            self._take_tasks(conn, process)
        except Exception:  # a bug here: this worker is given up, its task done in the server
            log.exception("an ingest worker's thread failed; the worker is ended")
            process.kill()
            self._gone(process, self._task)
        finally:
            conn.close()
            process.join(STOP_SECONDS)
            if process.exitcode is None:  # asked to end, but did not in time
                process.kill()
                process.join(STOP_SECONDS)

    def _start(self) -> Connection:
        # spawn, not fork: the server has threads (writer, loader) by the time a worker
        # starts, and a forked copy of a lock one of them held would never be released.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        try:
            process = context.Process(
                target=worker_main, args=(theirs, os.getpid()), name=self.name, daemon=True
            )
            process.start()
            self.process = process
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker's end is its own: its death ends the pipe
            self._started.set()
        return ours

    def _take_tasks(self, conn: Connection, process: BaseProcess) -> None:
        """Tasks one at a time until told to stop, or until the process is gone (then the
        task in hand fails with ``WorkerLost``)."""
        while True:
            self._task = None
            try:
                task = self.owner._tasks.get(timeout=CHECK_SECONDS)
            except queue.Empty:
                if _ended(process):
                    return self._gone(process, None)
                continue
            if task is None:  # stop: the worker ends when it reads the empty message
                with contextlib.suppress(OSError):
                    conn.send_bytes(b"")
                return None
            if not task.future.set_running_or_notify_cancel():
                continue  # its request stopped waiting
            self._task = task
            try:
                message = pickle.dumps((task.function, task.args), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                task.future.set_exception(exc)
                continue
            try:
                conn.send_bytes(message)
                del message
                answer = self._answer(conn, process)
            except (OSError, EOFError):  # the pipe ended: the process is gone
                answer = None
            if answer is None:
                return self._gone(process, task)
            try:
                ok, value = pickle.loads(answer)  # noqa: S301  # from our own worker, as ever
            except Exception as exc:
                task.future.set_exception(exc)
                continue
            if ok:
                task.future.set_result(value)
            else:
                task.future.set_exception(WorkerFailed(value))

    def _answer(self, conn: Connection, process: BaseProcess) -> bytes | None:
        """The worker's answer; None when its process ended first."""
        while True:
            ready = multiprocessing.connection.wait([conn, process.sentinel], CHECK_SECONDS)
            if conn in ready:
                return conn.recv_bytes()  # a partial answer ends in EOF: OSError
            if ready:
                return None

    def _gone(self, process: BaseProcess, task: _Task | None) -> None:
        self._task = None
        process.join(STOP_SECONDS)
        if task is not None:
            _fail(task, WorkerLost())
        self.owner._lost(self, process.exitcode)


def _ended(process: BaseProcess) -> bool:
    """The process is gone: its sentinel (a pipe only it held) is readable."""
    return bool(multiprocessing.connection.wait([process.sentinel], 0))


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


def worker_main(conn: Connection, parent: int) -> None:
    """A worker process: tasks from ``conn`` (pickled ``(function, args)``), answered with
    ``(True, result)`` or ``(False, traceback)``, until an empty message or the pipe's end
    (the server stopped it, or is gone)."""
    start_worker_of(parent)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        function, args = pickle.loads(message)  # noqa: S301  # from the server that started us
        del message
        try:
            answer = pickle.dumps((True, function(*args)), pickle.HIGHEST_PROTOCOL)
        except Exception:
            answer = pickle.dumps((False, traceback.format_exc()))
        try:
            conn.send_bytes(answer)
        except OSError:
            return
        del answer


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
    if not items or len(items) > MAX_BATCH_MESSAGES or max(map(len, items)) > MAX_MESSAGE_BYTES:
        return None  # decided in the server, which refuses these (an oversized one alone)
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
