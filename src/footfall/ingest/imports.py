"""``footfall import``'s reading side: newline-delimited JSON (Segment's format, as its and
RudderStack's archives and warehouse exports write it, or the tracking API's format) to
event rows and identity calls, through the same validation and mapping as the API.

Idempotent: a Segment line's ``messageId`` (a tracking line's ``messageId`` if it has one)
is its message id; a line without one gets ``import:`` + the first 24 hex digits of the
SHA-256 of the line + ``:`` + how many identical lines came before it in the file, so
running the same file again stores nothing new (the store drops repeated message ids).
Gzipped files (``.gz`` archives) are read as they are.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
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


def open_lines(path: Path) -> IO[bytes]:
    """The file's bytes, inflated when it is gzip (by its magic number, not its name)."""
    handle = path.open("rb")
    if handle.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


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

    def read(self, lines: Iterator[tuple[int, bytes]], chunk: Chunk) -> None:
        received = now_us()
        envelope = Envelope(site_id=self.site_id, received_us=received)
        context = RequestContext(site_id=self.site_id, now_us=received)
        numbered: list[tuple[int, bytes]] = []
        for number, raw in lines:
            chunk.lines += 1
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


def line_chunks(handle: IO[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    """The file's lines, numbered from 1, ``size`` at a time."""
    numbered = enumerate(handle, 1)
    while chunk := list(islice(numbered, size)):
        yield chunk
