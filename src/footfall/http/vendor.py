"""The analytics vendor's GET API, so its existing clients work unchanged: ``/a`` (alias),
``/e`` (record an event for a person), ``/s`` (set properties), keyed by ``_k``.

They answer a transparent 1x1 GIF like the vendor's API, so image pixels work too.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.errors import invalid
from footfall.http.shared import Gate, run_blocking
from footfall.identity import Identifier, checked_name
from footfall.ingest.validate import CUSTOM_EVENT, custom_event_name, now_us
from footfall.store.base import EventRow, Site

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_RESERVED = frozenset({"_k", "_p", "_n", "_t", "_d"})
_encoder = msgspec.json.Encoder()


def _pixel() -> Response:
    return Response(PIXEL, media_type="image/gif", headers={"cache-control": "no-store"})


def _properties(params: Mapping[str, str]) -> dict[str, str]:
    return {k[:255]: v for k, v in params.items() if k not in _RESERVED}


class VendorApi:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def _vendor(self, request: Request) -> tuple[Site, str, Mapping[str, str]]:
        params = request.query_params
        site = self.gate.site_for_key(params.get("_k"))
        person = checked_name(params.get("_p"), "_p")
        return site, person, params

    async def alias(self, request: Request) -> Response:
        site, person, params = self._vendor(request)
        other = checked_name(params.get("_n"), "_n")
        identity = self.gate.running().identity
        await run_blocking(identity.alias, site.scope, person, other, f"vendor-api:{site.id}")
        return _pixel()

    async def set_properties(self, request: Request) -> Response:
        site, person, params = self._vendor(request)
        properties = _properties(params)
        identity = self.gate.running().identity
        if properties:
            await run_blocking(identity.set_properties, site.scope, person, properties)
        else:
            await run_blocking(identity.node_for_event, site.scope, person)
        return _pixel()

    async def event(self, request: Request) -> Response:
        """Every ``_n`` is a custom event (the vendor's names are free-form, and its calls
        carry none of a type's validated fields, so ``_n=purchase`` is no order either)."""
        site, person, params = self._vendor(request)
        name = custom_event_name(params.get("_n") or None, "_n")
        services = self.gate.running()
        ident: Identifier = await run_blocking(services.identity.node_for_event, site.scope, person)
        properties = _properties(params)
        received = now_us()
        ts = received
        if params.get("_d") == "1" and params.get("_t"):
            try:
                ts = max(0, min(int(float(params["_t"]) * 1_000_000), received))
            except (ValueError, OverflowError):
                raise invalid("_t", "must be seconds since the epoch") from None
        row = EventRow(
            site_id=site.id,
            ts_us=ts,
            received_us=received,
            event=CUSTOM_EVENT,
            custom_event=name,
            token=ident.value,
            id_kind=ident.kind,
            data=_encoder.encode(properties).decode(),
            user_agent=(request.headers.get("user-agent") or "")[:1024] or None,
        )
        if services.erased(site, row):
            return _pixel()
        if properties:
            await run_blocking(services.identity.set_properties, site.scope, person, properties)
        await services.committer.submit([row])
        return _pixel()


def routes(gate: Gate) -> list[Route]:
    api = VendorApi(gate)
    return [
        Route("/a", api.alias, methods=["GET"]),
        Route("/e", api.event, methods=["GET"]),
        Route("/s", api.set_properties, methods=["GET"]),
    ]
