"""The OpenAPI document, generated from typed descriptions of the public API's bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from footfall import __version__
from footfall.ingest import (
    EVENT_TYPES,
    MAX_CURRENCY_CHARS,
    MAX_ID_CHARS,
    MAX_ITEM_ID_CHARS,
    MAX_ITEMS,
)

if TYPE_CHECKING:
    EventName = str
else:  # the schema lists every accepted event name, from the one list ingest checks
    EventName = Literal[tuple(sorted(EVENT_TYPES | {"tracktrans"}))]
Token = Annotated[str, Meta(min_length=8, max_length=128, pattern="^[A-Za-z0-9_-]+$")]
ShortId = Annotated[str, Meta(max_length=MAX_ID_CHARS)]


class Item(msgspec.Struct, omit_defaults=True):
    """A cart or purchase line; ``id`` and ``price`` are accepted as older spellings."""

    item_id: Annotated[str, Meta(max_length=MAX_ITEM_ID_CHARS)] | None = None
    id: Annotated[str, Meta(max_length=MAX_ITEM_ID_CHARS)] | None = None
    value: float | None = None
    price: float | None = None
    quantity: Annotated[int, Meta(ge=1)] = 1
    currency: Annotated[str, Meta(max_length=MAX_CURRENCY_CHARS)] | None = None


class EventData(msgspec.Struct, omit_defaults=True):
    """Event payload; fields not listed are kept as free-form properties."""

    chatbot_id: ShortId | None = None
    popup_version: ShortId | None = None
    open_way: Literal["popup", "chat_button"] | None = None
    items: Annotated[list[Item], Meta(max_length=MAX_ITEMS)] | None = None
    orderNum: ShortId | None = None
    currency: Annotated[str, Meta(max_length=MAX_CURRENCY_CHARS)] | None = None
    value: float | None = None
    text: str | None = None


class TrackRequest(msgspec.Struct, omit_defaults=True):
    """One event. At most 50,000 bytes JSON-encoded."""

    event: EventName
    token: Token
    data: EventData | None = None
    ab_test: bool = False
    ephemeral: bool = False
    site: str | None = None
    url: str | None = None
    ts: float | None = None


class TrackResponse(msgspec.Struct):
    success: bool
    duplicate: bool = False


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(msgspec.Struct):
    success: bool
    error: ErrorDetail


class BatchRequest(msgspec.Struct):
    events: Annotated[list[TrackRequest], Meta(max_length=500)]
    site: str | None = None


class User(msgspec.Struct, omit_defaults=True):
    uniqueClientId: Annotated[str, Meta(max_length=255)] | None = None
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


class BatchResult(msgspec.Struct):
    index: int
    success: bool
    status: int
    duplicate: bool = False
    error: ErrorDetail | None = None


class BatchResponse(msgspec.Struct):
    success: bool
    accepted: int
    rejected: int
    results: list[BatchResult]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        401: "UNAUTHORIZED: missing, unknown or revoked API key",
        404: "NOT_FOUND: no person with that identifier",
        400: "ANALYTICS_001 malformed JSON or invalid payload; ANALYTICS_002 over 50,000 bytes",
        403: "ORIGIN_NOT_ALLOWED: the Origin is not allowed for the site",
        422: "VALIDATION_ERROR: a field breaks a rule; `field` names it",
        429: "RATE_LIMITED: over the per-IP limit (120/min by default); see Retry-After",
        503: "SERVICE_UNAVAILABLE: the store cannot take events right now; retry",
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
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "description": "Name of footfall.js's id cookie. When the request carries that cookie with "
    "the event's token and this server shares the page's registrable domain, the answer "
    "renews it with Set-Cookie (399 days).",
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
    "description": "Any identifier of the person (bare or kind:value)",
}


def _keyed(summary: str) -> dict[str, Any]:
    return {
        "tags": ["persons"],
        "summary": summary,
        "security": [{"apiKey": []}],
        "responses": {
            "200": {"description": "OK"},
            **_errors(401, 404),
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
        ],
        ref_template="#/components/schemas/{name}",
    )
    post_track = {
        "tags": ["tracking"],
        "summary": "Record one event",
        "parameters": [_SITE_PARAM, _COOKIE_PARAM],
        "requestBody": {"required": True, "content": _json("TrackRequest")},
        "responses": {
            "200": {"description": "Stored durably", "content": _json("TrackResponse")},
            **_errors(400, 403, 422, 429, 503),
        },
    }
    get_track = {
        "tags": ["tracking"],
        "summary": "Record one event (legacy GET form)",
        "parameters": [
            {"name": "e", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "u", "in": "query", "required": True, "schema": {"type": "string"}},
            {
                "name": "d",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "URL-encoded JSON object: the event data",
            },
            {"name": "ab_test", "in": "query", "required": False, "schema": {"type": "boolean"}},
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
                "requestBody": {"required": True, "content": _json("BatchRequest")},
                "responses": {
                    "200": {"description": "Per-event results", "content": _json("BatchResponse")},
                    **_errors(400, 403, 422, 429, 503),
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
                    **_errors(400, 403, 422, 429),
                },
            }
        },
        "/api/alias": {
            "post": {
                "tags": ["identity"],
                "summary": "Declare two names one person (API key)",
                "security": [{"apiKey": []}],
                "requestBody": {"required": True, "content": _json("NamePair")},
                "responses": {"200": {"description": "The person id"}, **_errors(400, 401, 422)},
            }
        },
        **{
            path: {
                "get": {
                    "tags": ["vendor-compatible"],
                    "summary": summary,
                    "parameters": [
                        {
                            "name": name,
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                        for name in names
                    ],
                    "responses": {
                        "200": {"description": "1x1 GIF", "content": {"image/gif": {}}},
                        **_errors(401, 422),
                    },
                }
            }
            for path, summary, names in (
                ("/a", "Alias _p with _n", ("_k", "_p", "_n")),
                (
                    "/e",
                    "Record event _n for person _p (extra parameters are properties)",
                    ("_k", "_p", "_n"),
                ),
                ("/s", "Set properties (extra parameters) on person _p", ("_k", "_p")),
            )
        },
        "/api/persons/{name}": {
            "parameters": [_NAME_PARAM],
            "get": _keyed("Person profile: identifiers, customer ids, metadata"),
            "delete": _keyed("Erase the person (identifiers, links, events, metadata)"),
        },
        "/api/persons/{name}/journey": {
            "parameters": [_NAME_PARAM],
            "get": _keyed("The person's events across sites and identifiers"),
        },
        "/api/persons/{name}/export": {
            "parameters": [_NAME_PARAM],
            "get": _keyed("Everything stored about the person"),
        },
        "/api/identity/explain": {
            "get": {
                **_keyed("The chain of links joining a and b"),
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                    for n in ("a", "b")
                ],
            }
        },
        "/api/identity/split": {
            "post": {
                **_keyed("Remove the direct link between a and b"),
                "requestBody": {"required": True, "content": _json("NamePair")},
            }
        },
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
                "responses": {"200": {"description": "Text exposition format"}},
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Footfall",
            "version": __version__,
            "description": "Tracking, identity and analytics API of a Footfall server.",
        },
        "paths": paths,
        "components": {
            "schemas": to_openapi_30(components),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
