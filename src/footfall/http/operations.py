"""What operators and tools read: /healthz, Prometheus /metrics, the OpenAPI document and
its browsable page at /docs."""

from __future__ import annotations

import hmac
import logging
import sys

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from footfall import __version__
from footfall.errors import UNAUTHORIZED, ApiError
from footfall.http.openapi import build_document
from footfall.http.shared import JSON, Gate

log = logging.getLogger("footfall.api")
_encoder = msgspec.json.Encoder()

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

_DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Footfall API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


class Operations:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.openapi = msgspec.json.encode(build_document())

    async def healthz(self, request: Request) -> Response:
        services = self.gate.running()
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
                    "ingest_workers": 0 if services.workers is None else services.workers.health(),
                }
            ),
            media_type=JSON,
        )

    async def metrics(self, request: Request) -> Response:
        services = self.gate.running()
        token = services.settings.metrics_token
        if token is not None:
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

    async def openapi_document(self, request: Request) -> Response:
        return Response(self.openapi, media_type=JSON)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)


def routes(gate: Gate) -> list[Route]:
    operations = Operations(gate)
    return [
        Route("/healthz", operations.healthz, methods=["GET"]),
        Route("/metrics", operations.metrics, methods=["GET"]),
        Route("/openapi.json", operations.openapi_document, methods=["GET"]),
        Route("/docs", operations.docs, methods=["GET"]),
    ]


def mount_docs_assets(app: Starlette) -> None:
    """Swagger UI's files come from an installed package, never from a CDN."""
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_path), name="docs-static")
