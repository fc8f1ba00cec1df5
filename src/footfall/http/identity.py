"""HTTP endpoints for identity: the public identify call, the keyed alias, and the person
API (show, journey, explain, split, export, erase), all over ``footfall.identity``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.errors import ApiError, invalid, malformed
from footfall.http.shared import (
    IDENTIFY_PATH,
    Call,
    Gate,
    Services,
    cors_headers,
    json_response,
    read_body,
    run_blocking,
)
from footfall.identity import Identifier, checked_name, user_identifiers
from footfall.ingest.validate import MAX_PAYLOAD_BYTES, decode_json, flag, validate_token
from footfall.store.base import Site


class IdentityApi:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def svc(self) -> Services:
        return self.gate.running()

    # ------------------------------------------------------------------ public identify

    async def identify(self, request: Request) -> Response:
        call = Call.of(request)
        self.gate.rate_limit(call)
        raw = await read_body(request, call, MAX_PAYLOAD_BYTES)
        body = decode_json(raw)
        if not isinstance(body, dict):
            raise malformed("identify payload must be a JSON object")
        site = self.gate.site_for(request, call, _opt_str(body.get("site"), "site"))
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
            return json_response(
                {"success": True, "erased": True}, headers=cors_headers(call.origin)
            )
        identify = functools.partial(
            services.identity.identify,
            tenant,
            token,
            user.get("uniqueClientId"),
            user.get("email"),
            metadata,
            ephemeral,
        )
        await services.identity_turns.run(tenant, [identify])
        return json_response({"success": True}, headers=cors_headers(call.origin))

    # ------------------------------------------------------------------ keyed alias

    async def alias(self, request: Request) -> Response:
        site = self.gate.authenticated(request)
        body = decode_json(await read_body(request, Call.of(request), MAX_PAYLOAD_BYTES))
        if not isinstance(body, dict):
            raise malformed("alias payload must be a JSON object")
        a = checked_name(body.get("a"), "a")
        b = checked_name(body.get("b"), "b")
        person = await run_blocking(
            self.svc().identity.alias, site.scope, a, b, f"api-key:{site.id}"
        )
        return json_response({"success": True, "person_id": person})

    # ------------------------------------------------------------------ person API

    async def _person(self, request: Request) -> tuple[Site, int]:
        site = self.gate.authenticated(request)
        name = request.path_params["name"]
        # Show, journey, export and erase read (or delete) events: every event answered
        # before this request must be in the database first (read-your-writes).
        await self.svc().committer.settled()
        node = await run_blocking(self.svc().identity.locate, site.scope, name)
        if node is None:
            raise ApiError(404, "NOT_FOUND", "no person with that identifier")
        return site, node.person_id

    async def show(self, request: Request) -> Response:
        site, person = await self._person(request)
        profile = await run_blocking(self.svc().identity.profile, site.scope, person)
        return json_response(profile)

    async def journey(self, request: Request) -> Response:
        site, person = await self._person(request)
        limit = _limit(request.query_params.get("limit"))
        events = await run_blocking(self.svc().identity.person_events, site.scope, person, limit)
        return json_response({"person_id": person, "events": events})

    async def export(self, request: Request) -> Response:
        site, person = await self._person(request)
        document = await run_blocking(self.svc().identity.export, site.scope, person)
        return json_response(
            document,
            headers={"content-disposition": f'attachment; filename="person-{person}.json"'},
        )

    async def erase(self, request: Request) -> Response:
        site, person = await self._person(request)
        services = self.svc()
        counts = await run_blocking(
            services.identity.erase, site.scope, person, f"api-key:{site.id}"
        )
        services.tombstones = await run_blocking(services.identity.tombstones)
        return json_response({"success": True, "person_id": person, "erased": counts})

    async def explain(self, request: Request) -> Response:
        site = self.gate.authenticated(request)
        a = checked_name(request.query_params.get("a"), "a")
        b = checked_name(request.query_params.get("b"), "b")
        steps = await run_blocking(self.svc().identity.explain, site.scope, a, b)
        if steps is None:
            return json_response({"same_person": False, "chain": []})
        return json_response({"same_person": True, "chain": [s.to_dict() for s in steps]})

    async def split(self, request: Request) -> Response:
        site = self.gate.authenticated(request)
        body = decode_json(await read_body(request, Call.of(request), MAX_PAYLOAD_BYTES))
        if not isinstance(body, dict):
            raise malformed("split payload must be a JSON object")
        a, b = checked_name(body.get("a"), "a"), checked_name(body.get("b"), "b")
        first, second = await run_blocking(
            self.svc().identity.split, site.scope, a, b, f"api-key:{site.id}"
        )
        return json_response(
            {"success": True, "a_person": first, "b_person": second, "separated": first != second}
        )


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


def routes(gate: Gate) -> list[Route]:
    api = IdentityApi(gate)
    endpoint = Callable[[Request], Awaitable[Response]]
    table: list[tuple[str, endpoint, list[str]]] = [
        (IDENTIFY_PATH, api.identify, ["POST"]),
        ("/api/alias", api.alias, ["POST"]),
        ("/api/persons/{name:path}/journey", api.journey, ["GET"]),
        ("/api/persons/{name:path}/export", api.export, ["GET"]),
        ("/api/persons/{name:path}", api.show, ["GET"]),
        ("/api/persons/{name:path}", api.erase, ["DELETE"]),
        ("/api/identity/explain", api.explain, ["GET"]),
        ("/api/identity/split", api.split, ["POST"]),
    ]
    return [Route(path, fn, methods=methods) for path, fn, methods in table]
