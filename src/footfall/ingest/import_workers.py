"""``footfall import`` into the store, with the per-line work in worker processes.

Reading, checking and mapping a line costs some 15 µs of Python, storing it a few µs of
DuckDB. So the main process cuts the file into runs of lines (byte ranges; a gzip file is
inflated here, its runs sent as lines) and worker processes read them, each run with a
``LineReader`` of its own, exactly as one reader reads the whole file; they hand back the
rows as one Arrow table per run, with the run's identity calls and rejects. What depends
on the lines before a run (line numbers, the count in a derived message id, the identity
calls already seen) is settled here, in the file's order, so the outcome is that of a
single reader.

The rows are written in large batches (``Store.import_events``: the message-id check and
the insert are a few statements per batch) by one thread while a second applies the
identity calls, many to a transaction, and the main thread takes the next runs.

A worker that dies (killed, out of memory) breaks the pool: the run it held and all later
ones are read in this process instead, and nothing is lost or stored twice, since only runs
taken in order reach the store. Ctrl-C shuts the pool down; a killed import's workers end
themselves (``start_worker_of``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import logging
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from footfall.identity import IdentityGraph
from footfall.ingest.imports import (
    READ_BYTES,
    Chunk,
    Line,
    LineReader,
    LineSplitter,
    Reject,
    call_key,
    derived_message_id,
    is_gzip,
    open_lines,
)
from footfall.ingest.segment import IdentityCall, apply_identities, erased
from footfall.ingest.workers import start_worker_of
from footfall.store.arrow import rows_arrow
from footfall.store.base import Store

log = logging.getLogger("footfall.import")

RUN_BYTES = 4 * 1024 * 1024
"""A worker's run of lines: some 15,000 lines, a quarter of a second of work."""
BATCH_ROWS = 122_880
"""Rows per store transaction: one of DuckDB's row groups, which it writes straight to the
file rather than through its write-ahead log. Larger batches gain nothing and leave more
to write once the last lines are read."""
IDENTITY_BATCH = 500
"""Identity calls per transaction at most."""
WORKER_GC_THRESHOLDS = (100_000, 50, 50)
"""The workers' garbage collector: a first-generation pass every 100,000 allocations, not
700 (see ``_worker_started``)."""


@dataclass(frozen=True, slots=True)
class ImportJob:
    """What a worker needs to know to read a run, sent with each (the tombstones are few:
    persons erased in the last days)."""

    site_id: str
    fmt: str
    scope: str
    """The site's tenant: the identity graph its calls go to, and its tombstones."""
    tombstones: frozenset[tuple[str, str, str]] = frozenset()
    """(tenant, kind, value) of persons erased lately: their events are left out."""


@dataclass(slots=True)
class Part:
    """One run of lines, read. Line numbers start at 1 in the run until ``PartReader``
    settles them; ``derived`` lists the derived message ids given in the run, in order, as
    (row index or -1 for a line that made no row, digest, count within the run)."""

    lines: int
    rows: int
    """Rows the lines made, those of erased persons included (``table`` leaves them out)."""
    table: pa.Table
    calls: list[IdentityCall] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    derived: list[tuple[int, bytes, int]] = field(default_factory=list)
    position: int = 0
    """How far into the file (the compressed file for gzip) the run ends: for progress."""


Source = tuple[str, int, int] | list[Line]
"""A run of lines: (path, start, end) of a plain file, or the lines (of a gzip file)."""
SCAN_BYTES = 64 * 1024
"""Read at a time looking for the end of a run's last line (which may be very long)."""


def read_part(job: ImportJob, source: Source) -> Part:
    """A run of lines to rows (as Arrow), identity calls and rejects, as ``LineReader``
    reads them; runs in a worker process, or here when there is none."""
    lines = source if isinstance(source, list) else _range_lines(*source)
    reader = LineReader(job.site_id, job.fmt)
    chunk = Chunk()
    reader.read(enumerate(lines, 1), chunk)
    rows, row_lines = chunk.rows, chunk.row_lines
    if job.tombstones:
        kept = [
            i
            for i, row in enumerate(rows)
            if (job.scope, row.id_kind, row.token) not in job.tombstones
        ]
        if len(kept) < len(rows):
            rows = [rows[i] for i in kept]
            row_lines = [row_lines[i] for i in kept]
    derived: list[tuple[int, bytes, int]] = []
    if reader.derived:
        index = {line: i for i, line in enumerate(row_lines)}
        derived = [
            (index.get(line, -1), digest, count) for line, (digest, count) in reader.derived.items()
        ]
    table = rows_arrow(rows)
    return Part(len(lines), len(chunk.rows), table, chunk.calls, chunk.rejects, derived)


def _range_lines(path: str, start: int, end: int) -> list[Line]:
    """The lines of a plain file's byte range, a bounded block at a time: a very long line
    in it is skipped as it is read (``LineSplitter``)."""
    splitter = LineSplitter(start=start == 0)
    lines: list[Line] = []
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0 and (block := handle.read(min(READ_BYTES, left))):
            left -= len(block)
            lines += splitter.feed(block)
    return lines + splitter.finish()


def _line_end(handle: BinaryIO, at: int, size: int) -> int:
    """Where the line the byte at ``at`` is in ends (after its line feed), read forward a
    bounded block at a time, not as one line (``readline`` would hold it whole)."""
    handle.seek(at)
    while block := handle.read(SCAN_BYTES):
        found = block.find(b"\n")
        if found >= 0:
            return handle.tell() - len(block) + found + 1
    return size


def _worker_started(parent: int) -> None:
    start_worker_of(parent)
    # A run makes some 100,000 objects, nearly all freed when it is sent: collecting
    # cycles among them every 700 allocations (and the modules' objects each time) would
    # cost a tenth of the worker's time.
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


def _ready() -> None:
    """A first task, so the pool starts its processes at once."""


@dataclass(frozen=True, slots=True)
class WorkerPool:
    executor: concurrent.futures.ProcessPoolExecutor
    processes: int


@contextlib.contextmanager
def import_workers(processes: int) -> Iterator[WorkerPool | None]:
    """``processes`` worker processes for ``PartReader`` (none: None), started at once:
    they take most of a second to start, which the caller spends opening the store. They
    end on leaving (a run one is on is finished first)."""
    if processes <= 0:
        yield None
        return
    # spawn: the import has threads (writer, identity) that fork would copy mid-lock.
    pool = concurrent.futures.ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_started,
        initargs=(os.getpid(),),
    )
    try:
        for _ in range(processes):
            pool.submit(_ready)
        yield WorkerPool(pool, processes)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers(path: Path) -> int:
    """Two or more cores and more than a few runs of lines: a worker per core (up to 4);
    else none (starting one costs more than a small file's work)."""
    cores = os.cpu_count() or 1
    if cores < 2 or _lines_size(path) < 4 * RUN_BYTES:
        return 0
    return min(cores, 4)


def _lines_size(path: Path) -> int:
    """The file's size, inflated for gzip (its trailer says, modulo 4 GiB: a larger file
    is large either way)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if handle.read(2) != b"\x1f\x8b" or size < 18:
            return size
        handle.seek(-4, os.SEEK_END)
        return max(size, int.from_bytes(handle.read(4), "little"))


class PartReader:
    """The file's runs of lines, read by the processes of ``pool`` (None: here), in the
    file's order and settled (see the module's docstring)."""

    def __init__(
        self,
        path: Path,
        job: ImportJob,
        pool: WorkerPool | None = None,
        run_bytes: int = RUN_BYTES,
    ) -> None:
        self.path = path
        self.job = job
        self.run_bytes = run_bytes
        self.size = max(1, path.stat().st_size)
        self._pool = None if pool is None else pool.executor
        self._depth = 1 if pool is None else 2 * pool.processes + 1
        self._lines = 0
        self._seen: dict[bytes, int] = {}
        self._calls: set[tuple[Any, ...]] = set()
        self.damage: str | None = None
        """Where a damaged gzip file broke (``LineFile``), once the runs are read."""

    def __iter__(self) -> Iterator[Part]:
        sources = self._sources()
        pending: deque[tuple[Source, int, concurrent.futures.Future[Part] | None]] = deque()
        while True:
            while len(pending) < self._depth and (item := next(sources, None)) is not None:
                source, position = item
                pending.append((source, position, self._submit(source)))
            if not pending:
                return
            source, position, future = pending.popleft()
            part = self._result(source, future)
            part.position = position
            yield self._settle(part)

    def _submit(self, source: Source) -> concurrent.futures.Future[Part] | None:
        if self._pool is None:
            return None
        try:
            return self._pool.submit(read_part, self.job, source)
        except (BrokenProcessPool, RuntimeError):
            self._broken()
            return None

    def _result(self, source: Source, future: concurrent.futures.Future[Part] | None) -> Part:
        if future is not None and self._pool is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                self._broken()
        return read_part(self.job, source)

    def _broken(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            log.error("an import worker process died; the rest of the file is read here")
            pool.shutdown(wait=False, cancel_futures=True)

    def _sources(self) -> Iterator[tuple[Source, int]]:
        if not is_gzip(self.path):  # a plain file: workers read their byte ranges themselves
            with self.path.open("rb") as handle:
                size = self.path.stat().st_size
                start = 0
                while start < size:
                    # to the end of the line the run's last byte is in
                    end = min(_line_end(handle, start + self.run_bytes - 1, size), size)
                    yield (str(self.path), start, end), end
                    start = end
            return
        with open_lines(self.path) as lines:
            for run in lines.blocks(self.run_bytes):
                yield run, lines.position
            self.damage = lines.damage

    def _settle(self, part: Part) -> Part:
        """Line numbers, derived message ids and identity calls as one reader of the
        whole file has them."""
        offset = self._lines
        self._lines += part.lines
        if offset:
            part.rejects = [Reject(r.line + offset, r.message) for r in part.rejects]
        if part.derived:
            part.table = self._derived_ids(part)
        calls = []
        for call in part.calls:
            key = call_key(call)
            if key not in self._calls:
                self._calls.add(key)
                calls.append(call)
        part.calls = calls
        return part

    def _derived_ids(self, part: Part) -> pa.Table:
        """A derived id counts identical lines from the file's start; the run counted from
        its own. Counts of earlier runs are added (rarely needed: a repeated line)."""
        fixed: dict[int, str] = {}
        counts: dict[bytes, int] = {}
        for row, digest, count in part.derived:
            before = self._seen.get(digest, 0)
            if before and row >= 0:
                fixed[row] = derived_message_id(digest, before + count)
            counts[digest] = count + 1
        for digest, count in counts.items():
            self._seen[digest] = self._seen.get(digest, 0) + count
        if not fixed:
            return part.table
        ids = part.table.column("message_id").to_pylist()
        for row, message_id in fixed.items():
            ids[row] = message_id
        column = part.table.schema.get_field_index("message_id")
        return part.table.set_column(column, "message_id", pa.array(ids, pa.string()))


@dataclass(slots=True)
class ImportResult:
    lines: int = 0
    rows: int = 0
    """Rows the lines made (stored, already there, or of erased persons)."""
    stored: int = 0
    rejects: list[Reject] = field(default_factory=list)
    damage: str | None = None
    """Where a damaged gzip file broke: the lines before it are imported."""


class _Stage(threading.Thread):
    """A thread doing ``work`` on what it is given, in order; the first error is kept
    and whatever comes after it is dropped."""

    def __init__(self, name: str, work: Callable[[Any], None], waiting: int = 0) -> None:
        super().__init__(name=name, daemon=True)
        self._work = work
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=waiting)
        self._dropped = False
        self.failure: BaseException | None = None
        self.start()

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def finish(self, *, drop: bool = False) -> None:
        """Wait for the work given (``drop``: only for the item at hand)."""
        self._dropped = drop
        self._queue.put(_END)
        self.join()

    def run(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self.failure is None and not self._dropped:
                try:
                    self._work(item)
                except BaseException as exc:
                    self.failure = exc


_END = object()


def import_to_store(
    path: Path,
    job: ImportJob,
    store: Store,
    graph: IdentityGraph,
    pool: WorkerPool | None,
    progress: Callable[[Part, int], None] | None = None,
    run_bytes: int = RUN_BYTES,
) -> ImportResult:
    """Read ``path`` (in the processes of ``pool``, or here) and store its rows and identity
    calls; ``progress`` hears of each run read, with the lines so far."""
    result = ImportResult()

    def write(tables: list[pa.Table]) -> None:
        result.stored += store.import_events(pa.concat_tables(tables))

    def identify(calls: list[IdentityCall]) -> None:
        apply_identities(graph, job.scope, calls, "import")

    # Two batches wait at most (memory); identity calls are small, and none waits on them.
    writer = _Stage("footfall-import-writer", write, waiting=2)
    identities = _Stage("footfall-import-identity", identify)
    tombstones = set(job.tombstones)
    tables: list[pa.Table] = []
    buffered = 0
    calls: list[IdentityCall] = []
    done = False
    reader = PartReader(path, job, pool, run_bytes)
    try:
        for part in reader:
            result.lines += part.lines
            result.rows += part.rows
            result.rejects.extend(part.rejects)
            if part.table.num_rows:
                tables.append(part.table)
                buffered += part.table.num_rows
            if buffered >= BATCH_ROWS:
                writer.put(tables)
                tables, buffered = [], 0
            calls.extend(c for c in part.calls if not erased(tombstones, job.scope, c))
            while calls:
                identities.put(calls[:IDENTITY_BATCH])
                calls = calls[IDENTITY_BATCH:]
            if progress is not None:
                progress(part, result.lines)
            if writer.failure or identities.failure:
                break
        if tables:
            writer.put(tables)
        result.damage = reader.damage
        done = True
    finally:  # after an error or Ctrl-C, what is at hand is finished, the rest dropped
        writer.finish(drop=not done)
        identities.finish(drop=not done)
    for stage in (writer, identities):
        if stage.failure is not None:
            raise stage.failure
    return result
