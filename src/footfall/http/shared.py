"""What every route family shares: the running services, the gate a public call passes,
the headers it is judged by, body reading, CORS and JSON answers.

Every public call passes the same gate, in this order: rate limit (429), site and origin
(422/403), payload size (400 ANALYTICS_002), JSON (400 ANALYTICS_001), field rules (422).
This module imports no route module, so each of them (and the dashboard) can import it.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from footfall.config import Settings
from footfall.errors import (
    FORBIDDEN,
    RATE_LIMITED,
    UNAUTHORIZED,
    UNAVAILABLE,
    ApiError,
    malformed,
    too_large,
)
from footfall.http.identity_turns import IdentityTurns
from footfall.http.ratelimit import ClientAddress, SlidingWindowLimiter, TokenBucketLimiter
from footfall.http.refusals import OriginRefusals
from footfall.identity import IdentityGraph
from footfall.ingest.commit import GroupCommitter
from footfall.ingest.encoded import EncodedRows
from footfall.ingest.validate import PUBLIC_MESSAGE_SCOPE, RequestContext, now_us
from footfall.ingest.workers import WORKER_MIN_BYTES, IngestWorkers
from footfall.sites import NULL_ORIGIN, KeyVerifier, OriginRefused, SiteRegistry, normalise_origin
from footfall.store.base import EventRow, Site, Store

JSON = "application/json"
_P = ParamSpec("_P")
_T = TypeVar("_T")
_encoder = msgspec.json.Encoder()

TRACK_PATHS = ("/api/analytics/track", "/api/events/track", "/api/save")
BATCH_PATH = "/api/analytics/batch"
IDENTIFY_PATH = "/api/identify"
NOOP_PATH = "/bench/noop"
BATCH_NOOP_PATH = "/bench/noop-batch"
SEGMENT_PATHS = (
    *(f"/v1/{name}" for name in ("track", "identify", "alias", "page", "screen", "group")),
    *(f"/v1/{name}" for name in ("batch", "import", "t", "i", "a", "p", "s", "g", "b", "m")),
)
PUBLIC_PATHS = frozenset(
    (*TRACK_PATHS, BATCH_PATH, IDENTIFY_PATH, NOOP_PATH, BATCH_NOOP_PATH, *SEGMENT_PATHS)
)
"""Routes any web page may call: their errors carry CORS headers for allowed origins."""
KNOWN_ROUTES = frozenset(
    (
        *PUBLIC_PATHS,
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/footfall.js",
        "/api/alias",
        "/a",
        "/e",
        "/s",
    )
)
"""Paths counted by name in /metrics; every other path counts as ``other``."""


@dataclass(slots=True)
class Services:
    """What the handlers share; built at start-up, torn down at shutdown."""

    settings: Settings
    store: Store
    sites: SiteRegistry
    committer: GroupCommitter
    limiter: SlidingWindowLimiter
    addresses: ClientAddress
    identity: IdentityGraph
    tombstones: set[tuple[str, str, str]]
    """(tenant, kind, value) of erased identifiers whose late events are dropped."""
    identity_turns: IdentityTurns
    """Where the ingest routes' identity calls wait for their tenant's turn."""
    writers: TokenBucketLimiter
    """Server-side write-key senders' rate limit, per write key and client IP."""
    refusals: OriginRefusals = field(default_factory=OriginRefusals)
    """Origins refused lately, per site: the install check explains them."""
    workers: IngestWorkers | None = None
    """Worker processes for large batches (DuckDB journal mode), if any."""

    def ingest_workers(self, raw: bytes) -> IngestWorkers | None:
        """The workers to hand this batch body to, or None to handle it here (small)."""
        if self.workers is None or len(raw) < WORKER_MIN_BYTES:
            return None
        return self.workers

    def names_erased(self, site: Site, rows: EncodedRows) -> bool:
        """Whether a worker's rows name an erased identifier: the server then handles the
        batch itself, dropping those events one by one."""
        tombstones = self.tombstones
        if not tombstones:
            return False
        scope = site.scope
        return any((scope, kind, token) in tombstones for kind, token in rows.identities)

    def erased(self, site: Site, row: EventRow) -> bool:
        return bool(self.tombstones) and (site.scope, row.id_kind, row.token) in self.tombstones

    def reload_sites(self) -> None:
        """After a site changed here: this process follows at once (blocking: run it off the
        event loop); other processes on the same database within cache_refresh_seconds."""
        self.sites = SiteRegistry.load(
            self.store, self.settings.default_site, self.settings.allow_missing_origin
        )


_WANTED_HEADERS = frozenset(
    {
        b"origin",
        b"referer",
        b"x-forwarded-for",
        b"content-length",
        b"user-agent",
        b"content-encoding",
    }
)


@dataclass(slots=True)
class Call:
    """The headers a public call is judged by, read in one pass over the raw header list."""

    origin: str | None
    referer: str | None
    forwarded_for: str | None
    content_length: str | None
    user_agent: str | None
    peer: str | None
    content_encoding: str | None = None

    @classmethod
    def of(cls, request: Request) -> Call:
        found: dict[bytes, str] = {}
        for name, value in request.scope["headers"]:
            if name in _WANTED_HEADERS and name not in found:
                found[name] = value.decode("latin-1")
        client = request.scope.get("client")
        return cls(
            origin=_origin(found.get(b"origin"), found.get(b"referer")),
            referer=found.get(b"referer"),
            forwarded_for=found.get(b"x-forwarded-for"),
            content_length=found.get(b"content-length"),
            user_agent=found.get(b"user-agent"),
            peer=client[0] if client else None,
            content_encoding=found.get(b"content-encoding"),
        )


def _origin(origin: str | None, referer: str | None) -> str | None:
    """The calling page's origin: the Origin header, else the Referer's origin.

    ``Origin: null`` is an origin of its own (opaque: sandboxed frames, ``file:`` pages), not
    a missing one: the Referer never stands in for it.
    """
    if origin:
        if origin.strip().lower() == NULL_ORIGIN:
            return NULL_ORIGIN
        return normalise_origin(origin) or origin
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:  # e.g. 'http://[abc': no origin can be read from it
            return None
        if parts.scheme and parts.netloc:
            return normalise_origin(f"{parts.scheme}://{parts.netloc}")
    return None


def cors_headers(origin: str | None) -> dict[str, str]:
    """Lets the calling page read the answer; only ever given for an origin already checked."""
    if origin is None:
        return {}
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "vary": "Origin",
    }


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(_encoder.encode(payload), status_code=status, media_type=JSON, headers=headers)


async def run_blocking(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Store work (identity changes, reads) blocks: keep it off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class RateLimited(ApiError):
    """A 429 that knows when to come back (the ``Retry-After`` header)."""

    def __init__(
        self, retry_after: float, message: str = "too many requests from this IP; slow down"
    ) -> None:
        super().__init__(429, RATE_LIMITED, message)
        self.retry_after = retry_after


def presents_secret_key(request: Request) -> bool:
    """Whether the call carries a secret API key (``Bearer`` or ``X-Api-Key``): the
    operator's tools (``footfall import --server``) rather than a page or a write key."""
    header = request.headers.get("authorization", "")
    return header[:7].lower() == "bearer " or "x-api-key" in request.headers


def query_site(request: Request) -> str | None:
    if not request.scope["query_string"]:  # the common case; skips building QueryParams
        return None
    return request.query_params.get("site")


async def read_body(request: Request, call: Call, limit: int) -> bytes:
    """Read at most ``limit`` bytes; a larger body is refused without buffering it all."""
    declared = call.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # nobody reads the answer; no traceback in the log either
        raise malformed("the client went away before sending the whole body") from None
    raw = b"".join(chunks)
    if call.content_encoding is None:
        return raw
    # Inflating is CPU work proportional to the body: off the event loop, so one hostile
    # body cannot hold every other request (and /healthz) while it is inflated.
    return await run_blocking(decode_content, raw, call.content_encoding, limit)


def decode_content(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding`` (gzip): inflated in one pass that stops
    at ``limit`` bytes, so a gzip bomb costs no more than ``limit`` of memory and time."""
    if encoding is None:
        return raw
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return raw
    if coding not in ("gzip", "x-gzip"):
        raise malformed(f"Content-Encoding {encoding[:32]!r} is not supported (gzip is)")
    return inflate_gzip(raw, limit)


MAX_GZIP_MEMBERS = 64
"""gzip members in one body: clients send one (some concatenate a few); thousands of tiny
members only serve to make the server start thousands of inflaters."""
_INFLATE_STEP = 16 * 1024
"""Input handed to an inflater at a time: what it copies back as unused data when its member
ends is at most this, whatever the size of the body (no quadratic copying)."""


def inflate_gzip(data: bytes, limit: int) -> bytes:
    """gzip data (one or more members, at most MAX_GZIP_MEMBERS) inflated, or ANALYTICS_001
    if it is not gzip or is cut short; ANALYTICS_002 as soon as the output would pass
    ``limit``. The body is walked by offset: no member copies the rest of the body."""
    view = memoryview(data)
    parts: list[bytes] = []
    size = 0
    offset = 0
    members = 0
    while True:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise malformed(f"the gzip body has more than {MAX_GZIP_MEMBERS} members")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not inflater.eof:
            if offset >= len(view):
                raise malformed("the gzip body is cut short")
            step = view[offset : offset + _INFLATE_STEP]
            offset += len(step)
            try:
                part = inflater.decompress(step, limit - size + 1)
            except zlib.error:
                raise malformed("the body is labelled gzip but is not gzip data") from None
            size += len(part)
            if size > limit or inflater.unconsumed_tail:
                raise too_large(limit)
            parts.append(part)
        offset -= len(inflater.unused_data)
        if offset >= len(view) or (view[offset] == 0 and not view[offset:].tobytes().strip(b"\0")):
            return b"".join(parts)  # zero padding may follow the last member


class Gate:
    """The checks every call passes (rate limit, site and origin, API keys), over the
    running services it holds: set at start-up, cleared at shutdown, so handlers need no
    lookup."""

    def __init__(self) -> None:
        self.services: Services | None = None
        self.keys = KeyVerifier()

    def running(self) -> Services:
        """The services, or 503 while the server starts or stops."""
        if self.services is None:
            raise ApiError(503, UNAVAILABLE, "server is starting")
        return self.services

    def site_for_key(self, presented: str | None) -> Site:
        """The site an API key belongs to, or 401."""
        if not presented:
            raise ApiError(401, UNAUTHORIZED, "an API key is required")
        services = self.running()
        site_id = self.keys.site_id(services.store, presented)
        if site_id is None:
            raise ApiError(401, UNAUTHORIZED, "unknown or revoked API key")
        site = services.sites.sites.get(site_id)
        if site is None:
            raise ApiError(401, UNAUTHORIZED, "the key's site no longer exists")
        return site

    def authenticated(self, request: Request) -> Site:
        """The key's site for ``Authorization: Bearer <key>`` or ``X-Api-Key``."""
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else None
        return self.site_for_key(key or request.headers.get("x-api-key"))

    def keyed_site(self, key_site: Site, named: str | None) -> Site:
        """The site a call with a secret API key writes to: the key's own, or another site
        of its tenant named in the call; a site of another tenant is refused (403), never
        reached through the public rules instead."""
        if not named or named == key_site.id:
            return key_site
        site = self.running().sites.sites.get(named)
        if site is None or site.scope != key_site.scope:
            raise ApiError(
                403, FORBIDDEN, f"this API key cannot write to site '{named[:64]}' (not its tenant)"
            )
        return site

    def rate_limit(self, call: Call) -> None:
        services = self.running()
        wait = services.limiter.check(services.addresses.resolve(call.peer, call.forwarded_for))
        if wait:
            raise RateLimited(wait)

    def rate_limit_writer(self, call: Call, write_key: str) -> None:
        """A server-side sender's limit: per write key and client IP (not the per-IP one)."""
        services = self.running()
        address = services.addresses.resolve(call.peer, call.forwarded_for)
        wait = services.writers.check(f"{write_key} {address}")
        if wait:
            limit = services.settings.write_key_rate_limit_per_minute
            raise RateLimited(
                wait,
                f"too many requests with this write key from this IP (over {limit}/min); slow down",
            )

    def site_for(self, request: Request, call: Call, explicit: str | None = None) -> Site:
        services = self.running()
        try:
            return services.sites.resolve(explicit or query_site(request), call.origin)
        except OriginRefused as refused:
            services.refusals.record(refused.site_id, refused.origin)
            raise

    def context(self, call: Call, site: Site, keyed: bool = False) -> RequestContext:
        """What a tracking call's events are judged by; a call with a secret key (an
        import) keeps its message ids as sent, a public one's are scoped apart."""
        return RequestContext(
            site_id=site.id,
            now_us=now_us(),
            user_agent=call.user_agent,
            page_url=call.referer,
            message_scope="" if keyed else PUBLIC_MESSAGE_SCOPE,
        )
