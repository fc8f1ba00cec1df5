"""The ingest journal of the embedded DuckDB store: our own append-only log is the durability
point, and DuckDB is loaded from it in large batches.

DuckDB costs milliseconds of CPU per committed transaction whatever its size, so one
transaction per group of requests spends most of the server's time in commits. Here the
writer thread appends one framed record per group to a segment file, syncs it (about a
tenth of a millisecond of CPU) and only then answers the group: a 200 means the events are
on disk. A loader thread inserts what accumulated into DuckDB as one Arrow batch per load
and, in the same transaction, records the journal position it has loaded up to. After a
crash, start-up replays the journal from that position: nothing acknowledged is lost and
nothing is loaded twice.

Layout: ``<dir>/<start position, 20 digits>.journal``. A segment starts with ``MAGIC`` and
a header record naming its format and the row fields; each record is ``<u32 length><u32
CRC-32><payload>`` with the payload ``msgpack([parts, duplicate flags])``, a part being the
rows of one request or more as value lists, or a worker's rows as an Arrow IPC stream
(``FORMAT``). A position (LSN) is the
segment's start plus the byte offset in it, so positions grow across segments. A record
that is cut short or fails its CRC was never acknowledged (the answer waits for the sync):
replay truncates it with a warning.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
import pyarrow as pa
from prometheus_client import Counter, Gauge, Histogram
from rbloom import Bloom

from footfall.errors import UNAVAILABLE, ApiError
from footfall.ingest.commit import (
    COMMIT_FAILURES,
    GroupCommitter,
    Outcome,
    Pending,
    record_group,
    split_flags,
)
from footfall.ingest.encoded import FIELDS, EncodedRows, array_header, encode_rows, read_ipc
from footfall.store.arrow import rows_table, table_values, with_duplicates
from footfall.store.base import EventRow, Store, merge_flags, split_repeated_messages

if TYPE_CHECKING:
    from footfall.config import Settings

log = logging.getLogger("footfall.journal")

MAGIC = b"FFJRNL\x00\x01"
FORMAT = 2
"""1: a record's payload is ``[rows, duplicate flags]``; 2: ``[parts, duplicate flags]``,
each part either rows or an Arrow IPC stream of rows (see ``ingest.encoded``). Segments of
format 1 (written before) are still read."""
SUFFIX = ".journal"
_FRAME = struct.Struct("<II")
# A journaled row is the list of an EventRow's values in FIELDS order (named in each
# segment's header, so a later EventRow with more fields still reads old segments).
_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(EventRow) if f.default is not dataclasses.MISSING
}
_SITE, _TS, _EVENT, _ORDER = (FIELDS.index(n) for n in ("site_id", "ts_us", "event", "order_num"))

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()

JOURNAL_UNLOADED = Gauge(
    "footfall_journal_unloaded_events", "Events synced to the journal, not yet loaded into DuckDB"
)
JOURNAL_LAG = Gauge(
    "footfall_journal_load_lag_seconds", "Age of the oldest journaled event not yet loaded"
)
JOURNAL_BYTES = Gauge("footfall_journal_bytes", "Bytes in journal segment files on disk")
LOAD_BATCH = Histogram(
    "footfall_journal_load_batch_events",
    "Events per DuckDB load from the journal",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000),
)
LOAD_SECONDS = Histogram(
    "footfall_journal_load_seconds",
    "Time of one DuckDB load (Arrow batch, insert, position, commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LOAD_FAILURES = Counter("footfall_journal_load_failures_total", "DuckDB loads that failed")
REPLAYED = Counter("footfall_journal_replayed_events_total", "Events loaded by start-up replay")
TRUNCATED = Counter(
    "footfall_journal_truncated_bytes_total", "Bytes of torn or corrupt records dropped at replay"
)


class JournalError(RuntimeError):
    """The journal cannot be read as written (not a torn tail: refuse rather than skip)."""


@runtime_checkable
class JournalTarget(Protocol):
    """What the loader needs from a store (the DuckDB store provides it)."""

    def journal_position(self) -> int:
        """The journal position loaded so far (0 for a new database)."""
        ...

    def known_orders(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (site_id, order_num) pairs are already stored as orders."""
        ...

    def known_messages(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (site_id, message_id) pairs are already stored."""
        ...

    def message_keys(self) -> Iterable[tuple[str, str]]:
        """Every stored (site_id, message_id) pair (streamed: there may be millions)."""
        ...

    def load_journaled(
        self, batch: pa.Table, orders: Sequence[tuple[str, str, int]], position: int
    ) -> None:
        """Insert the rows (``store.arrow.rows_table`` with ``with_duplicates``), their
        message ids, the new orders and the loaded position in one committed transaction."""
        ...


@dataclass(slots=True)
class Record:
    """One journal record: a group's rows (values in ``FIELDS`` order) and flags."""

    rows: list[Sequence[Any]]
    duplicates: list[bool]
    end: int
    """The position just past the record."""
    payload: bytes
    """The record as written, in today's format (re-encoded if it was not)."""


@dataclass(slots=True)
class _Segment:
    start: int
    path: Path
    end: int


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _fsync_directory(directory: Path) -> None:
    """A new or removed file is durable only once its directory is synced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remap(rows: list[Sequence[Any]], fields: Sequence[str]) -> list[Sequence[Any]]:
    """Rows written with another field list, in today's ``FIELDS`` order."""
    where = {name: i for i, name in enumerate(fields)}
    missing = [n for n in FIELDS if n not in where and n not in _DEFAULTS]
    if missing:
        raise JournalError(f"journal rows lack required fields {missing}")
    picks = [(where.get(n), _DEFAULTS.get(n)) for n in FIELDS]
    return [[row[i] if i is not None else default for i, default in picks] for row in rows]


class Journal:
    """Segment files: appended (synced) by the writer thread, replayed at start-up,
    deleted by the loader once everything in them is in the database."""

    def __init__(self, directory: Path, segment_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._fd: int | None = None
        self._current: _Segment | None = None
        self._closed: list[_Segment] = []
        self._lock = threading.Lock()  # the writer rotates, the loader releases
        self._end = 0

    @property
    def end(self) -> int:
        """The position after the last appended record."""
        return self._end

    # ------------------------------------------------------------------ start-up

    def recover(self, loaded: int) -> Iterator[Record]:
        """Every record after position ``loaded``, oldest first; torn tails are truncated.

        Afterwards the journal appends at the end of what it read (or at ``loaded`` when
        the segments are gone), always in a new segment.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        segments = sorted(self._segment_files())
        end = loaded
        expected: int | None = None
        for index, (start, path) in enumerate(segments):
            last = index == len(segments) - 1
            if expected is not None and start != expected:
                log.error(
                    "journal segments do not join up; events between them are missing",
                    extra={"expected": expected, "found": start},
                )
            elif expected is None and start > loaded:
                log.error(
                    "journal starts after the loaded position; events between are missing",
                    extra={"loaded": loaded, "found": start},
                )
            segment_end = yield from self._read_segment(start, path, loaded, last)
            if segment_end is None:
                continue
            self._closed.append(_Segment(start, path, segment_end))
            expected = segment_end
            end = max(end, segment_end)
        self._end = end

    def _segment_files(self) -> Iterator[tuple[int, Path]]:
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem = path.name[: -len(SUFFIX)]
            if stem.isdigit():
                yield int(stem), path

    def _read_segment(
        self, start: int, path: Path, loaded: int, last: bool
    ) -> Generator[Record, None, int | None]:
        """Yield the segment's records after ``loaded``; return its end position (None if
        the segment is unusable and was set aside)."""
        data = path.read_bytes()
        header = self._header(data)
        if header is None or header.get("start") != start:
            if last and len(data) < 4096:
                # Created, then the process died before its header was synced: nothing in it
                # was ever acknowledged.
                log.warning("journal segment with a torn header removed", extra={"file": path.name})
                TRUNCATED.inc(len(data))
                path.unlink()
                _fsync_directory(self.directory)
                return None
            raise JournalError(f"{path} is not a journal segment this version can read")
        fields: list[str] = header["fields"]
        header_length: int = _FRAME.unpack_from(data, len(MAGIC))[0]
        offset = len(MAGIC) + _FRAME.size + header_length
        while offset < len(data):
            if offset + _FRAME.size > len(data):
                break
            length, crc = _FRAME.unpack_from(data, offset)
            body_at = offset + _FRAME.size
            if length == 0 or body_at + length > len(data):
                break
            payload = data[body_at : body_at + length]
            if zlib.crc32(payload) != crc:
                break
            record_end = start + body_at + length
            if record_end > loaded:
                if start + offset < loaded:
                    raise JournalError(
                        f"loaded position {loaded} falls inside a record of {path.name}: "
                        "this journal does not belong to this database"
                    )
                try:
                    parts, duplicates = _decoder.decode(payload)
                    if header["format"] == 1:
                        parts = [parts]
                    rows = [row for part in parts for row in _part_values(part)]
                except (msgspec.DecodeError, pa.ArrowException, ValueError, TypeError) as exc:
                    raise JournalError(f"unreadable record in {path.name}: {exc}") from None
                if fields != list(FIELDS):
                    rows = _remap(rows, fields)
                    payload = _encoder.encode(([rows], duplicates))
                elif header["format"] == 1:
                    payload = _encoder.encode((parts, duplicates))
                yield Record(rows, duplicates, record_end, payload)
            offset = body_at + length
        if offset < len(data):
            dropped = len(data) - offset
            TRUNCATED.inc(dropped)
            if last:  # the process died mid-write: that record was never acknowledged
                log.warning(
                    "journal tail torn or failing its CRC: truncated",
                    extra={"file": path.name, "bytes": dropped},
                )
            else:
                log.error(
                    "corrupt record inside the journal: the rest of this segment is dropped",
                    extra={"file": path.name, "bytes": dropped},
                )
            os.truncate(path, offset)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return start + offset

    @staticmethod
    def _header(data: bytes) -> dict[str, Any] | None:
        if len(data) < len(MAGIC) + _FRAME.size or not data.startswith(MAGIC):
            return None
        length, crc = _FRAME.unpack_from(data, len(MAGIC))
        body = data[len(MAGIC) + _FRAME.size : len(MAGIC) + _FRAME.size + length]
        if len(body) != length or zlib.crc32(body) != crc:
            return None
        try:
            header = _decoder.decode(body)
        except msgspec.DecodeError:
            return None
        if not isinstance(header, dict) or header.get("format") not in (1, FORMAT):
            return None
        return header

    # ------------------------------------------------------------------ writer thread

    def append(self, payload: bytes) -> int:
        """Write one record durably; returns its end position.

        Segments are opened with O_DSYNC, so the write returns once the data is on disk, as
        write + fdatasync would, in one system call: the writer thread gives up and re-takes
        the GIL once per group instead of twice (each re-take waits for the busy event loop).
        """
        if self._current is None or self._end - self._current.start >= self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        frame = _frame(payload)
        view = memoryview(frame)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._end += len(frame)
        return self._end

    def abandon_tail(self, good_end: int) -> None:
        """After a failed write: cut the segment back to ``good_end`` and continue in
        a new segment, so a half-written record is never followed by acknowledged ones."""
        segment, fd = self._current, self._fd
        self._end = good_end
        if segment is None or fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, good_end - segment.start)
        with contextlib.suppress(OSError):
            os.close(fd)
        self._fd = None
        self._current = None
        with self._lock:
            self._closed.append(_Segment(segment.start, segment.path, good_end))

    def _rotate(self) -> None:
        if self._current is not None and self._fd is not None:
            os.close(self._fd)
            with self._lock:
                self._closed.append(_Segment(self._current.start, self._current.path, self._end))
        start = self._end
        path = self.directory / f"{start:020d}{SUFFIX}"
        self._fd = None
        self._current = None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_DSYNC
        fd = os.open(path, flags, 0o600)
        header = _frame(_encoder.encode({"format": FORMAT, "start": start, "fields": FIELDS}))
        try:
            os.write(fd, MAGIC + header)
            _fsync_directory(self.directory)  # the new file's name is durable too
        except OSError:
            # Nothing in it was acknowledged: remove it, so the next try can create it anew.
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._fd = fd
        self._current = _Segment(start, path, start)
        self._end = start + len(MAGIC) + len(header)

    # ------------------------------------------------------------------ loader thread

    def release(self, loaded: int) -> None:
        """Delete closed segments whose every record is loaded."""
        with self._lock:
            done = [s for s in self._closed if s.end <= loaded]
            self._closed = [s for s in self._closed if s.end > loaded]
        for segment in done:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
        if done:
            _fsync_directory(self.directory)

    def disk_bytes(self) -> int:
        with self._lock:
            closed = sum(s.end - s.start for s in self._closed)
        current = self._current
        return closed + (self._end - current.start if current is not None else 0)

    def segments(self) -> int:
        with self._lock:
            return len(self._closed) + (self._current is not None)

    def close(self, loaded: int) -> None:
        """Close the current segment; with everything loaded, remove every segment."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._current is not None:
            with self._lock:
                self._closed.append(_Segment(self._current.start, self._current.path, self._end))
            self._current = None
        self.release(loaded)


# --------------------------------------------------------------------------- loading


@dataclass(slots=True)
class _Batch:
    """A journaled record waiting for the loader."""

    payload: bytes
    """The record as journaled: MessagePack ``[parts, duplicate flags]``."""
    count: int
    orders: list[tuple[str, str, int]]
    end: int
    journaled_at: float
    messages: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """Message ids of the rows, pending until loaded (empty at replay: nothing is pending
    before the server answers)."""
    value_rows: int = 0
    """Rows journaled as value lists (not Arrow): what making the load's table costs."""


TableBuilder = Callable[[list[bytes]], pa.Table]
"""Journal record payloads to the batch ``load_journaled`` takes (in this process, or in
an ingest worker process)."""


WORKER_LOAD_MIN_ROWS = 2048
"""Fewer rows as value lists in a load are made Arrow here, not sent to a worker."""
TABLE_CHUNK_ROWS = 4096
"""Rows turned into Arrow at a time: a load's rows as Python objects at once would take
hundreds of MiB at 50,000 rows; in chunks the peak stays a few MiB over the table."""


def journal_table(payloads: list[bytes]) -> pa.Table:
    """The rows of journal record payloads (today's format) as one Arrow table: the batch
    the DuckDB store's ``load_journaled`` takes. An Arrow part is taken as it is; rows
    are made Arrow in chunks."""
    tables: list[pa.Table] = []
    rows: list[Sequence[Any]] = []
    duplicates: list[bool] = []

    def flush() -> None:
        if rows:
            tables.append(rows_table(dict(zip(FIELDS, zip(*rows, strict=True), strict=True))))
            rows.clear()

    for payload in payloads:
        parts, flags = _decoder.decode(payload)
        duplicates.extend(flags)
        for part in parts:
            if isinstance(part, bytes):
                flush()
                tables.append(read_ipc(part))
            else:
                rows.extend(part)
                if len(rows) >= TABLE_CHUNK_ROWS:
                    flush()
    flush()
    if not tables:
        return with_duplicates(rows_table({}), [])
    # One chunk per column: DuckDB inserts 500-row chunks (a request's Arrow part each)
    # at about a microsecond more per row than the copy costs.
    table = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
    return with_duplicates(table, duplicates)


def _part_values(part: list[Sequence[Any]] | bytes) -> Sequence[Sequence[Any]]:
    """A record part's rows as value lists in ``FIELDS`` order."""
    return table_values(read_ipc(part)) if isinstance(part, bytes) else part


def _orders_of(
    rows: Sequence[Sequence[Any]], duplicates: Sequence[bool]
) -> list[tuple[str, str, int]]:
    """The first purchases of their order numbers, which the ``orders`` table records."""
    return [
        (row[_SITE], row[_ORDER], row[_TS])
        for row, duplicate in zip(rows, duplicates, strict=True)
        if not duplicate and row[_ORDER] is not None and row[_EVENT] == "purchase"
    ]


def _load(
    target: JournalTarget, batches: Sequence[_Batch], build: TableBuilder = journal_table
) -> int:
    """One DuckDB transaction for ``batches``; returns the number of rows."""
    orders = [order for batch in batches for order in batch.orders]
    started = time.perf_counter()
    table = build([batch.payload for batch in batches])
    target.load_journaled(table, orders, batches[-1].end)
    LOAD_SECONDS.observe(time.perf_counter() - started)
    rows: int = table.num_rows
    LOAD_BATCH.observe(rows)
    return rows


def _replay(journal: Journal, target: JournalTarget, load_max_events: int) -> int:
    """Load every journaled record after the database's position; returns the events."""
    loaded = target.journal_position()
    pending: list[_Batch] = []
    count = 0
    total = 0
    for record in journal.recover(loaded):
        pending.append(
            _Batch(
                record.payload,
                len(record.rows),
                _orders_of(record.rows, record.duplicates),
                record.end,
                0.0,
            )
        )
        count += len(record.rows)
        if count >= load_max_events:
            total += _load(target, pending)
            pending, count = [], 0
    if pending:
        total += _load(target, pending)
    if total:
        REPLAYED.inc(total)
        log.warning(
            "journal replayed: acknowledged events not yet in the database are loaded now",
            extra={"events": total, "from_position": loaded, "to_position": journal.end},
        )
    journal.release(max(loaded, journal.end))
    return total


def journal_directory(settings: Settings) -> Path | None:
    """The journal beside the DuckDB file (or ``journal_dir``); None for in-memory stores."""
    if settings.journal_dir:
        return Path(settings.journal_dir)
    database = settings.database
    if database == ":memory:" or database.startswith(("postgresql://", "postgres://")):
        return None
    return Path(database + ".journal")


def replay_pending(store: Store, settings: Settings) -> int:
    """Load what a crashed server left in the journal, for anything that opens the database
    without the journal writer (CLI commands, the server in direct mode). Returns events."""
    directory = journal_directory(settings)
    if directory is None or not directory.is_dir() or not isinstance(store, JournalTarget):
        return 0
    journal = Journal(directory, settings.journal_segment_mb << 20)
    events = _replay(journal, store, settings.journal_load_max_events)
    journal.close(journal.end)
    return events


MESSAGE_ID_FILTER_ITEMS = 10_000_000
"""Message ids the filter holds at a 1 % false-positive rate in a fixed 11.4 MiB. More ids
only raise that rate: each false positive costs a database lookup, never a wrong answer."""


def message_id_filter(keys: Iterable[tuple[str, str]]) -> Bloom:
    """A Bloom filter of (site_id, message_id) pairs: no false negatives, so an id it lacks
    is certainly new; its memory is fixed, where a set of the ids grew with every message
    kept for message_id_days."""
    seen = Bloom(MESSAGE_ID_FILTER_ITEMS, 0.01)
    seen.update(keys)
    return seen


class JournalCommitter(GroupCommitter):
    """Group commit into the journal, with a loader thread that fills DuckDB from it.

    A 200 means the group's record is synced to the journal. Purchase de-duplication is
    decided here, in the writer thread (one process holds a DuckDB file, so it is the only
    writer): an order is a repeat if an earlier journaled record that is not loaded yet
    has it, or the ``orders`` table has it.
    """

    mode = "journal"

    def __init__(
        self,
        store: Store,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        load_interval_seconds: float = 1.0,
        load_max_events: int = 50_000,
        max_events: int = 5_000,
        queue_limit: int = 100_000,
        linger_seconds: float = 0.0,
        tables: TableBuilder = journal_table,
    ) -> None:
        super().__init__(store, max_events, queue_limit, linger_seconds)
        self._tables = tables
        if not isinstance(store, JournalTarget):
            raise TypeError(f"the {store.backend} store cannot be loaded from a journal")
        self._target: JournalTarget = store
        self._journal = Journal(directory, segment_bytes)
        self._interval = load_interval_seconds
        self._load_max = load_max_events
        self._load_cond = threading.Condition()
        self._ready: deque[_Batch] = deque()
        self._ready_events = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._urgent = False
        self._writer_done = False
        self._loader_idle = False
        self._last_load = 0.0
        self._orders_pending: set[tuple[str, str]] = set()
        """Orders journaled but not loaded yet; the loader removes them after its commit."""
        self._messages_pending: set[tuple[str, str]] = set()
        """Message ids journaled but not loaded yet, likewise."""
        self._loader: threading.Thread | None = None
        # Replay before serving: the database then holds every acknowledged event.
        self.replayed = _replay(self._journal, self._target, load_max_events)
        self._journaled = self._loaded = self._journal.end
        self._seen_ids = message_id_filter(self._target.message_keys())
        """Every message id stored or journaled (and some forgotten since), in a Bloom filter:
        an id it does not hold is new without asking the database, whose lookup scans its
        whole table (50 ms a group at a million ids). Written by the writer thread."""
        self._rebuild_ids = False

    def start(self) -> None:
        super().start()
        self._loader = threading.Thread(target=self._load_loop, name="footfall-loader", daemon=True)
        self._loader.start()
        JOURNAL_UNLOADED.set_function(lambda: self._ready_events)
        JOURNAL_LAG.set_function(self.load_lag)
        JOURNAL_BYTES.set_function(self._journal.disk_bytes)

    def backlog(self) -> int:
        return self.queued_events + self._ready_events

    def load_lag(self) -> float:
        """Seconds the oldest journaled-but-unloaded group has waited."""
        ready = self._ready
        try:
            oldest = ready[0].journaled_at
        except IndexError:
            return 0.0
        return max(0.0, time.time() - oldest)

    def health(self) -> dict[str, Any]:
        return {
            **super().health(),
            "unloaded_events": self._ready_events,
            "journaled_position": self._journaled,
            "loaded_position": self._loaded,
            "load_lag_seconds": round(self.load_lag(), 3),
            "journal_segments": self._journal.segments(),
            "journal_bytes": self._journal.disk_bytes(),
        }

    async def settled(self, timeout: float = 30.0) -> None:
        """Return once every event acknowledged before this call is loaded into DuckDB.

        A waiting reader makes the loader load at once instead of at its next interval.
        """
        target = self._journaled
        loop = self.loop
        if self._loaded >= target or loop is None:
            return
        future: asyncio.Future[None] = loop.create_future()
        with self._load_cond:
            if self._loaded >= target:
                return
            self._waiters.append((target, future))
            self._urgent = True
            self._load_cond.notify()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            log.warning(
                "reading before every acknowledged event is loaded: the loader is behind",
                extra={"unloaded_events": self._ready_events},
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Journal what is queued, load everything, then remove the loaded journal."""
        deadline = time.monotonic() + timeout
        super().stop(timeout)
        with self._load_cond:
            self._writer_done = True
            self._load_cond.notify()
        if self._loader is not None:
            self._loader.join(max(0.0, deadline - time.monotonic()))
            if self._loader.is_alive():
                log.error(
                    "journal not fully loaded at shutdown; the rest is replayed at next start",
                    extra={"unloaded_events": self._ready_events},
                )
                return
        self._journal.close(self._loaded)

    def forget_old_message_ids(self) -> None:
        """Old message ids were deleted: the writer rebuilds its filter before its next
        group, so forgotten ids stop costing database lookups."""
        self._rebuild_ids = True

    # ------------------------------------------------------------------ writer thread

    def _rebuild_id_filter(self) -> None:
        # Pending ids first, then the database: an id the loader moves in between is in the
        # database by the time it leaves the pending set.
        with self._load_cond:
            pending = list(self._messages_pending)
        rebuilt = message_id_filter(self._target.message_keys())
        rebuilt.update(pending)
        self._seen_ids = rebuilt

    def write_group(self, group: list[Pending]) -> list[Outcome]:
        if self._rebuild_ids:
            self._rebuild_ids = False
            try:
                self._rebuild_id_filter()
            except Exception:  # keep the old filter: a superset, so still exact
                log.exception("rebuilding the message id filter failed")
        started = time.perf_counter()
        good_end = self._journal.end
        repeated: list[bool] | None = None
        try:
            # Rows validated in this process are encoded here; a worker's come encoded.
            parts = [
                rows if isinstance(rows, EncodedRows) else encode_rows(rows) for rows, _ in group
            ]
            messages = [(site, message) for part in parts for _, site, message in part.messages]
            repeats = self._repeated_messages(messages) if messages else None
            if repeats is not None:  # the rare group re-sending a message: row by row
                rows = [row for part in parts for row in part.rows()]
                repeated, kept, fresh_ids = split_repeated_messages(rows, repeats)
                if not kept:  # every one a re-sent message: nothing to write
                    return split_flags(group, merge_flags(repeated, []))
                parts = [encode_rows(kept)]
                messages = [(site, message) for site, message, _ in fresh_ids]
            count = 0
            wanted: list[tuple[int, tuple[str, str], int]] = []
            events: collections.Counter[str] = collections.Counter()
            for part in parts:
                wanted.extend((count + i, (site, order), ts) for i, site, order, ts in part.orders)
                events.update(part.events)
                count += part.count
            duplicates, fresh = self._duplicates(count, wanted)
            payload = b"".join(
                (
                    b"\x92",  # [parts, duplicate flags]
                    array_header(len(parts)),
                    *(part.journal_part() for part in parts),
                    _encoder.encode(duplicates),
                )
            )
            end = self._journal.append(payload)  # durable on return
        except Exception as exc:
            COMMIT_FAILURES.inc()
            log.exception("journal write failed; the group is answered 503")
            if isinstance(exc, OSError):
                self._journal.abandon_tail(good_end)
            if len(group) > 1 and not isinstance(exc, OSError):  # one bad request fails alone
                return [self.write_group([item])[0] for item in group]
            error = ApiError(503, UNAVAILABLE, f"events could not be stored: {type(exc).__name__}")
            return [error] * len(group)
        record_group(count, events, started)
        self._orders_pending.update((site, order) for site, order, _ in fresh)
        self._messages_pending.update(messages)
        self._seen_ids.update(messages)
        value_rows = sum(part.count for part in parts if not part.arrow)
        batch = _Batch(payload, count, fresh, end, time.time(), messages, value_rows)
        with self._load_cond:
            self._ready.append(batch)
            self._ready_events += count
            self._journaled = end
            # Wake the loader only if it sleeps with nothing to do (or must load now): one
            # waiting for its interval would just wake, look and sleep again, per group.
            if self._loader_idle or self._ready_events >= self._load_max:
                self._load_cond.notify()
        if repeated is None:  # nothing dropped: the order flags say all
            return split_flags(group, duplicates)
        return split_flags(group, merge_flags(repeated, duplicates))

    def _repeated_messages(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]] | None:
        """None when every (site_id, message_id) is new (the common case), else the ids
        already loaded or journaled and pending: rows repeating them, or an id earlier in
        the group, are dropped. One writer thread decides, so concurrent requests cannot
        both store one message."""
        # The pending set first, then the database: the loader drops an id from the set
        # only after its commit, so an id is always in one of them.
        pending = self._messages_pending.intersection(keys)
        seen = self._seen_ids
        maybe = [key for key in keys if key not in pending and key in seen]
        known = self._target.known_messages(maybe) if maybe else set()
        if not pending and not known and len(set(keys)) == len(keys):
            return None
        return pending | known

    def _duplicates(
        self, count: int, wanted: list[tuple[int, tuple[str, str], int]]
    ) -> tuple[list[bool], list[tuple[str, str, int]]]:
        """Flags per row of ``count``, given its purchases with an order number (row
        index, (site, number), time); and the orders seen here first (site, number, time)."""
        flags = [False] * count
        if not wanted:
            return flags, []
        # Look at the unloaded orders once, before asking the database: the loader drops an
        # order from that set only after its commit, so an order is always in one of them.
        pending = {key for _, key, _ in wanted if key in self._orders_pending}
        unknown = sorted({key for _, key, _ in wanted} - pending)
        known = self._target.known_orders(unknown) if unknown else set()
        seen = pending | known
        fresh: list[tuple[str, str, int]] = []
        for i, key, ts in wanted:
            if key in seen:
                flags[i] = True
            else:
                seen.add(key)
                fresh.append((key[0], key[1], ts))
        return flags, fresh

    # ------------------------------------------------------------------ loader thread

    def _load_loop(self) -> None:
        while True:
            try:
                batches = self._next_load()
                if batches is None or not self._load_with_retry(batches):
                    return
            except Exception:  # a bug here must not stop loading for good
                log.exception("journal loader failed; it carries on in a second")
                time.sleep(1.0)

    def _next_load(self) -> list[_Batch] | None:
        """Wait until a load is due; the batches it takes stay counted until loaded."""
        with self._load_cond:
            while True:
                if self._ready:
                    if self._urgent or self._writer_done or self._ready_events >= self._load_max:
                        break
                    wait = self._last_load + self._interval - time.monotonic()
                    if wait <= 0:
                        break  # idle until now: load at once
                    self._load_cond.wait(wait)
                elif self._writer_done:
                    return None
                else:
                    self._loader_idle = True
                    self._load_cond.wait()
                    self._loader_idle = False
            taken: list[_Batch] = []
            count = 0
            for batch in islice(self._ready, len(self._ready)):
                if taken and count + batch.count > self._load_max:
                    break
                taken.append(batch)
                count += batch.count
            self._last_load = time.monotonic()
            return taken

    def _load_with_retry(self, batches: list[_Batch]) -> bool:
        """Load until it works (the events are safe in the journal meanwhile)."""
        delay = 0.05
        while True:
            try:
                # Arrow parts go to DuckDB as they are: a worker pays only for value lists.
                value_rows = sum(batch.value_rows for batch in batches)
                build = self._tables if value_rows >= WORKER_LOAD_MIN_ROWS else journal_table
                count = _load(self._target, batches, build)
                break
            except Exception:
                LOAD_FAILURES.inc()
                log.exception("loading journaled events into DuckDB failed; retrying")
                with self._load_cond:
                    if self._writer_done:
                        return False  # shutting down: replay at next start loads them
                    self._load_cond.wait(delay)
                delay = min(delay * 2, 5.0)
        end = batches[-1].end
        with self._load_cond:
            for _ in batches:
                self._ready.popleft()
            self._ready_events -= count
            self._loaded = end
            for batch in batches:
                self._orders_pending.difference_update((s, o) for s, o, _ in batch.orders)
                self._messages_pending.difference_update(batch.messages)
            due = [future for target, future in self._waiters if target <= end]
            self._waiters = [(t, f) for t, f in self._waiters if t > end]
            self._urgent = bool(self._waiters)
        if due and self.loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                self.loop.call_soon_threadsafe(_wake, due)
        self._journal.release(end)
        return True


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
