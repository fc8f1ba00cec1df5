"""What wraps every route: errors rendered in the one JSON shape, and responses counted for
/metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from footfall.errors import METHOD_NOT_ALLOWED, NOT_FOUND, ApiError, flat_errors
from footfall.http.shared import (
    JSON,
    KNOWN_ROUTES,
    PUBLIC_PATHS,
    Call,
    Gate,
    cors_headers,
)

log = logging.getLogger("footfall.api")

HTTP_RESPONSES = Counter(
    "footfall_http_responses_total", "HTTP responses by route and status", ["route", "status"]
)

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def error_response(error: ApiError, request: Request | None = None) -> Response:
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after", None)  # RateLimited, IdentityBacklogged
    if isinstance(retry_after, int | float):
        headers["retry-after"] = str(max(1, round(retry_after + 0.5)))
    if error.status == 503:
        headers["retry-after"] = "1"
    if request is not None and error.status != 403 and request.url.path in PUBLIC_PATHS:
        headers.update(_error_cors(request))
    flat = request is not None and flat_errors(request.url.path)
    return Response(error.encode(flat), status_code=error.status, media_type=JSON, headers=headers)


def _error_cors(request: Request) -> dict[str, str]:
    """CORS headers for a rejected public call: only if its site allows the origin.

    Errors raised before the site check (429, 405, a batch that is not JSON) would otherwise
    let any page read the answer.
    """
    gate: Gate | None = getattr(request.app.state, "gate", None)
    call = Call.of(request)
    if call.origin is None or gate is None or gate.services is None:
        return {}
    try:
        gate.site_for(request, call)
    except ApiError:
        return {}
    return cors_headers(call.origin)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc, request)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, "HTTP_ERROR")
    return error_response(ApiError(exc.status_code, code, str(exc.detail)), request)


def error_handlers() -> dict[Any, ErrorHandler]:
    """Every failure a client can see, as ``{"success": false, "error": {...}}`` (a bug's
    500 through ``UnexpectedErrors``)."""
    return {ApiError: _on_api_error, HTTPException: _on_http_error}


class UnexpectedErrors:
    """A bug answers 500 in the JSON shape and the connection stays usable.

    Starlette's own handler for ``Exception`` re-raises after answering, so uvicorn drops the
    keep-alive connection without ``Connection: close``; a client's next request on it
    fails. Here the error is logged and answered, and only re-raised when the answer had
    already begun (nothing else can be sent then).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            if started:
                raise
            request = Request(scope)
            log.exception("unhandled error", extra={"path": request.url.path})
            answer = error_response(ApiError(500, "INTERNAL", "internal error"), request)
            await answer(scope, receive, send)


_RESPONSE_CHILDREN: dict[tuple[str, int], Any] = {}


class ResponseCounter:
    """Counts responses per route and status for /metrics without per-request allocations."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in KNOWN_ROUTES else "other"

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                key = (route, message["status"])
                child = _RESPONSE_CHILDREN.get(key)
                if child is None:
                    child = _RESPONSE_CHILDREN[key] = HTTP_RESPONSES.labels(route, str(key[1]))
                child.inc()
            await send(message)

        await self.app(scope, receive, counting_send)
