"""``footfall import``'s reading side: newline-delimited JSON (Segment's format, as its and
RudderStack's archives and warehouse exports write it, or the tracking API's format) to
event rows and identity calls, through the same validation and mapping as the API.

Idempotent: a Segment line's ``messageId`` (a tracking line's ``messageId`` if it has one)
is its message id; a line without one gets ``import:`` + the first 24 hex digits of the
SHA-256 of the line + ``:`` + how many identical lines came before it in the file, so
running the same file again stores nothing new (the store drops repeated message ids).
Gzipped files (``.gz`` archives) are read as they are.

Hostile or damaged files (``LineFile``): a leading UTF-8 byte-order mark is dropped; a line
longer than any message may be is skipped as it is read, never held whole; a gzip file that
is cut short or turns into something else keeps the lines before the damage and says where.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import msgspec
from msgspec import UNSET

from footfall.errors import ApiError
from footfall.ingest.segment import (
    MAX_MESSAGE_BYTES,
    TYPES,
    Envelope,
    IdentityCall,
    archived_time,
    fast_message_decoder,
    fast_message_row,
    iso_time,
    map_message,
)
from footfall.ingest.validate import (
    MAX_PAYLOAD_BYTES,
    RequestContext,
    decode_items,
    fast_decode,
    now_us,
    validate_event,
)
from footfall.store.base import EventRow

FORMATS = ("auto", "segment", "tracking")
_decoder = msgspec.json.Decoder()

MAX_LINE_BYTES = max(MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES)
"""The longest line worth reading (the largest message either format allows): a longer one
is skipped as it is read, its bytes dropped as they come."""
READ_BYTES = 1024 * 1024
"""A file is read this much at a time."""
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class Reject:
    line: int
    message: str


@dataclass(slots=True)
class Chunk:
    """What a run of lines became: rows (each with its line), identity calls, rejects."""

    rows: list[EventRow] = field(default_factory=list)
    row_lines: list[int] = field(default_factory=list)
    calls: list[IdentityCall] = field(default_factory=list)
    messages: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    """``--server``: (line, route kind ``segment`` or ``tracking``, body to send)."""
    rejects: list[Reject] = field(default_factory=list)
    lines: int = 0
    bytes_read: int = 0


Line = bytes | None
"""A line without its line feed, or None for one longer than ``MAX_LINE_BYTES`` (skipped)."""


class LineSplitter:
    """The lines of bytes fed a block at a time. A line longer than ``limit`` comes out as
    None and its bytes are dropped as they arrive, so at most ``limit`` bytes of a line are
    held between blocks, however long it is. ``start``: the stream is a file's start, where
    a UTF-8 byte-order mark (some Windows tools write one) is no part of line 1."""

    def __init__(self, limit: int = MAX_LINE_BYTES, *, start: bool = True) -> None:
        self.limit = limit
        self._pending: list[bytes] = []
        self._held = 0
        self._skipping = False
        self._bom = start
        self._head = b""  # the file's first bytes, while too few to tell a mark

    def feed(self, block: bytes) -> list[Line]:
        if self._bom:
            block = self._head + block
            if len(block) < len(BOM) and BOM.startswith(block):
                self._head = block
                return []
            self._bom = False
            self._head = b""
            if block.startswith(BOM):
                block = block[len(BOM) :]
        out: list[Line] = []
        first = block.find(b"\n")
        if first < 0:
            self._hold(block)
            return out
        start = 0
        if self._pending or self._skipping:
            out.append(self._end(block[:first]))
            start = first + 1
        last = block.rfind(b"\n")
        if last >= start:
            pieces = block[start:last].split(b"\n")
            # (no line can be too long in a span no longer than the limit)
            if last - start > self.limit and max(map(len, pieces)) > self.limit:
                out.extend(None if len(piece) > self.limit else piece for piece in pieces)
            else:
                out.extend(pieces)
        self._hold(block[last + 1 :])
        return out

    def finish(self) -> list[Line]:
        """The last line, when the stream does not end with a line feed."""
        if self._head:  # a stream shorter than a mark, and the start of one
            self._bom = False
            self._hold(self._head)
        if not self._pending and not self._skipping:
            return []
        return [self._end(b"")]

    def _hold(self, piece: bytes) -> None:
        if self._skipping or not piece:
            return
        if self._held + len(piece) > self.limit:
            self._pending.clear()
            self._held = 0
            self._skipping = True
        else:
            self._pending.append(piece)
            self._held += len(piece)

    def _end(self, piece: bytes) -> Line:
        """The line the held bytes begin, ``piece`` its end."""
        too_long = self._skipping or self._held + len(piece) > self.limit
        line = None if too_long else b"".join([*self._pending, piece])
        self._pending.clear()
        self._held = 0
        self._skipping = False
        return line


class _Inflater:
    """gzip members one after another (as ``gzip`` reads them, zero padding after a member
    allowed), inflated a bounded step at a time. On damage it stops instead of raising and
    keeps what went wrong: ``cut`` (the file ends inside a member) or ``invalid`` (the offset
    of the byte zlib refused, and its reason)."""

    STEP = 16 * 1024
    """Compressed bytes handed to zlib at a time: a damaged step is at most this long."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fresh = True  # between members: the file may end here
        self._input = b""
        self._used = 0  # bytes of the file that inflated cleanly
        self._done = False
        self.cut = False
        self.invalid: tuple[int, str] | None = None

    def read(self, size: int) -> bytes:
        """Up to ``size`` inflated bytes (fewer only at the end or at damage)."""
        parts: list[bytes] = []
        got = 0
        while got < size and not self._done:
            if not self._input:
                self._input = self._handle.read(self.STEP)
                if not self._input:
                    self._done = True
                    self.cut = not self._fresh
                    break
            if self._fresh and self._input[0] == 0:  # padding after a member
                rest = self._input.lstrip(b"\0")
                self._used += len(self._input) - len(rest)
                self._input = rest
                continue
            given = self._input
            before = self._inflater.copy()  # (cheap: a few µs against a step's 100)
            try:
                part = self._inflater.decompress(given, size - got)
            except zlib.error:
                part, at, reason = _salvage(before, given)
                parts.append(part)
                self.invalid = (self._used + at, reason)
                self._done = True
                break
            self._fresh = False
            self._input = self._inflater.unconsumed_tail
            self._used += len(given) - len(self._input)
            if self._inflater.eof:  # the member's end: another may follow
                self._used -= len(self._inflater.unused_data)
                self._input = self._inflater.unused_data + self._input
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._fresh = True
            parts.append(part)
            got += len(part)
        return b"".join(parts)


def _salvage(inflater: Any, data: bytes) -> tuple[bytes, int, str]:
    """What ``data`` inflates to before the byte zlib refuses, that byte's offset in it and
    zlib's reason: fed a byte at a time, once, when a step failed. (Its output is less than
    the step's room: zlib stops at the room without reading further, so it never errs past
    it.)"""
    out: list[bytes] = []
    for at in range(len(data)):
        try:
            out.append(inflater.decompress(data[at : at + 1]))
        except zlib.error as exc:
            return b"".join(out), at, str(exc).rpartition(": ")[2]
    return b"".join(out), len(data), "damaged data"  # (not reached: the step failed)


class LineFile:
    """A file's lines (``Line``), read ``READ_BYTES`` at a time, inflated when it is gzip
    (by its magic number, not its name). A damaged gzip file ends with the last whole line
    before the damage (the line it broke in is not one) and ``damage`` says where, so an
    import keeps what was readable, as it does of a plain file."""

    def __init__(self, path: Path, limit: int = MAX_LINE_BYTES) -> None:
        self._handle = path.open("rb")
        zipped = self._handle.peek(2)[:2] == GZIP_MAGIC
        self._inflater = _Inflater(self._handle) if zipped else None
        self.limit = limit
        self.lines = 0
        """Lines given so far."""
        self.damage: str | None = None

    @property
    def position(self) -> int:
        """Bytes of the file read (the compressed file for gzip): for progress."""
        return self._handle.tell()

    def blocks(self, size: int = READ_BYTES) -> Iterator[list[Line]]:
        """The lines, those of some ``size`` bytes (inflated) at a time, read
        ``READ_BYTES`` at a time."""
        splitter = LineSplitter(self.limit)
        read = self._handle.read if self._inflater is None else self._inflater.read
        lines: list[Line] = []
        taken = 0
        while block := read(min(size, READ_BYTES)):
            lines += splitter.feed(block)
            taken += len(block)
            if taken >= size and lines:
                self.lines += len(lines)
                yield lines
                lines, taken = [], 0
        if lines:
            self.lines += len(lines)
            yield lines
        inflater = self._inflater
        if inflater is not None and inflater.invalid is not None:
            offset, reason = inflater.invalid
            self.damage = (
                f"the gzip data is not valid at byte offset {offset} ({reason}), "
                f"after line {self.lines}"
            )
        elif inflater is not None and inflater.cut:
            self.damage = f"the gzip data is cut short after line {self.lines}"
        elif last := splitter.finish():
            self.lines += 1
            yield last

    def __iter__(self) -> Iterator[Line]:
        for lines in self.blocks():
            yield from lines

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> LineFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_lines(path: Path) -> LineFile:
    """The file's lines (see ``LineFile``)."""
    return LineFile(path)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def kind_of(message: Any, wanted: str) -> str:
    """``segment`` or ``tracking`` for one decoded line."""
    if wanted != "auto":
        return wanted
    if isinstance(message, dict) and (
        message.get("type") in TYPES
        or "anonymousId" in message
        or "userId" in message
        or "previousId" in message
    ):
        return "segment"
    return "tracking"


TOO_LONG = f"line is larger than {MAX_LINE_BYTES} bytes (skipped unread)"


class LineReader:
    """Turns lines into rows and calls (``to_rows``) or bodies for a server (otherwise)."""

    def __init__(self, site_id: str, fmt: str = "auto", *, to_rows: bool = True) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.site_id = site_id
        self.format = fmt
        self.to_rows = to_rows
        self._seen: dict[bytes, int] = {}
        self._calls: set[tuple[Any, ...]] = set()
        self.derived: dict[int, tuple[bytes, int]] = {}
        """Line number: (digest, count) of each derived id given, in line order: a reader
        that sees only part of a file tells its caller what to count on from."""

    def derived_id(self, line: bytes, number: int = 0) -> str:
        digest = hashlib.sha256(line).digest()[:12]
        count = self._seen.get(digest, 0)
        self._seen[digest] = count + 1
        self.derived[number] = (digest, count)
        return derived_message_id(digest, count)

    def read(self, lines: Iterator[tuple[int, Line]], chunk: Chunk) -> None:
        received = now_us()
        envelope = Envelope(site_id=self.site_id, received_us=received)
        context = RequestContext(site_id=self.site_id, now_us=received)
        numbered: list[tuple[int, bytes]] = []
        skipped = False
        for number, raw in lines:
            chunk.lines += 1
            if raw is None:  # never read whole (``LineSplitter``)
                chunk.rejects.append(Reject(number, TOO_LONG))
                skipped = True
                continue
            chunk.bytes_read += len(raw)
            line = raw.strip()
            if line:
                numbered.append((number, line))
        texts = [line for _, line in numbered]
        # Segment's track, page and screen lines of the common shape take the fast path
        # (as a batch's messages do); the rest, and each line it refuses, the exact one.
        fast: list[Any] = [None] * len(texts)
        if self.to_rows and self.format != "tracking":
            fast = fast_decode(texts, fast_message_decoder, MAX_MESSAGE_BYTES)
        slow = [line for line, message in zip(texts, fast, strict=True) if message is None]
        # Decoded, and repeated keys ruled out, for all lines at once (as for a batch).
        exact = iter(decode_items(b"".join(slow), slow, b"", MAX_PAYLOAD_BYTES))
        for (number, line), quick in zip(numbered, fast, strict=True):
            if quick is not None:
                derived = None
                if quick.messageId is UNSET or quick.messageId is None:
                    derived = self.derived_id(line, number)
                row = fast_message_row(quick, envelope, derived)
                if row is not None:
                    try:
                        row.ts_us = archived_time(
                            _sent(quick.originalTimestamp),
                            _sent(quick.timestamp),
                            _sent(quick.sentAt),
                            _sent(quick.receivedAt),
                            received,
                        )
                    except ApiError as error:
                        chunk.rejects.append(Reject(number, error.message))
                        continue
                    chunk.rows.append(row)
                    chunk.row_lines.append(number)
                    continue
                message: Any = _decoder.decode(line)  # its keys are proven unique
                if derived is not None:
                    message["messageId"] = derived
            else:
                message = next(exact)
            try:
                if isinstance(message, ApiError):
                    raise message
                self._line(number, line, message, envelope, context, chunk)
            except ApiError as error:
                chunk.rejects.append(Reject(number, error.message))
        if skipped:
            chunk.rejects.sort(key=lambda reject: reject.line)

    def _line(
        self,
        number: int,
        line: bytes,
        message: Any,
        envelope: Envelope,
        context: RequestContext,
        chunk: Chunk,
    ) -> None:
        kind = kind_of(message, self.format)
        limit = MAX_MESSAGE_BYTES if kind == "segment" else MAX_PAYLOAD_BYTES
        if len(line) > limit:
            raise ApiError(400, "ANALYTICS_002", f"line is larger than {limit} bytes")
        if isinstance(message, dict) and message.get("messageId") is None:
            message["messageId"] = self.derived_id(line, number)
        if not self.to_rows:
            if not isinstance(message, dict):
                raise ApiError(400, "ANALYTICS_001", "a line must be a JSON object")
            if kind == "segment":
                _settle_time(message, envelope.received_us)
            chunk.messages.append((number, kind, message))
            return
        if kind == "segment":
            mapped = map_message(message, envelope)
            if mapped.identity is not None:
                key = call_key(mapped.identity)
                if key not in self._calls:  # an export repeats identify calls a lot
                    self._calls.add(key)
                    chunk.calls.append(mapped.identity)
            if mapped.row is not None:
                mapped.row.ts_us = archived_time(*_times(message), envelope.received_us)
                chunk.rows.append(mapped.row)
                chunk.row_lines.append(number)
            return
        row = validate_event(message, context)
        if isinstance(message, dict) and isinstance(message.get("ts"), int | float):
            # An import keeps the line's own time, however old (the API's seven-day window
            # guards against a browser's wrong clock, not against an archive).
            when = message["ts"] * 1000
            if 0 < when <= context.now_us and not isinstance(message["ts"], bool):
                row.ts_us = int(when)
        chunk.rows.append(row)
        chunk.row_lines.append(number)


_TIME_FIELDS = ("originalTimestamp", "timestamp", "sentAt", "receivedAt")


def _sent(value: Any) -> Any:
    return None if value is UNSET else value


def _times(message: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    original, timestamp, sent, received = (message.get(name) for name in _TIME_FIELDS)
    return original, timestamp, sent, received


def _settle_time(message: dict[str, Any], now_us: int) -> None:
    """A line for a server's batch API: its time as the import decides it (``archived_time``)
    in ``timestamp`` alone, which the server keeps as it is (there is no ``sentAt`` to
    correct it by); the server's own arrival time is not the line's."""
    if any(message.get(name) is not None for name in _TIME_FIELDS):
        message["timestamp"] = iso_time(archived_time(*_times(message), now_us))
        for name in ("originalTimestamp", "sentAt"):
            message.pop(name, None)


def derived_message_id(digest: bytes, count: int) -> str:
    """The message id of a line without one: its digest, and how many identical lines
    came before it in the file."""
    return f"import:{digest.hex()}:{count}"


def call_key(call: IdentityCall) -> tuple[Any, ...]:
    """What makes two identity calls the same call (an export repeats them a lot)."""
    return (
        call.kind,
        call.token,
        call.client_id,
        call.email,
        call.previous_id,
        repr(sorted(call.traits.items())),
    )


def line_chunks(lines: Iterable[Line], size: int) -> Iterator[list[tuple[int, Line]]]:
    """The file's lines, numbered from 1, ``size`` at a time."""
    numbered = enumerate(lines, 1)
    while chunk := list(islice(numbered, size)):
        yield chunk
