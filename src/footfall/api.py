"""The HTTP server: an ASGI app factory wiring tracking routes, health, metrics and OpenAPI.

Every public call passes the same gate, in this order: rate limit (429), site and origin
(422/403), payload size (400 ANALYTICS_002), JSON (400 ANALYTICS_001), field rules (422).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from footfall import __version__
from footfall.config import Settings
from footfall.errors import (
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    ORIGIN_NOT_ALLOWED,
    RATE_LIMITED,
    UNAUTHORIZED,
    UNAVAILABLE,
    ApiError,
    invalid,
    malformed,
    too_large,
)
from footfall.identity import IdentityGraph
from footfall.ingest import (
    MAX_PAYLOAD_BYTES,
    GroupCommitter,
    RequestContext,
    check_size,
    decode_json,
    make_committer,
    now_us,
    parse_legacy_query,
    validate_event,
)
from footfall.openapi import build_document
from footfall.ratelimit import ClientAddress, SlidingWindowLimiter
from footfall.sites import KeyVerifier, SiteRegistry, normalise_origin, seed_sites
from footfall.store import Store, open_store
from footfall.store.base import EventRow, Site
from footfall.tracker import mount_demo, renew_id_cookie, tracker_route
from footfall.watchdog import LoopWatchdog

log = logging.getLogger("footfall.api")

JSON = "application/json"
_OK = b'{"success":true}'
_OK_DUPLICATE = b'{"success":true,"duplicate":true}'
_OK_ERASED = b'{"success":true,"erased":true}'
_encoder = msgspec.json.Encoder()

HTTP_RESPONSES = Counter(
    "footfall_http_responses_total", "HTTP responses by route and status", ["route", "status"]
)
QUEUED_EVENTS = Gauge("footfall_ingest_queued_events", "Events waiting for the group commit")
RATE_LIMITED_IPS = Gauge("footfall_rate_limiter_tracked_ips", "Client IPs in the rate window")
STORE_MEMORY = Gauge(
    "footfall_store_memory_bytes", "Memory DuckDB's buffer manager holds in the server process"
)
PYTHON_BLOCKS = Gauge(
    "footfall_python_allocated_blocks",
    "Small-object blocks (up to 512 bytes) Python's allocator holds, where nearly every "
    "Python-level leak shows: flat under steady load unless Python code keeps objects",
)

TRACK_PATHS = ("/api/analytics/track", "/api/events/track", "/api/save")
BATCH_PATH = "/api/analytics/batch"
IDENTIFY_PATH = "/api/identify"
PUBLIC_PATHS = frozenset((*TRACK_PATHS, BATCH_PATH, IDENTIFY_PATH, "/bench/noop"))
_KNOWN_ROUTES = frozenset(
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

    def erased(self, site: Site, row: EventRow) -> bool:
        return bool(self.tombstones) and (site.scope, row.id_kind, row.token) in self.tombstones


_WANTED_HEADERS = frozenset(
    {b"origin", b"referer", b"x-forwarded-for", b"content-length", b"user-agent"}
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
        )


def _origin(origin: str | None, referer: str | None) -> str | None:
    """The calling page's origin: the Origin header, else the Referer's origin."""
    if origin and origin != "null":
        return normalise_origin(origin) or origin
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:  # e.g. 'http://[abc': no origin can be read from it
            return None
        if parts.scheme and parts.netloc:
            return normalise_origin(f"{parts.scheme}://{parts.netloc}")
    return None


def _cors_headers(origin: str | None) -> dict[str, str]:
    if origin is None:
        return {}
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "vary": "Origin",
    }


class _RateLimited(ApiError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(429, RATE_LIMITED, "too many requests from this IP; slow down")
        self.retry_after = retry_after


def _query_site(request: Request) -> str | None:
    if not request.scope["query_string"]:  # the common case; skips building QueryParams
        return None
    return request.query_params.get("site")


async def _read_body(request: Request, call: Call, limit: int) -> bytes:
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
    return b"".join(chunks)


def _answer(flags: list[bool], headers: dict[str, str]) -> Response:
    body = _OK_DUPLICATE if flags and flags[0] else _OK
    return Response(body, media_type=JSON, headers=headers)


class PublicApi:
    """The endpoints that use the running services (tracking, health, metrics).

    It holds the services itself, so handlers need no lookup; they are set at start-up and
    cleared at shutdown.
    """

    def __init__(self) -> None:
        self.services: Services | None = None
        self.keys = KeyVerifier()

    def _svc(self) -> Services:
        if self.services is None:
            raise ApiError(503, UNAVAILABLE, "server is starting")
        return self.services

    def site_for_key(self, presented: str | None) -> Site:
        """The site an API key belongs to, or 401."""
        if not presented:
            raise ApiError(401, UNAUTHORIZED, "an API key is required")
        services = self._svc()
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

    def rate_limit(self, call: Call) -> None:
        services = self._svc()
        wait = services.limiter.check(services.addresses.resolve(call.peer, call.forwarded_for))
        if wait:
            raise _RateLimited(wait)

    def site_for(self, request: Request, call: Call, explicit: str | None = None) -> Site:
        return self._svc().sites.resolve(explicit or _query_site(request), call.origin)

    def context(self, call: Call, site: Site) -> RequestContext:
        return RequestContext(
            site_id=site.id, now_us=now_us(), user_agent=call.user_agent, page_url=call.referer
        )

    async def track_post(self, request: Request) -> Response:
        call = Call.of(request)
        self.rate_limit(call)
        site = self.site_for(request, call)
        raw = await _read_body(request, call, MAX_PAYLOAD_BYTES)
        check_size(raw)
        body = decode_json(raw)
        named = body.get("site") if isinstance(body, dict) else None
        if named is not None:  # "site" in the body names it too, as in a batch
            if not isinstance(named, str):
                raise invalid("site", "must be a string")
            site = self.site_for(request, call, named)
        row = validate_event(body, self.context(call, site))
        response = await self._commit(site, row, call)
        if request.scope["query_string"]:  # footfall.js names its id cookie there
            renew_id_cookie(request, call.origin, row, response)
        return response

    async def _commit(self, site: Site, row: EventRow, call: Call) -> Response:
        services = self._svc()
        if services.erased(site, row):
            return Response(_OK_ERASED, media_type=JSON, headers=_cors_headers(call.origin))
        flags = await services.committer.submit([row])
        return _answer(flags, _cors_headers(call.origin))

    async def track_get(self, request: Request) -> Response:
        call = Call.of(request)
        self.rate_limit(call)
        site = self.site_for(request, call)
        row = parse_legacy_query(request.query_params, self.context(call, site))
        return await self._commit(site, row, call)

    async def batch(self, request: Request) -> Response:
        """Up to N events; each is validated alone, valid ones are committed together."""
        services = self._svc()
        call = Call.of(request)
        self.rate_limit(call)
        raw = await _read_body(request, call, services.settings.max_batch_bytes)
        try:
            body = msgspec.json.decode(raw, type=_BatchEnvelope | list[msgspec.Raw])
        except msgspec.ValidationError as exc:
            raise malformed(f"batch must be {{'events': [...]}} or an array: {exc}") from None
        except msgspec.DecodeError as exc:
            raise malformed(f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise malformed("body is nested too deeply") from None
        events = body if isinstance(body, list) else body.events
        site = self.site_for(request, call, None if isinstance(body, list) else body.site)
        limit = services.settings.max_batch_events
        if len(events) > limit:
            raise invalid("events", f"at most {limit} events per batch")
        ctx = self.context(call, site)
        results: list[dict[str, Any]] = []
        rows: list[EventRow] = []
        slots: list[int] = []
        for index, item in enumerate(events):
            try:
                check_size(item)
                row = validate_event(decode_json(item), ctx)
                results.append({"index": index, "success": True, "status": 200})
                if services.erased(site, row):
                    results[-1]["erased"] = True
                    continue
                rows.append(row)
                slots.append(index)
            except ApiError as error:
                results.append(
                    {"index": index, "success": False, "status": error.status, **_detail(error)}
                )
        flags = await services.committer.submit(rows)
        for slot, duplicate in zip(slots, flags, strict=True):
            if duplicate:
                results[slot]["duplicate"] = True
        accepted = len(rows)
        payload = {
            "success": accepted == len(events),
            "accepted": accepted,
            "rejected": len(events) - accepted,
            "results": results,
        }
        return Response(
            _encoder.encode(payload), media_type=JSON, headers=_cors_headers(call.origin)
        )

    async def noop(self, request: Request) -> Response:
        """Benchmark baseline: the same server, framework and body read, no ingest work."""
        await _read_body(request, Call.of(request), MAX_PAYLOAD_BYTES)
        return Response(_OK, media_type=JSON)

    async def preflight(self, request: Request) -> Response:
        """CORS preflight: answered with permissions only for origins the site allows."""
        call = Call.of(request)
        if call.origin is None or request.headers.get("origin") is None:
            raise ApiError(403, ORIGIN_NOT_ALLOWED, "preflight without an Origin header")
        method = request.headers.get("access-control-request-method", "").upper()
        if method not in ("GET", "POST"):
            raise ApiError(403, ORIGIN_NOT_ALLOWED, f"method {method or '(none)'} is not allowed")
        self.site_for(request, call)
        headers = {
            **_cors_headers(call.origin),
            "access-control-allow-methods": "GET, POST, OPTIONS",
            "access-control-allow-headers": "Content-Type",
            "access-control-max-age": "86400",
        }
        return Response(status_code=204, headers=headers)

    async def healthz(self, request: Request) -> Response:
        services = self._svc()
        try:
            services.store.ping()
        except Exception as exc:
            log.error("health check failed", extra={"error": type(exc).__name__})
            return Response(
                _encoder.encode({"status": "unavailable", "store": services.store.backend}),
                status_code=503,
                media_type=JSON,
            )
        return Response(
            _encoder.encode(
                {
                    "status": "ok",
                    "version": __version__,
                    "store": services.store.backend,
                    "schema_version": services.store.schema_version(),
                    "queued_events": services.committer.queued_events,
                    "ingest": services.committer.health(),
                }
            ),
            media_type=JSON,
        )

    async def metrics(self, request: Request) -> Response:
        services = self._svc()
        token = services.settings.metrics_token
        if token is not None:
            import hmac

            presented = request.headers.get("authorization", "")
            if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
                raise ApiError(401, UNAUTHORIZED, "metrics need the configured bearer token")
        QUEUED_EVENTS.set(services.committer.queued_events)
        RATE_LIMITED_IPS.set(len(services.limiter))
        held = services.store.memory_bytes()
        if held is not None:
            STORE_MEMORY.set(held)
        PYTHON_BLOCKS.set(sys.getallocatedblocks())
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _BatchEnvelope(msgspec.Struct):
    events: list[msgspec.Raw]
    site: str | None = None


def _detail(error: ApiError) -> dict[str, Any]:
    return {"error": error.body()["error"]}


async def openapi_document(request: Request) -> Response:
    document: bytes = request.app.state.openapi
    return Response(document, media_type=JSON)


async def docs(request: Request) -> Response:
    return HTMLResponse(_DOCS_PAGE)


_DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Footfall API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


# --------------------------------------------------------------------------- errors


def _error_response(error: ApiError, request: Request | None = None) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, _RateLimited):
        headers["retry-after"] = str(max(1, round(error.retry_after + 0.5)))
    if error.status == 503:
        headers["retry-after"] = "1"
    if request is not None and error.status != 403 and request.url.path in PUBLIC_PATHS:
        headers.update(_error_cors(request))
    return Response(error.encode(), status_code=error.status, media_type=JSON, headers=headers)


def _error_cors(request: Request) -> dict[str, str]:
    """CORS headers for a rejected public call: only if its site allows the origin.

    Errors raised before the site check (429, 405, a batch that is not JSON) would otherwise
    let any page read the answer.
    """
    public: PublicApi | None = getattr(request.app.state, "public", None)
    call = Call.of(request)
    if call.origin is None or public is None or public.services is None:
        return {}
    try:
        public.site_for(request, call)
    except ApiError:
        return {}
    return _cors_headers(call.origin)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc, request)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, "HTTP_ERROR")
    return _error_response(ApiError(exc.status_code, code, str(exc.detail)), request)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return _error_response(ApiError(500, "INTERNAL", "internal error"), request)


_RESPONSE_CHILDREN: dict[tuple[str, int], Any] = {}


class _ResponseCounter:
    """Counts responses per route and status for /metrics without per-request allocations."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _KNOWN_ROUTES else "other"

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                key = (route, message["status"])
                child = _RESPONSE_CHILDREN.get(key)
                if child is None:
                    child = _RESPONSE_CHILDREN[key] = HTTP_RESPONSES.labels(route, str(key[1]))
                child.inc()
            await send(message)

        await self.app(scope, receive, counting_send)


# --------------------------------------------------------------------------- factory


def _tune_gc() -> None:
    """Fewer garbage collections, none over start-up objects; measured, not guessed.

    A request waiting for its group commit keeps its objects alive past CPython's default
    700-allocation threshold, so under load they were promoted and re-walked by every
    collection: a quarter of the event loop's time (perf). Start-up objects (modules, the
    store) never become garbage, so they are frozen out of collections altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _every(
    public: PublicApi,
    every: float,
    stop: asyncio.Event,
    job: Callable[[Services], Awaitable[None]],
    failure: str,
) -> None:
    """Run ``job`` now, then every ``every`` seconds until ``stop`` is set; a failure is
    logged and the job runs again next time. Shutdown sets ``stop`` and waits for a run
    under way, so the store is never closed under it."""
    while not stop.is_set():
        services = public.services
        if services is None:
            return
        try:
            await job(services)
        except Exception as exc:
            log.warning(failure, extra={"error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def _apply_retention(services: Services, days: int) -> None:
    """Delete events older than the retention setting.

    Acknowledged events still in the ingest journal are loaded first (``settled``), so an old
    event answered before a pass is deleted by that pass.
    """
    from footfall.retention import apply_retention

    await services.committer.settled()
    await asyncio.to_thread(apply_retention, services.store, days)


async def _fold_derived(services: Services) -> None:
    """Fold new events and identity changes into the daily rollup and the funnel step
    tables (DuckDB): a report's own fold then has little left to do, and a store upgraded
    to a schema with new derived tables builds them at start-up instead of in the first
    report that needs them."""
    from footfall import funnel_steps
    from footfall.analytics import refresh_presence

    def fold(store: Store) -> None:
        refresh_presence(store)
        funnel_steps.refresh(store)

    await asyncio.to_thread(fold, services.store)


async def _refresh_shared_state(public: PublicApi, every: float) -> None:
    """Re-read erase tombstones and sites every ``every`` seconds.

    Other processes on a shared (PostgreSQL) database erase persons and add sites; this bounds
    how long this process keeps accepting late events of a person erased elsewhere.
    """
    while True:
        await asyncio.sleep(every)
        services = public.services
        if services is None:
            return
        tombstones, sites = services.tombstones, services.sites
        try:
            fresh_tombstones = await asyncio.to_thread(services.identity.tombstones)
            fresh_sites = await asyncio.to_thread(
                SiteRegistry.load,
                services.store,
                services.settings.default_site,
                services.settings.allow_missing_origin,
            )
        except Exception as exc:
            log.warning("refreshing tombstones and sites failed", extra={"error": repr(exc)})
            continue
        # An erase in this process may have replaced the set meanwhile: that one is newer.
        if services.tombstones is tombstones:
            services.tombstones = fresh_tombstones
        if services.sites is sites:
            services.sites = fresh_sites


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the ASGI app; the store opens at start-up and is flushed and closed at shutdown."""
    if settings is None:
        settings = Settings()

    public = PublicApi()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings.database, memory_limit=settings.duckdb_memory_limit)
        applied = store.migrate()
        seed_sites(store, settings)
        committer = make_committer(store, settings)  # DuckDB: replays its journal first
        committer.start()
        identity = IdentityGraph(
            store, settings.identity_max_per_kind, settings.erase_tombstone_days
        )
        public.services = Services(
            settings=settings,
            store=store,
            sites=SiteRegistry.load(store, settings.default_site, settings.allow_missing_origin),
            committer=committer,
            limiter=SlidingWindowLimiter(settings.rate_limit_per_minute),
            addresses=ClientAddress(settings.trusted_proxies),
            identity=identity,
            tombstones=identity.tombstones(),
        )
        log.info(
            "footfall started",
            extra={
                "store": store.backend,
                "migrations_applied": applied,
                "schema_version": store.schema_version(),
                "store_memory_limit": store.memory_limit(),
            },
        )
        refresher = asyncio.create_task(
            _refresh_shared_state(public, settings.cache_refresh_seconds)
        )
        background_stop = asyncio.Event()
        retention = (
            asyncio.create_task(
                _every(
                    public,
                    settings.retention_interval_minutes * 60,
                    background_stop,
                    lambda services: _apply_retention(services, settings.retention_days),
                    "data retention failed; retried next time",
                )
            )
            if settings.retention_days
            else None
        )
        folding = (
            asyncio.create_task(
                _every(
                    public,
                    settings.rollup_refresh_seconds,
                    background_stop,
                    _fold_derived,
                    "folding the derived tables failed; retried next time",
                )
            )
            if store.backend == "duckdb" and settings.rollup_refresh_seconds
            else None
        )
        _tune_gc()
        watchdog = LoopWatchdog()
        watchdog.start()
        try:
            yield
        finally:
            await watchdog.stop()
            refresher.cancel()
            background_stop.set()
            for task in (retention, folding):
                if task is not None:
                    await task  # a pass under way finishes before the store closes
            public.services = None  # late requests get 503, not a closed store
            await asyncio.to_thread(committer.stop)
            store.close()
            log.info("footfall stopped; every acknowledged event is committed")

    routes = [
        *(Route(p, public.track_post, methods=["POST"]) for p in TRACK_PATHS),
        *(Route(p, public.track_get, methods=["GET"]) for p in TRACK_PATHS[:2]),
        *(
            Route(p, public.preflight, methods=["OPTIONS"])
            for p in (*TRACK_PATHS, BATCH_PATH, IDENTIFY_PATH)
        ),
        Route(BATCH_PATH, public.batch, methods=["POST"]),
        Route("/healthz", public.healthz, methods=["GET"]),
        Route("/metrics", public.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        tracker_route(),
        *identity_routes(public),
        *analytics_routes(public),
    ]
    if settings.bench_noop:
        # First in the table, like the tracking route, so routing costs both the same.
        routes.insert(0, Route("/bench/noop", public.noop, methods=["POST"]))
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _on_api_error,
        HTTPException: _on_http_error,
        Exception: _on_unexpected,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    _mount_docs_assets(app)
    app.router.routes.extend(dashboard_routes(public, settings))
    if settings.demo:
        mount_demo(app)
    app.state.openapi = msgspec.json.encode(build_document())
    app.state.public = public  # error handlers check the origin against the sites
    app.add_middleware(_ResponseCounter)
    return app


def identity_routes(public: PublicApi) -> list[Route]:
    from footfall.identity_api import routes

    return routes(public)


def analytics_routes(public: PublicApi) -> list[Route]:
    from footfall.analytics_api import routes

    return routes(public)


def dashboard_routes(public: PublicApi, settings: Settings) -> list[BaseRoute]:
    """The dashboard's pages under /dashboard (and / redirecting there)."""
    from footfall.web import routes

    return routes(public, settings)


def _mount_docs_assets(app: Starlette) -> None:
    """Swagger UI's files come from an installed package, never from a CDN."""
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/static", StaticFiles(directory=swagger_ui_path), name="docs-static")
