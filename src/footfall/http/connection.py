"""The HTTP connection under the app: uvicorn's httptools protocol with deadlines for headers
and bodies, a bound on open connections, and the JSON error shape for what the parser refuses.

uvicorn has no header or body read timeout (a request whose body never finishes was held
forever), answers parser errors in plain text, and its ``limit_concurrency`` counts idle
keep-alive connections like busy ones. Here every connection records its phase and since
when it is in it; one sweep per server enforces the deadlines, so a request pays for a few
attribute writes, not for timers.

Phases: ``IDLE`` (no request under way), ``HEAD`` (headers arriving), ``BODY`` (headers
read, body arriving), ``BUSY`` (request read, the app answers), ``CLOSING`` (an error was
answered; what the client still sends is read and dropped until it closes, at most
``LINGER_SECONDS``, so it reads the answer instead of a connection reset).

A failure before the headers are complete is answered here; one after them (the body
stalls, breaks the chunked framing or ends early) is raised from the app's ``receive``, so
the app answers it like any other error (JSON, CORS for allowed origins, counted in
/metrics), and the connection closes after that answer.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from prometheus_client import Counter, Gauge
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from footfall.config import Settings
from footfall.errors import (
    BAD_REQUEST,
    HEADERS_TOO_LARGE,
    REQUEST_TIMEOUT,
    UNAVAILABLE,
    URI_TOO_LONG,
    ApiError,
    flat_errors,
)
from footfall.http.middleware import HTTP_RESPONSES

log = logging.getLogger("footfall.api")

IDLE, HEAD, BODY, BUSY, CLOSING = range(5)
LINGER_SECONDS = 2.0
RESERVED_FILES = 256
"""File descriptors kept for everything but connections (store, journal, logs)."""

OPEN_CONNECTIONS = Gauge("footfall_http_connections_open", "Open HTTP connections")
CUT_CONNECTIONS = Counter(
    "footfall_http_connections_cut_total",
    "Connections the server closed before their client was done, by reason",
    ["reason"],
)


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_url_bytes: int
    max_header_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
            settings.max_connections,
            settings.max_url_bytes,
            settings.max_header_bytes,
        )


class ConnectionTable:
    """The open connections of one server, and the sweep that holds them to their deadlines."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: dict[GuardedProtocol, None] = {}
        # A deadline is enforced within a quarter of the shorter timeout (at most a second).
        self.interval = min(max(min(limits.header_timeout, limits.body_timeout) / 4, 0.05), 1.0)
        self._sweep: asyncio.TimerHandle | None = None

    def admit(self, conn: GuardedProtocol) -> bool:
        """Take a new connection; at the limit, the one waiting longest for its client makes
        room. False: every connection is busy in the app, the newcomer is to be refused."""
        room = len(self.open) < self.limits.max_connections
        if not room:
            victim = min(self.open, key=GuardedProtocol.waiting_rank, default=None)
            if victim is not None and victim.waiting_rank() < _NOT_WAITING:
                del self.open[victim]
                victim.make_room()
                room = True
        self.open[conn] = None
        OPEN_CONNECTIONS.set(len(self.open))
        if self._sweep is None:
            self._sweep = conn.loop.call_later(self.interval, self._tick, conn.loop)
        return room

    def leave(self, conn: GuardedProtocol) -> None:
        self.open.pop(conn, None)
        OPEN_CONNECTIONS.set(len(self.open))

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        for conn in list(self.open):
            conn.check_deadline(now)
        if self.open:
            self._sweep = loop.call_later(self.interval, self._tick, loop)


_NOT_WAITING = (9, 0.0)
_WAITING_ORDER = {CLOSING: 0, IDLE: 1, HEAD: 2, BODY: 2}
"""Who makes room first: connections already closing, then idle ones, then requests whose
client stalls (the longest waiting first); a request the app is answering never."""


class StoppableCycle(RequestResponseCycle):
    """uvicorn's request cycle whose ``receive`` raises the error that stopped the request
    (its body stalled, broke its framing or ended early), for the app to answer."""

    stopped_by: ApiError | None = None

    async def receive(self) -> Any:
        if self.stopped_by is None:
            message = await super().receive()
            if self.stopped_by is None:
                return message
        raise self.stopped_by


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, the connection bound and JSON errors."""

    table: ClassVar[ConnectionTable]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = self.table.limits
        self.phase = IDLE
        self.since = 0.0
        self.head_bytes = 0
        """Bytes received since the last request's headers ended, outside bodies."""
        self.url = b""
        self.discarding = False
        """The connection closes after the current answer: what arrives is dropped."""

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.since = self.loop.time()
        if not self.table.admit(self):
            CUT_CONNECTIONS.labels("over_capacity").inc()
            self.answer_and_close(
                ApiError(
                    503,
                    UNAVAILABLE,
                    f"the server is at its limit of {self.limits.max_connections} open "
                    "connections, all of them busy; retry",
                )
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.table.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        self._unset_keepalive_if_required()
        before = self.phase
        if before != BODY:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switch here (no WebSockets): the request is answered as plain
            # HTTP, and the connection closes after it.
            if self.cycle is not None:
                self.cycle.keep_alive = False
            self.discarding = True
            return
        except httptools.HttpParserError as exc:
            self.fail(self.parser_error(exc, data, before))
            return
        if self.phase != BODY and self.head_bytes - len(self.url) > self.limits.max_header_bytes:
            self.refuse_request(
                ApiError(
                    431,
                    HEADERS_TOO_LARGE,
                    f"the request headers are larger than {self.limits.max_header_bytes} bytes",
                )
            )

    def eof_received(self) -> bool:  # type: ignore[override]
        """The client closed its sending side: answer what can still be answered."""
        phase = self.phase
        if phase == HEAD:
            self.refuse_request(
                ApiError(
                    400,
                    BAD_REQUEST,
                    "the client closed its side of the connection before the request headers ended",
                )
            )
            return False
        if phase == BODY:
            self.stop_request(
                ApiError(
                    400,
                    BAD_REQUEST,
                    "the request body ended early: the client closed its side of the "
                    "connection before sending all of it",
                )
            )
            return not self.transport.is_closing()
        if phase == BUSY and self.cycle is not None:
            self.cycle.keep_alive = False  # answer, then close
            return True
        return False

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = HEAD
        self.since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            raise ApiError(
                414,
                URI_TOO_LONG,
                f"the request target (path and query string) is longer than "
                f"{self.limits.max_url_bytes} bytes",
            )

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        self.phase = BODY
        self.since = self.loop.time()
        self.head_bytes = 0
        cycle = self.cycle
        if cycle is not previous:
            # The same object with a ``receive`` that can be stopped; the app's task has not
            # started yet, so that is the one it gets. (A closure set on the cycle instead
            # made every request a reference cycle: garbage only the collector frees.)
            cycle.__class__ = StoppableCycle

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle.response_complete and not self.pipeline:  # answered before the body ended
            self.phase = IDLE
            self.since = self.loop.time()
        else:
            self.phase = BUSY

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.phase == BUSY and self.cycle.response_complete:  # nothing pipelined
            self.phase = IDLE
            self.since = self.loop.time()

    def shutdown(self) -> None:
        """Graceful shutdown: a request still waiting for its client is answered 503 at once
        instead of holding the shutdown until its deadline."""
        if self.phase in (HEAD, BODY):
            self.fail(ApiError(503, UNAVAILABLE, "the server is shutting down; retry"))
        super().shutdown()

    # ------------------------------------------------------------------ deadlines and room

    def waiting_rank(self) -> tuple[int, float]:
        """Lower makes room sooner: see ``_WAITING_ORDER``."""
        order = _WAITING_ORDER.get(self.phase)
        return _NOT_WAITING if order is None else (order, self.since)

    def make_room(self) -> None:
        """Closed so that a new connection fits in the bound."""
        if self.phase in (IDLE, CLOSING):
            self.transport.close()
            return
        CUT_CONNECTIONS.labels("made_room").inc()
        error = ApiError(
            503,
            UNAVAILABLE,
            f"the server is at its limit of {self.limits.max_connections} open connections, "
            "and this request waited longest for its client; retry",
        )
        self.fail(error)
        if self.phase == CLOSING:  # answered here: no lingering, the room is needed now
            self.transport.close()
        else:  # the app answers it, then the connection closes (at the latest, then)
            self.loop.call_later(self.limits.body_timeout, self.transport.close)

    def check_deadline(self, now: float) -> None:
        waited, phase, limits = now - self.since, self.phase, self.limits
        if (phase == IDLE and waited > limits.header_timeout) or (
            phase == CLOSING and waited > LINGER_SECONDS
        ):
            self.transport.close()  # no request under way, or already answered: no answer
        elif phase == HEAD and waited > limits.header_timeout:
            self.time_out("header", f"headers did not arrive within {limits.header_timeout:g} s")
        elif phase == BODY and waited > limits.body_timeout:
            self.time_out(
                "body", f"body did not arrive within {limits.body_timeout:g} s of its headers"
            )

    def time_out(self, part: str, what: str) -> None:
        CUT_CONNECTIONS.labels(f"{part}_timeout").inc()
        self.fail(ApiError(408, REQUEST_TIMEOUT, f"the request {what}"))

    # ------------------------------------------------------------------ answers

    def fail(self, error: ApiError) -> None:
        """Stop the request under way with ``error``: answered here while its headers are
        arriving, by the app once it has them."""
        if self.phase == BODY:
            self.stop_request(error)
        else:
            self.refuse_request(error)

    def parser_error(self, exc: httptools.HttpParserError, data: bytes, before: int) -> ApiError:
        """The parser's finding in words, or the limit a callback enforced."""
        cause = exc.__context__
        if isinstance(cause, ApiError):
            return cause
        if before == IDLE and data[:1] == b"\x16":
            said = "a TLS handshake arrived on this plain-HTTP port (use http://, or TLS in front)"
        elif data.startswith(b"PRI * HTTP/2") or "PRI/Upgrade" in str(exc):
            said = "HTTP/2 without TLS (prior knowledge) is not served here; use HTTP/1.1"
        elif isinstance(cause, UnicodeDecodeError):
            said = "the request target holds bytes that are not ASCII (percent-encode them)"
        elif cause is not None:
            said = str(cause)
        else:
            said = str(exc)
        where = "request body" if self.phase == BODY else "HTTP request"
        return ApiError(400, BAD_REQUEST, f"invalid {where}: {said}")

    def refuse_request(self, error: ApiError) -> None:
        """An error before the app has the request: answered here, unless the answer to an
        earlier (pipelined) request is still on its way; then the connection closes after
        that one."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            self.discarding = True
            self.phase = BUSY
            return
        self.answer_and_close(error)

    def stop_request(self, error: ApiError) -> None:
        """An error once the app has the request: its ``receive`` raises it, so the app
        answers; a request it has already answered has its connection closed."""
        cycle = self.cycle
        self.discarding = True
        self.phase = BUSY
        if cycle.response_complete:
            self.transport.close()
            return
        cycle.keep_alive = False
        if not cycle.response_started and isinstance(cycle, StoppableCycle):
            cycle.stopped_by = error
            cycle.message_event.set()

    def answer_and_close(self, error: ApiError) -> None:
        """Write the error in the JSON shape, stop sending, and linger for the client to
        read it (closing at once would reset the connection under unread data)."""
        transport = self.transport
        self.phase = CLOSING
        self.since = self.loop.time()
        self.discarding = True
        if transport.is_closing():
            return
        body = error.encode(flat_errors(self.url))  # as the route would have answered
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n" % len(body))
        if error.status == 503:
            head.append(b"retry-after: 1\r\n")
        head.append(b"\r\n")
        transport.write(b"".join([*head, body]))
        HTTP_RESPONSES.labels("other", str(error.status)).inc()
        self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()


def protocol_class(settings: Settings) -> type[GuardedProtocol]:
    """The protocol for one server: its connections share one table."""
    table = ConnectionTable(Limits.of(settings))

    class FootfallHttpProtocol(GuardedProtocol):
        pass

    FootfallHttpProtocol.table = table
    return FootfallHttpProtocol


def raise_open_file_limit(max_connections: int) -> None:
    """Let the process open enough files for ``max_connections`` (raising the soft limit up
    to the hard one), or say at start-up how many it can."""
    wanted = max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "the open-file limit is below what max_connections needs",
            extra={"max_connections": max_connections, "open_file_limit": target},
        )
