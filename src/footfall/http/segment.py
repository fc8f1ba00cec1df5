"""The Segment-spec HTTP tracking API, so Segment's and RudderStack's libraries work by
changing one host name: ``/v1/track|identify|alias|page|screen|group`` (one message),
``/v1/batch`` and ``/v1/import`` (many), and analytics.js's short forms (``/v1/t`` ...,
``/v1/b``; ``/v1/m``, its metrics, is answered and dropped).

A site's public write key authenticates (HTTP Basic user, or ``writeKey`` in the body); a
secret API key (``Authorization: Bearer``) may send too, without the per-IP rate limit
(``footfall import --server``). The mapping is ``footfall.ingest.segment``'s. Answers as
Segment documents them: 200 ``{"success": true}``, 400 for a body that is not JSON or over
the limits (32 KB a single call; a batch: the ``segment_max_batch_bytes`` setting, 9 MB by
default, and 10,000 messages); a batch's messages that break a rule or are over 32 KB are
dropped alone and listed in ``rejected``, a single call that breaks one answers 400. Error
answers carry ``code`` and ``message`` at the top level too, where Segment's libraries
read them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.errors import (
    ORIGIN_NOT_ALLOWED,
    RATE_LIMITED,
    TOO_LARGE,
    UNAUTHORIZED,
    ApiError,
    malformed,
)
from footfall.http.shared import (
    Call,
    Gate,
    Services,
    cors_headers,
    json_response,
    presents_secret_key,
    query_site,
    read_body,
)
from footfall.ingest.segment import (
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    SHORT_TYPES,
    TYPES,
    Envelope,
    IdentityCall,
    apply_identity,
    decode_segment_batch,
    erased,
    fast_message_decoder,
    fast_message_row,
    map_message,
    peek_segment_batch,
)
from footfall.ingest.validate import (
    decode_items,
    decode_json,
    fast_decode,
    now_us,
)
from footfall.sites import OriginRefused
from footfall.store.base import REPEATED_MESSAGE, EventRow, Site

log = logging.getLogger("footfall.api")

SINGLE_PATHS = {f"/v1/{kind}": kind for kind in TYPES} | {
    f"/v1/{short}": kind for short, kind in SHORT_TYPES.items()
}
BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")
METRICS_PATH = "/v1/m"
PATHS = (*SINGLE_PATHS, *BATCH_PATHS, METRICS_PATH)
_OK = b'{"success":true}'
_T = TypeVar("_T")


def _basic_user(header: str) -> str | None:
    """The user of ``Authorization: Basic base64(user:password)`` (the write key)."""
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, UNAUTHORIZED, "malformed Basic authorization") from None
    return decoded.partition(":")[0] or None


class SegmentApi:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def _admit(self, request: Request, call: Call) -> Site | None:
        """The site of the key in the headers (a secret API key, Bearer or X-Api-Key: no
        rate limit; a Basic write key), checked before the body is read; None when the key
        is in the body. A Basic write key without Origin or Referer is a server-side
        sender: held to the write-key limit (``Gate.rate_limit_writer``), not the per-IP
        one; every other call (browsers, a key in the body, a refused key) to the per-IP
        limit."""
        if presents_secret_key(request):  # ?site= may name another site of its tenant
            return self.gate.keyed_site(self.gate.authenticated(request), query_site(request))
        header = request.headers.get("authorization", "")
        try:
            key = _basic_user(header)
        except ApiError:
            self.gate.rate_limit(call)
            raise
        if key is None or call.origin is not None:
            self.gate.rate_limit(call)
            return None if key is None else self._site(call, key)
        try:
            site = self._site(call, key)
        except ApiError:
            self.gate.rate_limit(call)  # a refused key counts against its IP, as before
            raise
        self.gate.rate_limit_writer(call, key)
        return site

    @staticmethod
    def _decoded(decode: Callable[[], _T], site: Site | None) -> _T:
        """The body decoded; when it is unreadable and no key came in the headers, the
        key (which would be in the body) is what is missing: 401, not 400."""
        try:
            return decode()
        except ApiError:
            if site is None:
                raise ApiError(
                    401, UNAUTHORIZED, "a write key is required (Basic user or writeKey)"
                ) from None
            raise

    def _site(self, call: Call, key: Any) -> Site:
        """The write key's site; its origins apply."""
        services = self.gate.running()
        if not key or not isinstance(key, str):
            raise ApiError(401, UNAUTHORIZED, "a write key is required (Basic user or writeKey)")
        site_id = self.gate.keys.write_site_id(services.store, key)
        site = services.sites.sites.get(site_id) if site_id else None
        if site is None:
            raise ApiError(401, UNAUTHORIZED, "unknown or revoked write key")
        if not services.sites.allows(site, call.origin):
            services.refusals.record(site.id, call.origin)
            raise OriginRefused(site.id, call.origin)
        return site

    def _envelope(self, site: Site, call: Call, sent_at: Any, context: Any) -> Envelope:
        return Envelope(
            site_id=site.id,
            received_us=now_us(),
            user_agent=call.user_agent,
            sent_at=sent_at,
            context=context if isinstance(context, dict) else None,
        )

    async def single(self, request: Request) -> Response:
        call = Call.of(request)
        keyed = await self._admit(request, call)
        raw = await read_body(request, call, MAX_MESSAGE_BYTES)
        message = self._decoded(lambda: _one_message(raw), keyed)
        site = keyed or self._site(call, message.get("writeKey"))
        kind = SINGLE_PATHS[request.url.path]
        try:
            mapped = map_message(message, self._envelope(site, call, None, None), kind)
        except ApiError as error:  # Segment answers a single call's faults with 400
            raise ApiError(400, error.code, error.message, error.field) from None
        row, identity = mapped.row, mapped.identity
        stored = await self._store(site, [row] if row else [], [identity] if identity else [])
        return json_response({"success": True, "stored": stored}, headers=cors_headers(call.origin))

    async def batch(self, request: Request) -> Response:
        call = Call.of(request)
        keyed = await self._admit(request, call)
        raw = await read_body(request, call, self.gate.running().settings.segment_max_batch_bytes)
        stored = await self._batch_in_worker(raw, call, keyed)
        if stored is not None:
            return json_response(
                {"success": True, "stored": stored}, headers=cors_headers(call.origin)
            )
        body = self._decoded(lambda: decode_segment_batch(raw), keyed)
        site = keyed or self._site(call, body.writeKey)
        if len(body.batch) > MAX_BATCH_MESSAGES:
            raise ApiError(400, TOO_LARGE, f"more than {MAX_BATCH_MESSAGES} messages in one batch")
        # A message over MAX_MESSAGE_BYTES is refused alone (in ``rejected``, by
        # ``decode_items``), like a message that breaks a rule: the others are stored.
        envelope = self._envelope(site, call, body.sentAt, body.context)
        # Track, page and screen messages of the common shape take the fast path; the rest
        # (and each one it refuses) are decoded and mapped by the exact rules.
        fast = [
            None if message is None else fast_message_row(message, envelope)
            for message in fast_decode(body.batch, fast_message_decoder, MAX_MESSAGE_BYTES)
        ]
        slow = [item for item, row in zip(body.batch, fast, strict=True) if row is None]
        exact = iter(decode_items(b"".join(slow), slow, b"", MAX_MESSAGE_BYTES) if slow else ())
        rows: list[EventRow] = []
        calls: list[IdentityCall] = []
        rejected: list[dict[str, Any]] = []
        services = self.gate.running()
        most_calls = (
            None if presents_secret_key(request) else services.settings.identity_calls_per_request
        )
        for index, row in enumerate(fast):
            if row is not None:
                rows.append(row)
                continue
            try:
                message = next(exact)
                if isinstance(message, ApiError):
                    raise message
                mapped = map_message(message, envelope)
            except ApiError as error:
                rejected.append({"index": index, **error.body()})
                continue
            if mapped.identity is not None:
                if most_calls is not None and len(calls) >= most_calls:
                    refused = ApiError(
                        429,
                        RATE_LIMITED,
                        f"more than {most_calls} identify, alias and group messages in one "
                        "batch; send the rest in another batch",
                    )
                    rejected.append({"index": index, **refused.body()})
                    continue
                calls.append(mapped.identity)
            if mapped.row is not None:
                rows.append(mapped.row)
        stored = await self._store(site, rows, calls)
        answer: dict[str, Any] = {"success": True, "stored": stored}
        if rejected:
            answer["accepted"] = len(fast) - len(rejected)
            answer["rejected"] = rejected
        return json_response(answer, headers=cors_headers(call.origin))

    async def _batch_in_worker(self, raw: bytes, call: Call, keyed: Site | None) -> int | None:
        """The events stored of a batch a worker took whole (every message valid, of the
        fast path's kinds); None when it is decided here, message by message."""
        services = self.gate.running()
        workers = services.ingest_workers(raw)
        if workers is None:
            return None
        well_formed, sent_at, context, write_key = peek_segment_batch(raw)
        if not well_formed:
            return None
        try:
            site = keyed or self._site(call, write_key)
        except ApiError:  # said below, after the body's own faults, as always
            return None
        encoded = await workers.segment_batch(raw, self._envelope(site, call, sent_at, context))
        if encoded is None or services.names_erased(site, encoded):
            return None
        flags = await services.committer.submit(encoded)
        return sum(1 for flag in flags if flag != REPEATED_MESSAGE)

    async def _store(self, site: Site, rows: list[EventRow], calls: list[IdentityCall]) -> int:
        """Identity calls in message order (in a worker thread), then the events in one
        group commit; answered once both are done. Returns the events stored now."""
        services = self.gate.running()
        if services.tombstones:
            rows = [row for row in rows if not services.erased(site, row)]
        if calls:
            work = [functools.partial(_apply_one, services, site, call) for call in calls]
            await services.identity_turns.run(site.scope, work)
        if not rows:
            return 0
        flags = await services.committer.submit(rows)
        return sum(1 for flag in flags if flag != REPEATED_MESSAGE)

    async def metrics(self, request: Request) -> Response:
        """analytics.js reports its own delivery metrics here: answered, not kept."""
        call = Call.of(request)
        self.gate.rate_limit(call)
        await read_body(request, call, MAX_MESSAGE_BYTES)
        return Response(_OK, media_type="application/json", headers=cors_headers(call.origin))

    async def preflight(self, request: Request) -> Response:
        """Browsers ask before a JSON or Basic-authorised call. The site is known only from
        the key in the call itself (which checks the Origin again): here an origin that
        some site allows gets the permission, any other a 403."""
        call = Call.of(request)
        registry = self.gate.running().sites
        if request.headers.get("origin") is None or call.origin is None:
            raise ApiError(403, ORIGIN_NOT_ALLOWED, "preflight without an Origin header")
        if not any(registry.allows(site, call.origin) for site in registry.sites.values()):
            raise ApiError(403, ORIGIN_NOT_ALLOWED, f"origin {call.origin} is not allowed")
        headers = {
            **cors_headers(call.origin),
            "access-control-allow-methods": "POST, OPTIONS",
            "access-control-allow-headers": "Content-Type, Authorization, Content-Encoding",
            "access-control-max-age": "86400",
        }
        return Response(status_code=204, headers=headers)


def _one_message(raw: bytes) -> dict[str, Any]:
    message = decode_json(raw)
    if not isinstance(message, dict):
        raise malformed("the body must be a JSON object (one message)")
    return message


def _apply_one(services: Services, site: Site, call: IdentityCall) -> None:
    """Each call alone: the mapping checked their ids, so a refusal here is rare (an alias
    whose earlier id is too long to be a token) and costs only that call."""
    if erased(services.tombstones, site.scope, call):
        return
    try:
        apply_identity(services.identity, site.scope, call, f"segment:{site.id}")
    except ApiError as error:
        log.warning("identity call dropped", extra={"kind": call.kind, "why": error.message})


def routes(gate: Gate) -> list[Route]:
    api = SegmentApi(gate)
    return [
        *(Route(path, api.single, methods=["POST"]) for path in SINGLE_PATHS),
        *(Route(path, api.batch, methods=["POST"]) for path in BATCH_PATHS),
        Route(METRICS_PATH, api.metrics, methods=["POST"]),
        *(Route(path, api.preflight, methods=["OPTIONS"]) for path in PATHS),
    ]
