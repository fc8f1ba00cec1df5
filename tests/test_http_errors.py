"""Errors from below the application, each in the JSON error shape with a message that names
the real problem: the JSON decoder's (a lone surrogate once read "Input data was truncated")
and the HTTP server's (a 600 KB query string once got uvicorn's plain-text 400)."""

from __future__ import annotations

import contextlib
import json
import socket

import httpx
import pytest

from conftest import Server

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


# --------------------------------------------------------------------------- the HTTP server's

HOST = b"Host: t\r\n"
POST = b"POST /api/analytics/track HTTP/1.1\r\n" + HOST
# (case, raw request, half-close after sending, status, code, words the message must hold)
LOW_LEVEL: list[tuple[str, bytes, bool, int, str, str]] = [
    (
        "600 KB query string",
        b"GET /api/analytics/track?d=" + b"a" * 600_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        False,
        414,
        "URI_TOO_LONG",
        "longer than 65535 bytes",
    ),
    (
        "600 KB header",
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Big: " + b"x" * 600_000 + b"\r\n\r\n",
        False,
        431,
        "HEADERS_TOO_LARGE",
        "larger than 65536 bytes",
    ),
    (
        "20,000 small headers",
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-A: b\r\n" * 20_000 + b"\r\n",
        False,
        431,
        "HEADERS_TOO_LARGE",
        "larger than 65536 bytes",
    ),
    (
        "unknown method",
        b"BREW /pot HTTP/1.1\r\n" + HOST + b"\r\n",
        False,
        400,
        "BAD_REQUEST",
        "invalid method",
    ),
    (
        "HTTP version",
        b"GET / HTTP/9.1\r\n" + HOST + b"\r\n",
        False,
        400,
        "BAD_REQUEST",
        "invalid http version",
    ),
    (
        "control byte in the URL",
        b"GET /\x01 HTTP/1.1\r\n" + HOST + b"\r\n",
        False,
        400,
        "BAD_REQUEST",
        "invalid char in url",
    ),
    (
        "space in a header name",
        b"GET / HTTP/1.1\r\nHo st: t\r\n\r\n",
        False,
        400,
        "BAD_REQUEST",
        "invalid header token",
    ),
    (
        "control byte in a header value",
        b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x01b\r\n\r\n",
        False,
        400,
        "BAD_REQUEST",
        "invalid header value",
    ),
    (
        "two Content-Lengths",
        POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        False,
        400,
        "BAD_REQUEST",
        "duplicate content-length",
    ),
    (
        "Content-Length not a number",
        POST + b"Content-Length: abc\r\n\r\n{}",
        False,
        400,
        "BAD_REQUEST",
        "invalid character in content-length",
    ),
    (
        "unknown Transfer-Encoding",
        POST + b"Transfer-Encoding: gzip\r\n\r\n{}",
        False,
        400,
        "BAD_REQUEST",
        "transfer-encoding",
    ),
    (
        "chunk size not hex",
        POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
        False,
        400,
        "BAD_REQUEST",
        "invalid request body: invalid character in chunk size",
    ),
    (
        "TLS on the plain port",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,
        False,
        400,
        "BAD_REQUEST",
        "tls handshake",
    ),
    (
        "HTTP/2 prior knowledge",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        False,
        400,
        "BAD_REQUEST",
        "http/2",
    ),
    (
        "headers cut short",
        POST + b"Content-Le",
        True,
        400,
        "BAD_REQUEST",
        "before the request headers ended",
    ),
    (
        "body cut short",
        POST + b"Content-Length: 40\r\n\r\n{}",
        True,
        400,
        "BAD_REQUEST",
        "body ended early",
    ),
]


def exchange(server_port: int, request: bytes, half_close: bool) -> bytes:
    """Send raw bytes, read until the server closes (a sender still sending when the answer
    comes gets it too: the server reads on until the client closes)."""
    with socket.create_connection(("127.0.0.1", server_port), timeout=30) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    ("case", "request_bytes", "half_close", "status", "code", "words"),
    LOW_LEVEL,
    ids=[c[0] for c in LOW_LEVEL],
)
def test_every_low_level_error_is_json_naming_the_problem(
    server: Server,
    case: str,
    request_bytes: bytes,
    half_close: bool,
    status: int,
    code: str,
    words: str,
) -> None:
    answer = exchange(server.port, request_bytes, half_close)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    headers = head.lower()
    assert b"\r\ncontent-type: application/json" in headers, head
    assert b"\r\nconnection: close" in headers, head
    error = json.loads(body)["error"]
    assert error["code"] == code, error
    assert words in error["message"].lower(), error["message"]
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_an_upgrade_is_answered_as_plain_http_and_closed(server: Server) -> None:
    answer = exchange(
        server.port,
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        half_close=False,
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert b"\r\nconnection: close" in answer.lower()


def test_a_legacy_get_just_under_the_url_limit_is_judged_by_the_payload_rules(
    api: httpx.Client,
) -> None:
    """The URL limit (the parser's own, 65,535 bytes) leaves room for the 50,000-byte data."""
    answer = api.get("/api/analytics/track", params={"e": "visitor", "u": TOKEN, "d": "9" * 65_000})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ANALYTICS_002"
