"""The admin HTTP API: sites, their secret API keys and their public write keys, managed
while the server runs.

Callers present ``Authorization: Bearer`` with the configured ``admin_token`` (every site) or
a site API key (``Bearer`` or ``X-Api-Key``), which manages its own tenant's sites only:
another tenant's site answers 404, as a missing one does. The rules live in
``footfall.sites`` (shared with the dashboard and the CLI); a change applies in this process
at once (sites reloaded, a revoked key dropped from the key cache) and in other processes on
the same PostgreSQL database within ``cache_refresh_seconds`` (sites) and 30 s (keys).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall import sites
from footfall.access import admin_token_matches
from footfall.errors import invalid, malformed
from footfall.http.shared import Call, Gate, Services, json_response, read_body, run_blocking
from footfall.ingest.validate import decode_json
from footfall.sites import Authority
from footfall.store.base import Site

log = logging.getLogger("footfall.admin")

ADMIN_PREFIX = "/api/admin"
MAX_ADMIN_BODY = 65_536
SITE_FIELDS = frozenset({"id", "name", "allowed_origins", "tenant"})
SITE_CHANGES = SITE_FIELDS - {"id"}
KEY_FIELDS = frozenset({"label"})


class AdminApi:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def authority(self, request: Request) -> Authority:
        """The admin token's full authority, or the presented key's tenant (else 401)."""
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        services = self.gate.running()
        if bearer and admin_token_matches(services.settings, bearer):
            return Authority.admin("admin-token")
        return Authority.of_key(self.gate.site_for_key(bearer or request.headers.get("x-api-key")))

    async def _body(self, request: Request, allowed: frozenset[str]) -> dict[str, Any]:
        raw = await read_body(request, Call.of(request), MAX_ADMIN_BODY)
        if not raw.strip():
            return {}
        body = decode_json(raw)
        if not isinstance(body, dict):
            raise malformed("the body must be a JSON object")
        for name in body:
            if name not in allowed:
                # A key named "" is named as JSON writes it, so the error still has a field.
                field = str(name)[:64] or '""'
                raise invalid(field, f"unknown field; known: {', '.join(sorted(allowed))}")
        return body

    async def _documents(self, services: Services, chosen: list[Site]) -> list[dict[str, Any]]:
        await services.committer.settled()  # last event times include everything answered
        activity = await run_blocking(sites.site_activity, services.store)
        writers = await run_blocking(sites.active_write_keys, services.store)
        return [
            sites.site_document(s, services.settings, activity.get(s.id), writers.get(s.id))
            for s in chosen
        ]

    async def list_sites(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        listed = await run_blocking(services.store.list_sites)
        return json_response({"sites": await self._documents(services, authority.visible(listed))})

    async def get_site(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        site = await run_blocking(
            sites.managed_site, services.store, authority, request.path_params["site_id"]
        )
        [document] = await self._documents(services, [site])
        return json_response({"site": document})

    async def create_site(self, request: Request) -> Response:
        authority = self.authority(request)
        body = await self._body(request, SITE_FIELDS)  # null: not given (the default)
        services = self.gate.running()
        if "id" not in body:
            raise invalid("id", "required")
        site = await run_blocking(
            sites.create_site,
            services.store,
            authority,
            body["id"],
            body.get("name"),
            body.get("allowed_origins"),
            body.get("tenant"),
        )
        await run_blocking(services.reload_sites)
        log.info("site created", extra={"site": site.id, "actor": authority.actor})
        [document] = await self._documents(services, [site])
        return json_response({"success": True, "site": document}, status=201)

    async def update_site(self, request: Request) -> Response:
        authority = self.authority(request)
        body = await self._body(request, SITE_CHANGES)
        services = self.gate.running()
        changes = {  # null: unchanged
            "origins" if k == "allowed_origins" else k: v for k, v in body.items() if v is not None
        }
        site = await run_blocking(
            sites.update_site, services.store, authority, request.path_params["site_id"], **changes
        )
        await run_blocking(services.reload_sites)
        log.info(
            "site changed",
            extra={"site": site.id, "fields": sorted(body), "actor": authority.actor},
        )
        [document] = await self._documents(services, [site])
        return json_response({"success": True, "site": document})

    async def set_ticket_cost(self, request: Request) -> Response:
        """The site's cost per support ticket (the deflection report's savings)."""
        authority = self.authority(request)
        body = await self._body(request, frozenset({"cost_per_ticket", "ticket_currency"}))
        services = self.gate.running()
        site_id = request.path_params["site_id"]
        cost = await run_blocking(
            sites.manage_ticket_cost,
            services.store,
            authority,
            site_id,
            body.get("cost_per_ticket"),
            body.get("ticket_currency", "EUR"),
        )
        log.info("ticket cost changed", extra={"site": site_id, "actor": authority.actor})
        return json_response({"success": True, **sites.ticket_cost_document(site_id, cost)})

    async def get_write_key(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        key = await run_blocking(
            sites.site_write_key, services.store, authority, request.path_params["site_id"]
        )
        return json_response(sites.write_key_document(key))

    async def rotate_write_key(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        key = await run_blocking(
            sites.site_write_key,
            services.store,
            authority,
            request.path_params["site_id"],
            rotate=True,
        )
        self.gate.keys.forget_write_keys(key.site_id)
        log.info("write key rotated", extra={"site": key.site_id, "actor": authority.actor})
        return json_response({"success": True, **sites.write_key_document(key)}, status=201)

    async def revoke_write_key(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        site_id = await run_blocking(
            sites.drop_write_key, services.store, authority, request.path_params["site_id"]
        )
        self.gate.keys.forget_write_keys(site_id)
        log.info("write key revoked", extra={"site": site_id, "actor": authority.actor})
        return json_response({"success": True, "site_id": site_id})

    async def list_keys(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        keys = await run_blocking(
            sites.site_keys, services.store, authority, request.path_params["site_id"]
        )
        return json_response({"keys": [sites.key_document(k) for k in keys]})

    async def create_key(self, request: Request) -> Response:
        authority = self.authority(request)
        body = await self._body(request, KEY_FIELDS)
        services = self.gate.running()
        record, secret = await run_blocking(
            sites.create_key,
            services.store,
            authority,
            request.path_params["site_id"],
            body.get("label"),
        )
        log.info(
            "api key created",
            extra={"site": record.site_id, "key_id": record.key_id, "actor": authority.actor},
        )
        return json_response(
            {"success": True, "key": secret, "record": sites.key_document(record)}, status=201
        )

    async def revoke_key(self, request: Request) -> Response:
        authority = self.authority(request)
        services = self.gate.running()
        record = await run_blocking(
            sites.revoke_key, services.store, authority, request.path_params["key_id"]
        )
        self.gate.keys.forget(record.key_id)
        log.info(
            "api key revoked",
            extra={"site": record.site_id, "key_id": record.key_id, "actor": authority.actor},
        )
        return json_response({"success": True, "record": sites.key_document(record)})


def routes(gate: Gate) -> list[Route]:
    api = AdminApi(gate)
    endpoint = Callable[[Request], Awaitable[Response]]
    table: list[tuple[str, endpoint, list[str]]] = [
        ("/sites", api.list_sites, ["GET"]),
        ("/sites", api.create_site, ["POST"]),
        ("/sites/{site_id}", api.get_site, ["GET"]),
        ("/sites/{site_id}", api.update_site, ["PATCH"]),
        ("/sites/{site_id}/ticket-cost", api.set_ticket_cost, ["PUT"]),
        ("/sites/{site_id}/keys", api.list_keys, ["GET"]),
        ("/sites/{site_id}/keys", api.create_key, ["POST"]),
        ("/sites/{site_id}/write-key", api.get_write_key, ["GET"]),
        ("/sites/{site_id}/write-key", api.rotate_write_key, ["POST"]),
        ("/sites/{site_id}/write-key", api.revoke_write_key, ["DELETE"]),
        ("/keys/{key_id}", api.revoke_key, ["DELETE"]),
    ]
    return [Route(ADMIN_PREFIX + path, fn, methods=methods) for path, fn, methods in table]
