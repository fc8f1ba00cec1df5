"""Errors from below the application, each in the JSON error shape with a message that names
the real problem: the JSON decoder's (a lone surrogate once read "Input data was truncated")
and the HTTP server's (a 600 KB query string once got uvicorn's plain-text 400)."""

from __future__ import annotations

import httpx
import pytest

TOKEN = "low-level-token-1"
# A JSON \u escape of one half of a UTF-16 surrogate pair, alone: no text can hold it.
LONE_HIGH = rb"\ud800"
LONE_LOW = rb"\udc00"


def event_with(text: bytes) -> bytes:
    return b'{"event":"visitor","token":"' + TOKEN.encode() + b'","data":{"t":"' + text + b'"}}'


@pytest.mark.parametrize(
    "text",
    [LONE_HIGH, LONE_HIGH + b"x", LONE_HIGH + rb"\u0041", LONE_LOW, b"ok" + LONE_LOW + b"ok"],
    ids=["high at the end", "high then text", "high then non-low", "low", "low inside"],
)
def test_a_lone_surrogate_is_named_on_every_json_route(api: httpx.Client, text: bytes) -> None:
    bodies = {
        "/api/analytics/track": event_with(text),
        "/api/analytics/batch": b"[" + event_with(text) + b"]",
        "/api/identify": b'{"token":"' + TOKEN.encode() + b'","user":{"email":"' + text + b'"}}',
    }
    for path, raw in bodies.items():
        answer = api.post(path, content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "ANALYTICS_001"
        assert "lone surrogate" in error["message"], (path, error["message"])
        assert "truncated" not in error["message"]
    legacy = api.get(
        "/api/analytics/track",
        params={"e": "visitor", "u": TOKEN, "d": '{"t":"' + text.decode() + '"}'},
    )
    assert legacy.status_code == 400
    assert "lone surrogate" in legacy.json()["error"]["message"]


def test_surrogate_pairs_and_escaped_backslashes_are_no_lone_surrogates(api: httpx.Client) -> None:
    for text in (rb"\ud83d\ude00", rb"\\ud800", rb"\\\\" + rb"\ud83d\ude00"):
        answer = api.post("/api/analytics/track", content=event_with(text))
        assert answer.status_code == 200, (text, answer.text)


def test_a_truncated_body_is_called_truncated(api: httpx.Client) -> None:
    answer = api.post("/api/analytics/track", content=event_with(b"abc")[:-8])
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "ends before" in message, message
    assert "surrogate" not in message
