"""The OpenAPI document, generated from typed descriptions of the public API's bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from footfall import __version__
from footfall.analytics.reports import BREAKDOWNS, INTERVALS, REPORTS
from footfall.ingest.validate import (
    EVENT_TYPES,
    MAX_AMOUNT,
    MAX_CURRENCY_CHARS,
    MAX_FORM_CHARS,
    MAX_ID_CHARS,
    MAX_ITEM_ID_CHARS,
    MAX_ITEMS,
    MAX_QUANTITY,
    MAX_QUESTION_CHARS,
)

if TYPE_CHECKING:
    EventName = str
else:  # the schema lists every accepted event name, from the one list ingest checks
    EventName = Literal[tuple(sorted(EVENT_TYPES | {"tracktrans"}))]
Token = Annotated[str, Meta(min_length=8, max_length=128, pattern="^[A-Za-z0-9_-]+$")]
# Ids may arrive as numbers from some integrations; they are kept as text.
ShortId = Annotated[str, Meta(max_length=MAX_ID_CHARS)] | int | float
ItemId = Annotated[str, Meta(max_length=MAX_ITEM_ID_CHARS)] | int | float
# Amounts are JSON numbers from 0 (text such as "12" and negative amounts are refused).
Amount = Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]


class Item(msgspec.Struct, omit_defaults=True):
    """A cart or purchase line; ``id`` and ``price`` are accepted as older spellings."""

    item_id: ItemId | None = None
    id: ItemId | None = None
    value: Amount | None = None
    price: Amount | None = None
    quantity: Annotated[
        float, Meta(ge=1, le=MAX_QUANTITY, multiple_of=1, description="A whole number")
    ] = 1
    currency: Annotated[str, Meta(max_length=MAX_CURRENCY_CHARS)] | None = None


class EventData(msgspec.Struct, omit_defaults=True):
    """Event payload; fields not listed are kept as free-form properties."""

    chatbot_id: ShortId | None = None
    popup_version: ShortId | None = None
    open_way: Literal["popup", "chat_button"] | None = None
    items: Annotated[list[Item], Meta(max_length=MAX_ITEMS)] | None = None
    orderNum: ShortId | None = None
    currency: Annotated[str, Meta(max_length=MAX_CURRENCY_CHARS)] | None = None
    value: Amount | None = None
    text: Annotated[Any, Meta(description="A chat message (any JSON value is kept)")] = None
    # The form events' keys: their rules hold on the three form types only (other types keep
    # these keys as sent, any JSON value), so the schema states them in words, not as types.
    form: Annotated[
        Any,
        Meta(
            description="form_viewed, answer_shown, ticket_submitted: the form (its id, else the "
            f"page path), text of at most {MAX_FORM_CHARS} characters on those types (other "
            "types keep it as sent); the deflection report's form sessions and per-form rows",
        ),
    ] = None
    question: Annotated[
        Any,
        Meta(
            description="answer_shown, ticket_submitted: the question field's text (grouped like "
            f"the questions report), at most {MAX_QUESTION_CHARS} characters on the three form "
            "types (other types keep it as sent)",
        ),
    ] = None
    answer_id: Annotated[
        Any,
        Meta(
            description="answer_shown: the article or answer shown, text or a number of at most "
            f"{MAX_ID_CHARS} characters on the three form types (other types keep it as sent)",
        ),
    ] = None


class TrackRequest(msgspec.Struct, omit_defaults=True):
    """One event. At most 50,000 bytes JSON-encoded."""

    event: EventName
    token: Token
    data: EventData | None = None
    ab_test: bool | None = False
    ephemeral: bool = False
    site: str | None = None
    url: str | None = None
    ts: Annotated[
        float | None,
        Meta(description="Client time in ms since the epoch; kept when within the past 7 days"),
    ] = None


class TrackResponse(msgspec.Struct):
    success: bool
    duplicate: bool = False
    erased: Annotated[
        bool, Meta(description="The identifier was erased recently: accepted, not stored")
    ] = False


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(msgspec.Struct):
    success: bool
    error: ErrorDetail


class SegmentErrorResponse(msgspec.Struct):
    """An error on the Segment-spec routes (/v1/*): ``code`` and ``message`` at the top level
    too, where Segment's and RudderStack's server libraries read them."""

    success: bool
    code: str
    message: str
    error: ErrorDetail


class BatchRequest(msgspec.Struct):
    events: Annotated[
        list[Any],
        Meta(
            max_length=500,
            description="Events as in TrackRequest. Each is validated on its own: an invalid "
            "one gets its error in `results` (the batch still answers 200), valid ones are "
            "stored",
        ),
    ]
    site: str | None = None


class User(msgspec.Struct, omit_defaults=True):
    uniqueClientId: Annotated[str, Meta(max_length=255)] | int | None = None
    email: (
        Annotated[
            str,
            Meta(
                max_length=255,
                description="An empty string clears the email: the token stops being the "
                "email(s) identify linked it to (from now on; earlier events stay)",
            ),
        ]
        | None
    ) = None
    metadata: dict[str, Any] | None = None


class IdentifyRequest(msgspec.Struct, omit_defaults=True):
    """Link the browser's token with the user's own ids (public, origin-validated)."""

    token: Token
    user: User | None = None
    ephemeral: bool = False
    site: str | None = None


class NamePair(msgspec.Struct):
    """Two names of one person: bare (client id, token, email, alias) or ``kind:value``."""

    a: Annotated[str, Meta(min_length=1, max_length=255)]
    b: Annotated[str, Meta(min_length=1, max_length=255)]


SiteId = Annotated[str, Meta(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")]
Origin = Annotated[
    str,
    Meta(
        max_length=300,
        description="An exact origin (https://shop.com), every subdomain of a domain "
        "(https://*.shop.com; not of a public suffix) or * (any page: for trying out only)",
    ),
]
_SITE_NAME = Annotated[str, Meta(max_length=100, description="Display name; empty: the id")]
_ORIGINS = Annotated[list[Origin], Meta(max_length=100)]
_TENANT = Annotated[
    str,
    Meta(
        pattern="^([a-z0-9][a-z0-9_-]{0,63})?$",
        description="Sites of one tenant share one identity graph; empty: the site's own. "
        "A site key may only name its own tenant",
    ),
]


class SiteCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new site. Null or absent fields take their defaults."""

    id: SiteId
    name: _SITE_NAME | None = None
    allowed_origins: _ORIGINS | None = None
    tenant: _TENANT | None = None


class SiteChange(msgspec.Struct, forbid_unknown_fields=True):
    """Changes to a site; null or absent fields stay as they are."""

    name: _SITE_NAME | None = None
    allowed_origins: _ORIGINS | None = None
    tenant: _TENANT | None = None


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    label: Annotated[str, Meta(max_length=100, description="What the key is for")] | None = None


class SiteDocument(msgspec.Struct):
    id: str
    name: str
    tenant: str
    allowed_origins: list[str]
    write_key: Annotated[
        str | None,
        Meta(
            description="Public write key (fw_...) for Segment-compatible clients; null if revoked"
        ),
    ]
    warnings: Annotated[list[str], Meta(description="E.g. about '*' or no origins at all")]
    configured_in_file: Annotated[
        bool, Meta(description="Declared in the config file, which sets it again at each start")
    ]
    last_event_at: Annotated[str | None, Meta(description="When its last event arrived (UTC)")]
    events_today: Annotated[int, Meta(description="Events since midnight UTC")]


class KeyRecord(msgspec.Struct):
    """A key's record; the key itself is shown once, when it is made."""

    key_id: str
    site_id: str
    kind: Literal["secret"]
    label: str
    created_at: str | None
    revoked: bool
    revoked_at: str | None


class SiteList(msgspec.Struct):
    sites: list[SiteDocument]


class SiteAnswer(msgspec.Struct):
    site: SiteDocument


class SiteSaved(msgspec.Struct):
    success: bool
    site: SiteDocument


class KeyList(msgspec.Struct):
    keys: list[KeyRecord]


class KeyCreated(msgspec.Struct):
    success: bool
    key: Annotated[str, Meta(description="The new key (ff_...): shown only here")]
    record: KeyRecord


class KeyRevoked(msgspec.Struct):
    success: bool
    record: KeyRecord


class WriteKeyAnswer(msgspec.Struct):
    """A site's public write key: it can only send events to its site."""

    write_key: str
    site_id: str
    created_at: str | None


class TicketCostChange(msgspec.Struct):
    """What one support ticket costs the site: the deflection report's savings."""

    cost_per_ticket: (
        Annotated[float, Meta(ge=0, le=1_000_000, description="null clears it")] | str | None
    )
    ticket_currency: Annotated[str, Meta(pattern="^[A-Za-z]{3}$")] = "EUR"


class TicketCostSaved(msgspec.Struct):
    success: bool
    site_id: str
    cost_per_ticket: float | None
    ticket_currency: str | None


class WriteKeyRotated(msgspec.Struct):
    success: bool
    write_key: str
    site_id: str
    created_at: str | None


class WriteKeyRevoked(msgspec.Struct):
    success: bool
    site_id: str


class BatchResult(msgspec.Struct):
    index: int
    success: bool
    status: int
    duplicate: bool = False
    erased: bool = False
    error: ErrorDetail | None = None


class BatchResponse(msgspec.Struct):
    success: bool
    accepted: int
    rejected: int
    results: list[BatchResult]


SegmentId = Annotated[str, Meta(max_length=255)] | int
"""An id: text (empty means absent) or an integer."""


class SegmentMessage(msgspec.Struct, omit_defaults=True):
    """A Segment-spec message (see the README's mapping table). A message needs a userId or
    an anonymousId; ``track`` an ``event``; ``alias`` a ``previousId``; ``group`` a
    ``groupId``. At most 32 KB (JSON)."""

    type: Literal["track", "page", "screen", "identify", "alias", "group"] | None = None
    anonymousId: Annotated[str, Meta(max_length=128)] | int | None = None
    userId: SegmentId | None = None
    messageId: Annotated[str, Meta(min_length=1, max_length=255)] | int | None = None
    event: (
        Annotated[str, Meta(description="track: the event's name (1-255 characters once trimmed)")]
        | None
    ) = None
    name: Any = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: Annotated[
        dict[str, Any] | None,
        Meta(description="userAgent and page kept; ip used for nothing stored"),
    ] = None
    timestamp: str | None = None
    originalTimestamp: str | None = None
    sentAt: str | None = None
    previousId: SegmentId | None = None
    groupId: SegmentId | None = None
    writeKey: str | None = None


class SegmentBatch(msgspec.Struct, omit_defaults=True):
    """Messages with their ``type``; at most segment_max_batch_bytes (9 MB, after gzip) and
    10,000 messages; a message over 32 KB is refused alone in ``rejected``. ``sentAt`` and
    ``context`` apply to the messages without their own."""

    batch: list[Any]
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    writeKey: str | None = None


class SegmentRejected(msgspec.Struct):
    index: int
    success: bool
    error: ErrorDetail


class SegmentResponse(msgspec.Struct, omit_defaults=True):
    success: bool
    stored: Annotated[
        int, Meta(description="Events stored now (a re-sent messageId is not stored again)")
    ] = 0
    accepted: int | None = None
    rejected: Annotated[
        list[SegmentRejected], Meta(description="Messages dropped for breaking a rule")
    ] = []


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        401: "UNAUTHORIZED: missing, unknown or revoked API key",
        404: "NOT_FOUND: no person with that identifier (or no such report)",
        400: "ANALYTICS_001 malformed JSON or invalid payload; ANALYTICS_002 over 50,000 bytes "
        "(Segment-spec API: 32 KB a message, 9 MB a batch); VALIDATION_ERROR (Segment-spec "
        "single calls) a field breaks a rule, `field` names it; BAD_REQUEST not valid HTTP/1.1 "
        "(the message names the fault)",
        408: "REQUEST_TIMEOUT: the body did not arrive within body_timeout_seconds (30 s) of "
        "the headers; the connection is closed",
        403: "ORIGIN_NOT_ALLOWED: the Origin is not allowed for the site (`Origin: null` "
        "only where the site lists null); FORBIDDEN: the key may not read (or, with a secret "
        "key on an ingest route, write to) that site: another tenant's",
        409: "NO_DIRECT_LINK: the two names are not linked directly",
        422: "VALIDATION_ERROR: a field breaks a rule; `field` names it",
        429: "RATE_LIMITED: over the per-IP limit (120/min by default), or (identity calls) "
        "the tenant's queue of identity work is full (identity_backlog_per_tenant); see "
        "Retry-After",
        503: "SERVICE_UNAVAILABLE: the store cannot take events right now, or the server's "
        "identity work is backed up (identity_backlog_total); retry",
    }
    return {str(s): {"description": text[s], "content": _json("ErrorResponse")} for s in statuses}


_SITE_PARAM = {
    "name": "site",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Site id; defaults to the site owning the Origin, else the default site.",
}


_COOKIE_PARAM = {
    "name": "cookie",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "Name of footfall.js's id cookie. When the request carries that cookie with "
    "the event's token and this server shares the page's registrable domain, the answer "
    "renews it with Set-Cookie (399 days). A name outside [A-Za-z0-9_-]{1,64} is ignored.",
}


def to_openapi_30(schema: Any) -> Any:
    """msgspec writes JSON Schema 2020-12; OpenAPI 3.0 tools want ``nullable`` instead.

    3.0 is what the bundled Swagger UI renders and what most clients and fuzzers read.
    """
    if isinstance(schema, list):
        return [to_openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: to_openapi_30(value) for key, value in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out.update(rest[0])
        elif len(rest) == 1:
            out["allOf"] = rest
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if out.get("required") == []:
        del out["required"]
    return out


_NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Any identifier of the person (bare or kind:value), a token seen only "
    "on events (a visitor who never identified) included",
}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", **schema},
        "description": f"{description}; empty means the default",
    }


_REPORT_PARAMS = [
    _query(
        "site",
        "Site id(s), comma-separated, or `all` (every site of the key's tenant); "
        "default: the key's site",
    ),
    _query("from", "Start: a date (2026-03-01) or ISO date-time, UTC"),
    _query("to", "End: a date (whole day included) or ISO date-time"),
    _query("days", "Without from: the last N days (default 30)", pattern="^[0-9]*$"),
    _query("interval", "people, revenue, retention", enum=[*INTERVALS, ""]),
    _query("periods", "retention: periods per cohort (1-52)", pattern="^[0-9]*$"),
    _query(
        "steps",
        "funnel: comma-separated event types or custom:NAME, 2-8; an unknown step answers "
        "422 listing the valid ones",
    ),
    _query("window", "funnel: conversion window, e.g. 3600, 12h, 7d, 2w"),
    _query("breakdown", "funnel: split by", enum=[*BREAKDOWNS, ""]),
    _query("goal", "ab: the conversion event (purchase)"),
    _query("limit", "power-users, errors: rows (1-1000)", pattern="^[0-9]*$"),
    _query("top", "revenue: top items (1-1000)", pattern="^[0-9]*$"),
    _query(
        "session_minutes",
        "deflection: minutes without events that end a form session (1-1440; default the "
        "deflection_session_minutes setting, 30)",
        pattern="^[0-9]*$",
    ),
    _query(
        "window_days",
        "deflection: days after an answered session in which the same person's ticket makes "
        "it deferred (1-90; default the deflection_window_days setting, 7)",
        pattern="^[0-9]*$",
    ),
]


_KEY: list[dict[str, list[str]]] = [{"apiKey": []}, {"apiKeyHeader": []}]
_VENDOR_TIME = (
    {
        "name": "_t",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "With _d=1: the event's time in seconds since the epoch (else unread)",
    },
    {
        "name": "_d",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "1: use _t as the event's time",
    },
)
_TOKEN_SCHEMA = {"type": "string", "minLength": 8, "maxLength": 128, "pattern": "^[A-Za-z0-9_-]+$"}
_FLAG_PATTERN = r"^[ \t\r\n]*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)[ \t\r\n]*$"


def _keyed(summary: str, *statuses: int) -> dict[str, Any]:
    return {
        "tags": ["persons"],
        "summary": summary,
        "security": _KEY,
        "responses": {
            "200": {"description": "OK"},
            **_errors(401, *(statuses or (404, 422))),
        },
    }


def _segment(summary: str, schema: str) -> dict[str, Any]:
    return {
        "tags": ["segment-compatible"],
        "summary": summary,
        "description": "Write key (Basic user or writeKey), or a secret API key (Bearer or "
        "X-Api-Key). "
        "analytics.js's short paths /v1/t, /v1/p, /v1/i, /v1/a, /v1/g, /v1/s and /v1/b are "
        "the same operations; gzip bodies are inflated (Content-Encoding: gzip, at most 64 "
        "members). A write-key batch applies at most identity_calls_per_request (100) "
        "identify, alias and group messages; the rest are refused alone in `rejected` "
        "(RATE_LIMITED). A secret key writes to its site, or with ?site= another of its "
        "tenant.",
        "security": [{"writeKey": []}, {"apiKey": []}, {"apiKeyHeader": []}],
        "requestBody": {"required": True, "content": _json(schema)},
        "responses": {
            "200": {"description": "Accepted", "content": _json("SegmentResponse")},
            **_segment_errors(),
        },
    }


def _segment_errors() -> dict[str, Any]:
    """The Segment routes' errors: their own shape, limits and rate limit."""
    text = {
        401: "UNAUTHORIZED: missing, unknown or revoked write key (or secret API key)",
        400: "ANALYTICS_001 malformed JSON; ANALYTICS_002 a single call over 32 KB, a batch "
        "over segment_max_batch_bytes (9 MB after gzip) or 10,000 messages (a batch's message "
        "over 32 KB is refused alone, in `rejected`); VALIDATION_ERROR a single call's field "
        "breaks a rule, `field` names it",
        429: "RATE_LIMITED: a write key in the Basic header without Origin or Referer (a "
        "server-side sender): over write_key_rate_limit_per_minute (6,000/min per write key "
        "and client IP, bursts of write_key_burst, 1,000); any other call: over the per-IP "
        "limit (120/min by default); or the tenant's identity queue is full; see Retry-After",
    }
    errors = _errors(400, 401, 403, 429, 503)
    for status, answer in errors.items():
        answer["content"] = _json("SegmentErrorResponse")
        answer["description"] = text.get(int(status), answer["description"])
    return errors


_ADMIN_ERRORS = {
    400: "ANALYTICS_001 malformed JSON or not an object; ANALYTICS_002 body over 65,536 bytes",
    401: "UNAUTHORIZED: missing or wrong admin token, unknown or revoked API key",
    403: "FORBIDDEN: a site key named another tenant",
    404: "NOT_FOUND: no such site or key, or one of another tenant",
    409: "CONFLICT: a site with that id exists already",
    422: "VALIDATION_ERROR: a field breaks a rule (an origin, the id, an unknown field); "
    "`field` names it",
}
_SITE_ID_PARAM = {
    "name": "site_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
}
_KEY_ID_PARAM = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
    "description": "The key's id: the part between 'ff_' and the second '_'",
}


def _admin(
    summary: str, answer: str, *statuses: int, body: str | None = None, created: bool = False
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["administration"],
        "summary": summary,
        "description": "Authorization: Bearer with the admin_token (every site), or a site "
        "API key (Bearer or X-Api-Key), which manages its own tenant's sites only.",
        "security": _KEY,
        "responses": {
            "201" if created else "200": {"description": "OK", "content": _json(answer)},
            **{
                str(s): {"description": _ADMIN_ERRORS[s], "content": _json("ErrorResponse")}
                for s in (401, *statuses)
            },
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    return operation


def _admin_paths() -> dict[str, Any]:
    return {
        "/api/admin/sites": {
            "get": _admin("The sites this caller manages, with activity", "SiteList"),
            "post": _admin(
                "Add a site", "SiteSaved", 400, 403, 409, 422, body="SiteCreate", created=True
            ),
        },
        "/api/admin/sites/{site_id}": {
            "parameters": [_SITE_ID_PARAM],
            "get": _admin("One site", "SiteAnswer", 404),
            "patch": _admin(
                "Change a site's name, allowed origins or tenant (at once in this process; "
                "other processes within cache_refresh_seconds)",
                "SiteSaved",
                400,
                403,
                404,
                422,
                body="SiteChange",
            ),
        },
        "/api/admin/sites/{site_id}/keys": {
            "parameters": [_SITE_ID_PARAM],
            "get": _admin("The site's secret API keys (never the keys themselves)", "KeyList", 404),
            "post": _admin(
                "Create a secret API key; the answer is the only time it is shown",
                "KeyCreated",
                400,
                404,
                422,
                body="KeyCreate",
                created=True,
            ),
        },
        "/api/admin/sites/{site_id}/ticket-cost": {
            "parameters": [_SITE_ID_PARAM],
            "put": _admin(
                "Set (or with null clear) the site's cost per support ticket and its currency",
                "TicketCostSaved",
                400,
                404,
                422,
                body="TicketCostChange",
            ),
        },
        "/api/admin/sites/{site_id}/write-key": {
            "parameters": [_SITE_ID_PARAM],
            "get": _admin(
                "The site's public write key for Segment-compatible clients (made if it has none)",
                "WriteKeyAnswer",
                404,
            ),
            "post": _admin(
                "A new write key replacing the site's current one (refused at once by this "
                "process, within 30 s by others)",
                "WriteKeyRotated",
                404,
                created=True,
            ),
            "delete": _admin(
                "Revoke the site's write key: its Segment-compatible clients are refused",
                "WriteKeyRevoked",
                404,
            ),
        },
        "/api/admin/keys/{key_id}": {
            "parameters": [_KEY_ID_PARAM],
            "delete": _admin(
                "Revoke a key: refused at once by this process, within 30 s by others",
                "KeyRevoked",
                404,
            ),
        },
    }


def build_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [
            TrackRequest,
            TrackResponse,
            ErrorResponse,
            BatchRequest,
            BatchResponse,
            IdentifyRequest,
            NamePair,
            SegmentMessage,
            SegmentBatch,
            SegmentResponse,
            SegmentErrorResponse,
            SiteCreate,
            SiteChange,
            KeyCreate,
            SiteList,
            SiteAnswer,
            SiteSaved,
            KeyList,
            KeyCreated,
            KeyRevoked,
            WriteKeyAnswer,
            WriteKeyRotated,
            TicketCostChange,
            TicketCostSaved,
            WriteKeyRevoked,
        ],
        ref_template="#/components/schemas/{name}",
    )
    event_schema = components["TrackRequest"]["properties"]["event"]
    post_track = {
        "tags": ["tracking"],
        "summary": "Record one event",
        "parameters": [_SITE_PARAM, _COOKIE_PARAM],
        "requestBody": {"required": True, "content": _json("TrackRequest")},
        "responses": {
            "200": {"description": "Stored durably", "content": _json("TrackResponse")},
            **_errors(400, 403, 408, 422, 429, 503),
        },
    }
    get_track = {
        "tags": ["tracking"],
        "summary": "Record one event (legacy GET form)",
        "parameters": [
            {"name": "e", "in": "query", "required": True, "schema": event_schema},
            {"name": "u", "in": "query", "required": True, "schema": _TOKEN_SCHEMA},
            {
                "name": "d",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "URL-encoded JSON object: the event data (as in TrackRequest)",
            },
            {
                "name": "ab_test",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "pattern": _FLAG_PATTERN},
                "description": "true or false (also 1 or 0, any case)",
            },
            {"name": "url", "in": "query", "required": False, "schema": {"type": "string"}},
            _SITE_PARAM,
        ],
        "responses": post_track["responses"],
    }
    paths: dict[str, Any] = {
        "/api/analytics/track": {"post": post_track, "get": get_track},
        "/api/events/track": {"post": post_track, "get": get_track},
        "/api/save": {"post": post_track},
        "/api/analytics/batch": {
            "post": {
                "tags": ["tracking"],
                "summary": "Record up to 500 events; each gets its own result",
                "parameters": [_SITE_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _ref("BatchRequest"),
                                    {"type": "array", "maxItems": 500, "items": {}},
                                ],
                                "description": "The envelope, or the bare array of events",
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Per-event results", "content": _json("BatchResponse")},
                    **_errors(400, 403, 408, 422, 429, 503),
                },
            }
        },
        "/api/identify": {
            "post": {
                "tags": ["identity"],
                "summary": "Link a token with the user's client id and email",
                "parameters": [_SITE_PARAM],
                "requestBody": {"required": True, "content": _json("IdentifyRequest")},
                "responses": {
                    "200": {
                        "description": "Linked (or refused by wrong-merge protection)",
                        "content": _json("TrackResponse"),
                    },
                    **_errors(400, 403, 408, 422, 429, 503),
                },
            }
        },
        "/api/alias": {
            "post": {
                "tags": ["identity"],
                "summary": "Declare two names one person (API key)",
                "security": _KEY,
                "requestBody": {"required": True, "content": _json("NamePair")},
                "responses": {
                    "200": {"description": "The person id"},
                    **_errors(400, 401, 408, 422),
                },
            }
        },
        **{
            path: {
                "get": {
                    "tags": ["vendor-compatible"],
                    "summary": summary,
                    "security": [{"vendorKey": []}],
                    "parameters": [
                        *(
                            {
                                "name": name,
                                "in": "query",
                                "required": True,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                            }
                            for name in names
                        ),
                        *(_VENDOR_TIME if path == "/e" else ()),
                    ],
                    "responses": {
                        "200": {"description": "1x1 GIF", "content": {"image/gif": {}}},
                        **_errors(*statuses),
                    },
                }
            }
            for path, summary, names, statuses in (
                ("/a", "Alias _p with _n", ("_p", "_n"), (401, 422)),
                (
                    "/e",
                    "Record event _n for person _p (extra parameters are properties)",
                    ("_p", "_n"),
                    (401, 422, 503),
                ),
                ("/s", "Set properties (extra parameters) on person _p", ("_p",), (401, 422)),
            )
        },
        **{
            f"/v1/{kind}": {"post": _segment(f"One {kind} message", "SegmentMessage")}
            for kind in ("track", "identify", "alias", "page", "screen", "group")
        },
        **{
            path: {"post": _segment(summary, "SegmentBatch")}
            for path, summary in (
                ("/v1/batch", "Segment-spec batch: messages of any type"),
                ("/v1/import", "Segment-spec import: a batch"),
            )
        },
        "/api/persons/{name}": {
            "parameters": [_NAME_PARAM],
            "get": _keyed("Person profile: identifiers, customer ids, metadata"),
            "delete": _keyed("Erase the person (identifiers, links, events, metadata)"),
        },
        "/api/persons/{name}/journey": {
            "parameters": [_NAME_PARAM],
            "get": {
                **_keyed("The person's events across sites and identifiers"),
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        "description": "At most this many events (1-100000)",
                    }
                ],
            },
        },
        "/api/persons/{name}/export": {
            "parameters": [_NAME_PARAM],
            "get": _keyed("Everything stored about the person"),
        },
        "/api/identity/explain": {
            "get": {
                **_keyed("The chain of links joining a and b", 422),
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                    for n in ("a", "b")
                ],
            }
        },
        "/api/identity/split": {
            "post": {
                **_keyed("Remove the direct link between a and b", 400, 404, 408, 409, 422),
                "requestBody": {"required": True, "content": _json("NamePair")},
            }
        },
        "/api/reports": {
            "get": {
                **_keyed("The reports this server offers, with their options", 401),
                "tags": ["reports"],
            }
        },
        "/api/reports/{name}": {
            "get": {
                **_keyed(
                    "One analytics report for the key's site (or others of its tenant). "
                    "deflection: the support form's sessions (totals: sessions, answered, "
                    "tickets, deflected, deferred, deflection_rate, ...; ephemeral apart; "
                    "series, forms, chatbots, popup_versions, funnel, questions, lift, "
                    "savings), as the README defines them"
                ),
                "tags": ["reports"],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(REPORTS)},
                    },
                    *_REPORT_PARAMS,
                ],
                "responses": {"200": {"description": "The report"}, **_errors(401, 403, 404, 422)},
            }
        },
        **_admin_paths(),
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "summary": "Liveness and store health",
                "responses": {"200": {"description": "Healthy"}, "503": {"description": "Not"}},
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "Text exposition format"},
                    **_errors(401),
                },
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Footfall",
            "version": __version__,
            "description": "Tracking, identity and analytics API of a Footfall server. Any "
            "request may also be refused by the HTTP connection itself, in the same JSON error "
            "shape and with the connection closed: 400 BAD_REQUEST (not valid HTTP/1.1), 408 "
            "REQUEST_TIMEOUT (headers or body stalled), 414 URI_TOO_LONG, 431 "
            "HEADERS_TOO_LARGE, 503 SERVICE_UNAVAILABLE (at the connection limit).",
        },
        "paths": paths,
        "components": {
            "schemas": to_openapi_30(components),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "vendorKey": {"type": "apiKey", "in": "query", "name": "_k"},
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The site's public write key as the user, empty password "
                    "(or writeKey in the body)",
                },
            },
        },
    }
