"""Where a tracking call enters: single events (POST and the legacy GET), batches, their CORS
preflights, and the benchmark's no-op twin of the tracking route.

Each handler passes the gate (``shared.Gate``), has the body validated into rows
(``footfall.ingest.validate``) and waits for the group commit (``footfall.ingest.commit``):
the answer is sent only once the rows are durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.config import Settings
from footfall.errors import ORIGIN_NOT_ALLOWED, ApiError, invalid
from footfall.http.shared import (
    BATCH_NOOP_PATH,
    BATCH_PATH,
    IDENTIFY_PATH,
    JSON,
    NOOP_PATH,
    TRACK_PATHS,
    Call,
    Gate,
    cors_headers,
    presents_secret_key,
    query_site,
    read_body,
)
from footfall.http.tracker import renew_id_cookie
from footfall.ingest.validate import (
    MAX_PAYLOAD_BYTES,
    RequestContext,
    check_size,
    decode_items,
    decode_json,
    fast_decode,
    fast_event_decoder,
    fast_rows,
    parse_batch,
    parse_legacy_query,
    peek_batch_site,
    strict_query,
    validate_event,
)
from footfall.store.base import EventRow, Site

_OK = b'{"success":true}'
_OK_DUPLICATE = b'{"success":true,"duplicate":true}'
_OK_ERASED = b'{"success":true,"erased":true}'
_encoder = msgspec.json.Encoder()


def _answer(flags: list[int], headers: dict[str, str]) -> Response:
    body = _OK_DUPLICATE if flags and flags[0] else _OK
    return Response(body, media_type=JSON, headers=headers)


def _detail(error: ApiError) -> dict[str, Any]:
    return {"error": error.body()["error"]}


_STORED = [b'{"index":%d,"success":true,"status":200}' % i for i in range(10_000)]
"""A stored event's result, for every index a batch may have (max_batch_events <= 10,000)."""


def _stored(index: int) -> bytes:
    return _STORED[index]


def _result(index: int, **flags: bool) -> bytes:
    return _encoder.encode({"index": index, "success": True, "status": 200, **flags})


class Tracking:
    """The tracking routes' handlers."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def track_post(self, request: Request) -> Response:
        gate = self.gate
        call = Call.of(request)
        gate.rate_limit(call)
        site = gate.site_for(request, call)
        raw = await read_body(request, call, MAX_PAYLOAD_BYTES)
        check_size(raw)
        body = decode_json(raw)
        named = body.get("site") if isinstance(body, dict) else None
        if named is not None:  # "site" in the body names it too, as in a batch
            if not isinstance(named, str):
                raise invalid("site", "must be a string")
            site = gate.site_for(request, call, named)
        row = validate_event(body, gate.context(call, site))
        response = await self.commit(site, row, call)
        if request.scope["query_string"]:  # footfall.js names its id cookie there
            renew_id_cookie(request, call.origin, row, response)
        return response

    async def commit(self, site: Site, row: EventRow, call: Call) -> Response:
        services = self.gate.running()
        if services.erased(site, row):
            return Response(_OK_ERASED, media_type=JSON, headers=cors_headers(call.origin))
        flags = await services.committer.submit([row])
        return _answer(flags, cors_headers(call.origin))

    async def track_get(self, request: Request) -> Response:
        gate = self.gate
        call = Call.of(request)
        gate.rate_limit(call)
        site = gate.site_for(request, call)
        params = strict_query(request.scope["query_string"])
        row = parse_legacy_query(params, gate.context(call, site))
        return await self.commit(site, row, call)

    async def batch(self, request: Request) -> Response:
        """Up to N events; each is validated alone, valid ones are committed together."""
        gate = self.gate
        services = gate.running()
        call = Call.of(request)
        # A secret API key (footfall import --server) writes with its own authority: its
        # site or another of its tenant, never the public origin rules; no per-IP limit.
        keyed = gate.authenticated(request) if presents_secret_key(request) else None
        if keyed is None:
            gate.rate_limit(call)
        raw = await read_body(request, call, services.settings.max_batch_bytes)
        workers = services.ingest_workers(raw)
        if workers is not None:
            # A worker takes the whole batch if every event is valid; anything else (a bad
            # body, an unknown site, one bad event) is decided below, as it would be anyway.
            well_formed, named = peek_batch_site(raw)
            try:
                site = self._site(request, call, keyed, named) if well_formed else None
            except ApiError:
                site = None
            if site is not None:
                ctx = gate.context(call, site, keyed is not None)
                limit = services.settings.max_batch_events
                encoded = await workers.tracking_batch(raw, ctx, limit)
                if encoded is not None and not services.names_erased(site, encoded):
                    flags = await services.committer.submit(encoded)
                    return _batch_answer(_STORED[: len(flags)], flags, range(len(flags)), call)
        events, named = parse_batch(raw)
        site = self._site(request, call, keyed, named)
        limit = services.settings.max_batch_events
        if len(events) > limit:
            raise invalid("events", f"at most {limit} events per batch")
        ctx = gate.context(call, site, keyed is not None)
        # The common valid events take the fast path; the rest (and each one it refuses)
        # are decoded and checked by the exact rules, in their place in the batch.
        fast = fast_rows(fast_decode(events, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
        slots: Sequence[int]
        if None not in fast and not services.tombstones:  # the common batch: all stored
            rows = list(filter(None, fast))
            slots = range(len(rows))
            results = _STORED[: len(rows)]
        else:
            results, rows, slots = self._each(request, call, keyed, site, ctx, events, fast)
        flags = await services.committer.submit(rows)
        return _batch_answer(results, flags, slots, call)

    def _site(self, request: Request, call: Call, keyed: Site | None, named: str | None) -> Site:
        if keyed is not None:
            return self.gate.keyed_site(keyed, named or query_site(request))
        return self.gate.site_for(request, call, named)

    def _each(
        self,
        request: Request,
        call: Call,
        keyed: Site | None,
        site: Site,
        ctx: RequestContext,
        events: list[msgspec.Raw],
        fast: list[EventRow | None],
    ) -> tuple[list[bytes], list[EventRow], list[int]]:
        """A batch event by event: each one's result (a JSON fragment: a stored event's is
        made once per index, only the rare others are encoded one by one), the rows to
        store and their indexes. Events the fast path refused get the exact rules."""
        gate = self.gate
        services = gate.running()
        contexts = {site.id: (site, ctx)}
        slow = [item for item, row in zip(events, fast, strict=True) if row is None]
        exact = iter(decode_items(b"".join(slow), slow, b"") if slow else ())
        results: list[bytes] = []
        rows: list[EventRow] = []
        slots: list[int] = []
        for index, row in enumerate(fast):
            try:
                event_site = site
                if row is None:
                    body = next(exact)
                    if isinstance(body, ApiError):
                        raise body
                    event_ctx = ctx
                    own = body.get("site") if isinstance(body, dict) else None
                    if own is not None and own != site.id:
                        # An event naming another site is stored there if this caller may
                        # write to it (its Origin allowed), else it alone is refused.
                        if not isinstance(own, str):
                            raise invalid("site", "must be a string")
                        if own not in contexts:
                            other = self._site(request, call, keyed, own)
                            contexts[own] = (other, gate.context(call, other, keyed is not None))
                        event_site, event_ctx = contexts[own]
                    row = validate_event(body, event_ctx)
                if services.erased(event_site, row):
                    results.append(_result(index, erased=True))
                    continue
                results.append(_stored(index))
                rows.append(row)
                slots.append(index)
            except ApiError as error:
                results.append(
                    _encoder.encode(
                        {"index": index, "success": False, "status": error.status, **_detail(error)}
                    )
                )
        return results, rows, slots

    async def noop(self, request: Request) -> Response:
        """Benchmark baseline: the same server, framework and body read, no ingest work."""
        await read_body(request, Call.of(request), MAX_PAYLOAD_BYTES)
        return Response(_OK, media_type=JSON)

    async def noop_batch(self, request: Request) -> Response:
        """Batch benchmark baseline: reads and JSON-decodes the body, stores nothing."""
        services = self.gate.running()
        raw = await read_body(request, Call.of(request), services.settings.max_batch_bytes)
        decode_json(raw)
        return Response(_OK, media_type=JSON)

    async def preflight(self, request: Request) -> Response:
        """CORS preflight: answered with permissions only for origins the site allows."""
        call = Call.of(request)
        if call.origin is None or request.headers.get("origin") is None:
            raise ApiError(403, ORIGIN_NOT_ALLOWED, "preflight without an Origin header")
        method = request.headers.get("access-control-request-method", "").upper()
        if method not in ("GET", "POST"):
            raise ApiError(403, ORIGIN_NOT_ALLOWED, f"method {method or '(none)'} is not allowed")
        self.gate.site_for(request, call)
        headers = {
            **cors_headers(call.origin),
            "access-control-allow-methods": "GET, POST, OPTIONS",
            "access-control-allow-headers": "Content-Type",
            "access-control-max-age": "86400",
        }
        return Response(status_code=204, headers=headers)


def routes(gate: Gate, settings: Settings) -> list[Route]:
    """The tracking routes, first in the app's table: they take nearly all the traffic."""
    tracking = Tracking(gate)
    table = [
        *(Route(p, tracking.track_post, methods=["POST"]) for p in TRACK_PATHS),
        *(Route(p, tracking.track_get, methods=["GET"]) for p in TRACK_PATHS[:2]),
        *(
            Route(p, tracking.preflight, methods=["OPTIONS"])
            for p in (*TRACK_PATHS, BATCH_PATH, IDENTIFY_PATH)
        ),
        Route(BATCH_PATH, tracking.batch, methods=["POST"]),
    ]
    if settings.bench_noop:
        # First in the table, like the tracking route, so routing costs both the same.
        table.insert(0, Route(NOOP_PATH, tracking.noop, methods=["POST"]))
        table.append(Route(BATCH_NOOP_PATH, tracking.noop_batch, methods=["POST"]))
    return table


def _batch_answer(
    results: list[bytes], flags: Sequence[int], slots: Sequence[int], call: Call
) -> Response:
    """The batch answer: per event its result (``slots``: the indexes of the stored ones,
    whose ``flags`` may mark repeats)."""
    for slot, flag in zip(slots, flags, strict=True):
        if flag:
            results[slot] = _result(slot, duplicate=True)
    accepted = len(slots)
    head = _encoder.encode(
        {
            "success": accepted == len(results),
            "accepted": accepted,
            "rejected": len(results) - accepted,
        }
    )
    payload = b"".join((head[:-1], b',"results":[', b",".join(results), b"]}"))
    return Response(payload, media_type=JSON, headers=cors_headers(call.origin))
