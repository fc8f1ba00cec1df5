"""Every row of the tracking API's parameter, constraint and error tables, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

TOKEN = "user_abc123def456"
OK: dict[str, Any] = {"event": "visitor", "token": TOKEN}


def body(**changes: Any) -> dict[str, Any]:
    out = dict(OK)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()


def data(**fields: Any) -> dict[str, Any]:
    return body(event="purchase", data=fields)


def item(**fields: Any) -> dict[str, Any]:
    return data(items=[fields])


# (case id, JSON body, status, code, field)
REJECTED: list[tuple[str, Any, int, str, str | None]] = [
    ("event missing", body(event=_DROP), 422, "VALIDATION_ERROR", "event"),
    ("event null", body(event=None), 422, "VALIDATION_ERROR", "event"),
    ("event not a string", body(event=5), 422, "VALIDATION_ERROR", "event"),
    ("event over 50 chars", body(event="v" * 51), 422, "VALIDATION_ERROR", "event"),
    ("event unknown type", body(event="page_view"), 422, "VALIDATION_ERROR", "event"),
    ("token missing", body(token=_DROP), 422, "VALIDATION_ERROR", "token"),
    ("token too short", body(token="a" * 7), 422, "VALIDATION_ERROR", "token"),
    ("token too long", body(token="a" * 129), 422, "VALIDATION_ERROR", "token"),
    ("token bad characters", body(token="abc def!gh"), 422, "VALIDATION_ERROR", "token"),
    ("token base64 padding", body(token="abcdefgh=="), 422, "VALIDATION_ERROR", "token"),
    ("token not a string", body(token=12345678), 422, "VALIDATION_ERROR", "token"),
    ("chatbot_id over 512", data(chatbot_id="c" * 513), 422, "VALIDATION_ERROR", "data.chatbot_id"),
    ("items over 50", data(items=[{}] * 51), 422, "VALIDATION_ERROR", "data.items"),
    ("items not an array", data(items={"a": 1}), 422, "VALIDATION_ERROR", "data.items"),
    ("item not an object", data(items=["SKU"]), 422, "VALIDATION_ERROR", "data.items[0]"),
    ("item_id over 128", item(item_id="i" * 129), 422, "VALIDATION_ERROR", "data.items[0].item_id"),
    ("id over 128", item(id="i" * 129), 422, "VALIDATION_ERROR", "data.items[0].id"),
    ("value not numeric", item(value="cheap"), 422, "VALIDATION_ERROR", "data.items[0].value"),
    ("price not numeric", item(price=[1]), 422, "VALIDATION_ERROR", "data.items[0].price"),
    ("value boolean", item(value=True), 422, "VALIDATION_ERROR", "data.items[0].value"),
    (
        "id object beside item_id",
        item(item_id="a", id={}),
        422,
        "VALIDATION_ERROR",
        "data.items[0].id",
    ),
    (
        "id list beside null item_id",
        item(item_id=None, id=[]),
        422,
        "VALIDATION_ERROR",
        "data.items[0].id",
    ),
    (
        "price text beside value",
        item(value=1, price="x"),
        422,
        "VALIDATION_ERROR",
        "data.items[0].price",
    ),
    ("value over 1e12", data(value=1e13), 422, "VALIDATION_ERROR", "data.value"),
    (
        "value over 1e12 beside items",
        data(items=[], value=3.4e38),
        422,
        "VALIDATION_ERROR",
        "data.value",
    ),
    ("quantity zero", item(quantity=0), 422, "VALIDATION_ERROR", "data.items[0].quantity"),
    ("quantity negative", item(quantity=-2), 422, "VALIDATION_ERROR", "data.items[0].quantity"),
    ("quantity fractional", item(quantity=1.5), 422, "VALIDATION_ERROR", "data.items[0].quantity"),
    ("quantity string", item(quantity="2"), 422, "VALIDATION_ERROR", "data.items[0].quantity"),
    ("currency over 3", item(currency="EURO"), 422, "VALIDATION_ERROR", "data.items[0].currency"),
    ("orderNum over 512", data(orderNum="o" * 513), 422, "VALIDATION_ERROR", "data.orderNum"),
    ("open_way other", data(open_way="email"), 422, "VALIDATION_ERROR", "data.open_way"),
    ("open_way object", data(open_way={"a": 1}), 422, "VALIDATION_ERROR", "data.open_way"),
    ("open_way array", data(open_way=["popup"]), 422, "VALIDATION_ERROR", "data.open_way"),
    ("ab_test not boolean", body(ab_test="yes"), 422, "VALIDATION_ERROR", "ab_test"),
    ("ab_test number", body(ab_test=1), 422, "VALIDATION_ERROR", "ab_test"),
    (
        "popup_version over 512",
        data(popup_version="p" * 513),
        422,
        "VALIDATION_ERROR",
        "data.popup_version",
    ),
    # Input rules made explicit (issue 18, items 4 and 5): amounts are JSON numbers >= 0,
    # data is an object or absent.
    ("value negative", item(value=-5), 422, "VALIDATION_ERROR", "data.items[0].value"),
    ("value text", item(value="12"), 422, "VALIDATION_ERROR", "data.items[0].value"),
    ("price negative", item(price=-0.01), 422, "VALIDATION_ERROR", "data.items[0].price"),
    ("price text", item(price="49.99"), 422, "VALIDATION_ERROR", "data.items[0].price"),
    ("data.value negative", data(value=-1), 422, "VALIDATION_ERROR", "data.value"),
    ("data.value text", data(value="12"), 422, "VALIDATION_ERROR", "data.value"),
    ("quantity text 1", item(quantity="1"), 422, "VALIDATION_ERROR", "data.items[0].quantity"),
    ("data null", body(data=None), 400, "ANALYTICS_001", None),
    ("data not an object", body(data=[1, 2]), 400, "ANALYTICS_001", None),
    ("data a string", body(data="{}"), 400, "ANALYTICS_001", None),
    ("body an array", [OK], 400, "ANALYTICS_001", None),
    ("body a number", 42, 400, "ANALYTICS_001", None),
]


@pytest.mark.parametrize(
    ("case", "payload", "status", "code", "field"), REJECTED, ids=[r[0] for r in REJECTED]
)
def test_rejected_with_documented_status_code_and_field(
    api: httpx.Client, case: str, payload: Any, status: int, code: str, field: str | None
) -> None:
    answer = api.post("/api/analytics/track", json=payload)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert answer.json()["success"] is False
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error["field"] == field
        assert field in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"not json", b'{"event": "visitor", "token": ', b"\xff\xfe\x00", b"[1,2"],
    ids=["open brace", "empty", "text", "truncated", "binary", "open array"],
)
def test_malformed_json_is_analytics_001(api: httpx.Client, raw: bytes) -> None:
    answer = api.post("/api/analytics/track", content=raw)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ANALYTICS_001"


def test_payload_over_50000_bytes_is_analytics_002(api: httpx.Client) -> None:
    padding = "x" * 50_000
    answer = api.post("/api/analytics/track", json=body(data={"note": padding}))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ANALYTICS_002"


def test_payload_of_exactly_50000_bytes_is_accepted(api: httpx.Client) -> None:
    template = json.dumps(body(data={"note": ""}), separators=(",", ":"))
    raw = json.dumps(
        body(data={"note": "x" * (50_000 - len(template))}), separators=(",", ":")
    ).encode()
    assert len(raw) == 50_000
    answer = api.post("/api/analytics/track", content=raw)
    assert answer.status_code == 200, answer.text
    over = raw[:-3] + b'x"}}'
    assert len(over) == 50_001
    assert api.post("/api/analytics/track", content=over).json()["error"]["code"] == "ANALYTICS_002"


def test_oversized_body_without_content_length_is_refused(api: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"event":"visitor","token":"' + TOKEN.encode() + b'","data":{"x":"'
        for _ in range(100):
            yield b"y" * 1_000
        yield b'"}}'

    answer = api.post("/api/analytics/track", content=chunks())
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ANALYTICS_002"


ACCEPTED: list[tuple[str, Any]] = [
    ("minimal", OK),
    ("token 8 chars", body(token="abcdEF_-")),
    ("token 128 chars", body(token="a" * 128)),
    ("tracktrans", body(event="tracktrans")),
    ("ab_test false", body(ab_test=False)),
    ("chatbot_id 512", data(chatbot_id="c" * 512)),
    ("chatbot_id numeric", data(chatbot_id=42)),
    ("items 50", data(items=[{"item_id": str(i)} for i in range(50)])),
    ("item_id 128", item(item_id="i" * 128)),
    ("id instead of item_id", item(id="SKU-1", price=2)),
    ("value zero", item(value=0)),
    ("quantity default", item(item_id="a", value=1)),
    ("quantity 2.0", item(item_id="a", value=1, quantity=2.0)),
    ("currency lower case", item(value=1, currency="usd")),
    ("orderNum 512", data(orderNum="o" * 512)),
    ("open_way popup", data(open_way="popup")),
    ("open_way chat_button", data(open_way="chat_button")),
    ("free-form properties", data(text="hello", nested={"a": [1, 2]})),
    ("unknown currency", item(value=1, currency="JPY")),
]


@pytest.mark.parametrize(("case", "payload"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted(api: httpx.Client, case: str, payload: Any) -> None:
    answer = api.post("/api/analytics/track", json=payload)
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True


@pytest.mark.parametrize("path", ["/api/analytics/track", "/api/events/track", "/api/save"])
def test_every_post_route_validates_the_same_way(api: httpx.Client, path: str) -> None:
    assert api.post(path, json=OK).json() == {"success": True}
    answer = api.post(path, json=body(token="short"))
    assert (answer.status_code, answer.json()["error"]["field"]) == (422, "token")


@pytest.mark.parametrize("path", ["/api/analytics/track", "/api/events/track"])
def test_legacy_get_validation(api: httpx.Client, path: str) -> None:
    assert api.get(path, params={"e": "visitor", "u": TOKEN}).json() == {"success": True}
    cases = [
        ({"u": TOKEN}, 422, "event"),
        ({"e": "visitor"}, 422, "token"),
        ({"e": "nope", "u": TOKEN}, 422, "event"),
        ({"e": "visitor", "u": "bad token"}, 422, "token"),
        ({"e": "visitor", "u": TOKEN, "d": "{not json"}, 400, None),
        ({"e": "visitor", "u": TOKEN, "d": "[1]"}, 400, None),
        ({"e": "purchase", "u": TOKEN, "d": '{"open_way": "x"}'}, 422, "data.open_way"),
        ({"e": "visitor", "u": TOKEN, "ab_test": "maybe"}, 422, "ab_test"),
    ]
    for params, status, field in cases:
        answer = api.get(path, params=params)
        assert answer.status_code == status, (params, answer.text)
        if field:
            assert answer.json()["error"]["field"] == field
        else:
            assert answer.json()["error"]["code"] == "ANALYTICS_001"
    big = {"e": "visitor", "u": TOKEN, "d": json.dumps({"x": "y" * 50_001})}
    assert api.get(path, params=big).json()["error"]["code"] == "ANALYTICS_002"


def test_unknown_routes_and_methods_answer_json(api: httpx.Client) -> None:
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = api.put("/api/analytics/track", json=OK)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert api.get("/api/save").status_code == 405


def test_legacy_get_with_invalid_utf8_in_d_is_analytics_001_like_post(api: httpx.Client) -> None:
    """Issue 18, item 6: the GET form refuses bytes that are not UTF-8 as the POST does."""
    for path in ("/api/analytics/track", "/api/events/track"):
        answer = api.get(f"{path}?e=visitor&u={TOKEN}&d=%7B%22x%22%3A%22%FF%FE%22%7D")
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "ANALYTICS_001"
    posted = api.post(
        "/api/analytics/track",
        content=b'{"event":"visitor","token":"' + TOKEN.encode() + b'","data":{"x":"\xff\xfe"}}',
    )
    assert (posted.status_code, posted.json()["error"]["code"]) == (400, "ANALYTICS_001")


REPEATED_KEYS = [
    ("top level", b'{"token":"bad","token":"tok_ok_000001","event":"visitor"}'),
    ("in data", b'{"event":"visitor","token":"tok_ok_000001","data":{"a":1,"a":2}}'),
    (
        "in an item",
        b'{"event":"purchase","token":"tok_ok_000001","data":{"items":[{"value":1,"value":1000}]}}',
    ),
    (
        "with an escaped colon",
        b'{"event":"visitor","token":"tok_ok_000001","data":{"u":"a\\u003ab","u":"x"}}',
    ),
]


@pytest.mark.parametrize(("case", "raw"), REPEATED_KEYS, ids=[r[0] for r in REPEATED_KEYS])
def test_a_body_with_a_repeated_key_is_analytics_001(
    api: httpx.Client, case: str, raw: bytes
) -> None:
    """Issue 18, item 8: two readers of such a body would disagree on what it says."""
    answer = api.post("/api/analytics/track", content=raw)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "ANALYTICS_001"
    assert "repeats the key" in answer.json()["error"]["message"]
    batch = api.post("/api/analytics/batch", content=b'{"events":[' + raw + b"]}")
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"][0]["error"]["code"] == "ANALYTICS_001"
    envelope = api.post("/api/analytics/batch", content=b'{"events":[],"events":[' + raw + b"]}")
    assert (envelope.status_code, envelope.json()["error"]["code"]) == (400, "ANALYTICS_001")
    identify = api.post(
        "/api/identify", content=b'{"token":"tok_ok_000001","token":"tok_ok_000002"}'
    )
    assert (identify.status_code, identify.json()["error"]["code"]) == (400, "ANALYTICS_001")
    legacy = api.get(
        "/api/analytics/track", params={"e": "visitor", "u": TOKEN, "d": '{"a":1,"a":2}'}
    )
    assert (legacy.status_code, legacy.json()["error"]["code"]) == (400, "ANALYTICS_001")


def test_colons_inside_strings_are_not_repeated_keys(api: httpx.Client) -> None:
    raw = (
        b'{"event":"visitor","token":"tok_ok_000001","url":"https://shop.test:8443/a?b=c:d",'
        b'"data":{"k:1":"v:2","nested":{"a":"\\u003a","b":[{"c":"x:"}]}}}'
    )
    answer = api.post("/api/analytics/track", content=raw)
    assert answer.status_code == 200, answer.text


def test_a_batch_event_naming_another_site_goes_there_or_is_refused_alone(
    fresh_server: Any, fresh_ip: str
) -> None:
    """Issue 18, item 7: an event's own ``site`` is honoured when the caller may write to
    that site (its Origin allowed there), else that event alone gets a 403."""
    ours = {"event": "visitor", "token": "site-token-001"}
    theirs = {**ours, "token": "site-token-002", "site": "other"}
    unknown = {**ours, "token": "site-token-003", "site": "nosuch"}
    with fresh_server.client(fresh_ip) as api:
        # From the default site's page: 'other' does not allow that origin.
        answer = api.post(
            "/api/analytics/batch",
            json={"events": [ours, theirs, unknown]},
            headers={"origin": "https://shop.test"},
        ).json()
        assert [(r["status"], r.get("error", {}).get("code")) for r in answer["results"]] == [
            (200, None),
            (403, "ORIGIN_NOT_ALLOWED"),
            (422, "VALIDATION_ERROR"),
        ]
        # From other's page, and from a server (no Origin): stored under 'other'.
        for headers in ({"origin": "https://other.test"}, {}):
            again = api.post(
                "/api/analytics/batch", json={"events": [theirs]}, headers=headers
            ).json()
            assert again["results"][0]["status"] == 200, (headers, again)
    fresh_server.stop()
    stored = fresh_server.rows("SELECT token, site_id FROM events ORDER BY token, site_id")
    assert stored == [
        ("site-token-001", "default"),
        ("site-token-002", "other"),
        ("site-token-002", "other"),
    ]
