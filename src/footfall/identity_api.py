"""HTTP endpoints for identity: public identify, keyed alias, vendor-compatible /a /e /s,
and the authenticated person API (show, journey, explain, split, export, erase)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.api import (
    IDENTIFY_PATH,
    JSON,
    Call,
    PublicApi,
    Services,
    _cors_headers,
    _read_body,
)
from footfall.errors import ApiError, invalid, malformed
from footfall.identity import MAX_NAME_CHARS, Identifier, user_identifiers
from footfall.ingest import MAX_PAYLOAD_BYTES, decode_json, flag, now_us, validate_token
from footfall.store.base import EventRow, Site

_encoder = msgspec.json.Encoder()
# The vendor's tracking API answers with a transparent 1x1 GIF, so image pixels work too.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_VENDOR_RESERVED = frozenset({"_k", "_p", "_n", "_t", "_d"})


def _json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_encoder.encode(payload), status_code=status, media_type=JSON, headers=headers)


class IdentityApi:
    def __init__(self, public: PublicApi) -> None:
        self.public = public

    def svc(self) -> Services:
        return self.public._svc()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Identity work is blocking database work: keep it off the event loop."""
        return await asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------------ public identify

    async def identify(self, request: Request) -> Response:
        call = Call.of(request)
        self.public.rate_limit(call)
        raw = await _read_body(request, call, MAX_PAYLOAD_BYTES)
        body = decode_json(raw)
        if not isinstance(body, dict):
            raise malformed("identify payload must be a JSON object")
        site = self.public.site_for(request, call, _opt_str(body.get("site"), "site"))
        # Absent or null is nothing to link; 0, "" or [] are not objects (400/422 below).
        user = {} if body.get("user") is None else body["user"]
        if not isinstance(user, dict):
            raise malformed("user must be a JSON object")
        metadata = {} if user.get("metadata") is None else user["metadata"]
        if not isinstance(metadata, dict):
            raise invalid("user.metadata", "must be an object")
        ephemeral = flag(body, "ephemeral")
        token = body.get("token")
        if token is None:
            raise invalid("token", "required")
        validate_token(token)  # the event endpoints' rule; checked when ephemeral too
        named, _ = user_identifiers(user.get("uniqueClientId"), user.get("email"))
        services = self.svc()
        tenant = site.scope
        if any(
            (tenant, ident.kind, ident.value) in services.tombstones
            for ident in (Identifier("token", token), *named)
        ):
            return _json({"success": True, "erased": True}, headers=_cors_headers(call.origin))
        await self.run(
            services.identity.identify,
            tenant,
            token,
            user.get("uniqueClientId"),
            user.get("email"),
            metadata,
            ephemeral,
        )
        return _json({"success": True}, headers=_cors_headers(call.origin))

    # ------------------------------------------------------------------ keyed alias

    async def alias(self, request: Request) -> Response:
        site = self.public.authenticated(request)
        body = decode_json(await _read_body(request, Call.of(request), MAX_PAYLOAD_BYTES))
        if not isinstance(body, dict):
            raise malformed("alias payload must be a JSON object")
        a = _name(body.get("a"), "a")
        b = _name(body.get("b"), "b")
        person = await self.run(self.svc().identity.alias, site.scope, a, b, f"api-key:{site.id}")
        return _json({"success": True, "person_id": person})

    # ------------------------------------------------------------------ vendor-compatible GETs

    def _vendor(self, request: Request) -> tuple[Site, str, Mapping[str, str]]:
        params = request.query_params
        site = self.public.site_for_key(params.get("_k"))
        person = _name(params.get("_p"), "_p")
        return site, person, params

    async def vendor_alias(self, request: Request) -> Response:
        site, person, params = self._vendor(request)
        other = _name(params.get("_n"), "_n")
        await self.run(
            self.svc().identity.alias, site.scope, person, other, f"vendor-api:{site.id}"
        )
        return _pixel()

    async def vendor_set(self, request: Request) -> Response:
        site, person, params = self._vendor(request)
        properties = _properties(params)
        if properties:
            await self.run(self.svc().identity.set_properties, site.scope, person, properties)
        else:
            await self.run(self.svc().identity.node_for_event, site.scope, person)
        return _pixel()

    async def vendor_event(self, request: Request) -> Response:
        site, person, params = self._vendor(request)
        name = params.get("_n")
        if not name:
            raise invalid("_n", "required: the event name")
        if len(name) > MAX_NAME_CHARS:
            raise invalid("_n", f"at most {MAX_NAME_CHARS} characters")
        services = self.svc()
        ident: Identifier = await self.run(services.identity.node_for_event, site.scope, person)
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
            event=name,
            token=ident.value,
            id_kind=ident.kind,
            data=_encoder.encode(properties).decode(),
            user_agent=(request.headers.get("user-agent") or "")[:1024] or None,
        )
        if services.erased(site, row):
            return _pixel()
        if properties:
            await self.run(services.identity.set_properties, site.scope, person, properties)
        await services.committer.submit([row])
        return _pixel()

    # ------------------------------------------------------------------ person API

    async def _person(self, request: Request) -> tuple[Site, int]:
        site = self.public.authenticated(request)
        name = request.path_params["name"]
        # Show, journey, export and erase read (or delete) events: every event answered
        # before this request must be in the database first (read-your-writes).
        await self.svc().committer.settled()
        node = await self.run(self.svc().identity.find, site.scope, name)
        if node is None:
            raise ApiError(404, "NOT_FOUND", "no person with that identifier")
        return site, node.person_id

    async def show(self, request: Request) -> Response:
        site, person = await self._person(request)
        profile = await self.run(self.svc().identity.profile, site.scope, person)
        return _json(profile)

    async def journey(self, request: Request) -> Response:
        site, person = await self._person(request)
        limit = _limit(request.query_params.get("limit"))
        events = await self.run(self.svc().identity.person_events, site.scope, person, limit)
        return _json({"person_id": person, "events": events})

    async def export(self, request: Request) -> Response:
        site, person = await self._person(request)
        document = await self.run(self.svc().identity.export, site.scope, person)
        return _json(
            document,
            headers={"content-disposition": f'attachment; filename="person-{person}.json"'},
        )

    async def erase(self, request: Request) -> Response:
        site, person = await self._person(request)
        services = self.svc()
        counts = await self.run(services.identity.erase, site.scope, person, f"api-key:{site.id}")
        services.tombstones = await self.run(services.identity.tombstones)
        return _json({"success": True, "person_id": person, "erased": counts})

    async def explain(self, request: Request) -> Response:
        site = self.public.authenticated(request)
        a = _name(request.query_params.get("a"), "a")
        b = _name(request.query_params.get("b"), "b")
        steps = await self.run(self.svc().identity.explain, site.scope, a, b)
        if steps is None:
            return _json({"same_person": False, "chain": []})
        return _json({"same_person": True, "chain": [s.to_dict() for s in steps]})

    async def split(self, request: Request) -> Response:
        site = self.public.authenticated(request)
        body = decode_json(await _read_body(request, Call.of(request), MAX_PAYLOAD_BYTES))
        if not isinstance(body, dict):
            raise malformed("split payload must be a JSON object")
        a, b = _name(body.get("a"), "a"), _name(body.get("b"), "b")
        first, second = await self.run(
            self.svc().identity.split, site.scope, a, b, f"api-key:{site.id}"
        )
        return _json(
            {"success": True, "a_person": first, "b_person": second, "separated": first != second}
        )


def _pixel() -> Response:
    return Response(PIXEL, media_type="image/gif", headers={"cache-control": "no-store"})


def _name(value: Any, field: str) -> str:
    if value is None or value == "":
        raise invalid(field, "required")
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if len(value) > MAX_NAME_CHARS:
        raise invalid(field, f"at most {MAX_NAME_CHARS} characters")
    return value


def _opt_str(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    # isascii: '²' is a digit to str.isdigit() but not to int(); the length bounds int()'s work.
    digits = value.isascii() and value.isdigit() and len(value) <= 6
    if not digits or not 1 <= int(value) <= 100_000:
        raise invalid("limit", "must be a whole number from 1 to 100000")
    return int(value)


def _properties(params: Mapping[str, str]) -> dict[str, str]:
    return {k[:255]: v for k, v in params.items() if k not in _VENDOR_RESERVED}


def routes(public: PublicApi) -> list[Route]:
    api = IdentityApi(public)
    endpoint = Callable[[Request], Awaitable[Response]]
    table: list[tuple[str, endpoint, list[str]]] = [
        (IDENTIFY_PATH, api.identify, ["POST"]),
        ("/api/alias", api.alias, ["POST"]),
        ("/a", api.vendor_alias, ["GET"]),
        ("/e", api.vendor_event, ["GET"]),
        ("/s", api.vendor_set, ["GET"]),
        ("/api/persons/{name:path}/journey", api.journey, ["GET"]),
        ("/api/persons/{name:path}/export", api.export, ["GET"]),
        ("/api/persons/{name:path}", api.show, ["GET"]),
        ("/api/persons/{name:path}", api.erase, ["DELETE"]),
        ("/api/identity/explain", api.explain, ["GET"]),
        ("/api/identity/split", api.split, ["POST"]),
    ]
    return [Route(path, fn, methods=methods) for path, fn, methods in table]
