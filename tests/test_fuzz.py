"""Fuzzing a real server: schemathesis from its own OpenAPI document; hypothesis-made headers,
query strings and garbled or oversized payloads; and the inputs that once gave a 5xx.

No input gets a 5xx, every rejection carries its documented status and code, and after a
clean stop the DuckDB file holds exactly the events that were answered 200. The long run of
the same harness is bench/fuzz.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CLEAN_EXIT, Server
from fuzzing import Tally, client_ips, encode, rejection_problem, run_garbled, run_schemathesis


def keyed_server(workdir: Path) -> tuple[Server, str]:
    """A running server and an API key of its default site."""
    server = Server(workdir)
    key = server.start_with_key()
    return server, key


def stored_events(server: Server) -> int:
    assert server.stop() in CLEAN_EXIT
    return int(server.rows("SELECT count(*) FROM events")[0][0])


def test_schemathesis_finds_no_broken_promise(tmp_path: Path) -> None:
    """Positive and negative cases for every operation of /openapi.json (a few hundred)."""
    server, key = keyed_server(tmp_path / "srv")
    tally = Tally()
    try:
        run_schemathesis(server.url, key, examples=6, tally=tally, ips=client_ips("10.80"))
    finally:
        stored = stored_events(server)
    assert tally.failures == [], "\n\n".join(tally.failures[:5])
    assert tally.server_errors == 0
    assert tally.requests >= 200, tally.by_operation
    assert tally.statuses[200] > 50, tally.statuses
    assert tally.acknowledged > 0
    assert stored == tally.expected_stored, (stored, tally.acknowledged, tally.erased)


# --------------------------------------------------------------------------- hypothesis


def test_headers_queries_and_garbled_payloads(tmp_path: Path) -> None:
    """Random Origin/Referer/X-Forwarded-For/keys/content types, random query strings, and
    bodies from valid events to cut-off JSON, random bytes, deep nesting and the size cap."""
    server, key = keyed_server(tmp_path / "srv")
    tally = Tally()
    try:
        run_garbled(server.url, key, examples=150, tally=tally, ips=client_ips("10.81"))
    finally:
        stored = stored_events(server)
    assert tally.failures == [], "\n".join(tally.failures[:5])
    assert tally.server_errors == 0
    assert tally.statuses[200] > 0, tally.statuses
    assert len(tally.statuses) > 4, tally.statuses
    assert stored == tally.expected_stored, (stored, tally.acknowledged)


# --------------------------------------------------------------------------- known cases


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    server, key = keyed_server(tmp_path_factory.mktemp("known"))
    yield server, key
    assert server.stop() in CLEAN_EXIT


EVENT = {"event": "visitor", "token": "known-token-01"}
TRACK = "/api/analytics/track"

# Each of these answered 500, stored garbage or broke the OpenAPI document before its fix.
KNOWN_CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", TRACK, {"content": b'{"event":"visitor","token":"abcdefgh","ts":1e308}'}, 200, None),
    (
        "POST",
        TRACK,
        {"json": {"event": "purchase", "token": "abcdefgh", "data": {"value": 10**400}}},
        422,
        "data.value",
    ),
    (
        "POST",
        TRACK,
        {"json": {"event": "purchase", "token": "abcdefgh", "data": {"items": [{"price": 1e308}]}}},
        422,
        "data.items[0].price",
    ),
    (
        "POST",
        TRACK,
        {
            "json": {
                "event": "purchase",
                "token": "abcdefgh",
                "data": {"items": [{"quantity": 10**20}]},
            }
        },
        422,
        "data.items[0].quantity",
    ),
    (
        "POST",
        TRACK,
        {"json": {"event": "purchase", "token": "abcdefgh", "data": {"value": "1_000"}}},
        422,
        "data.value",
    ),
    ("POST", TRACK, {"json": EVENT, "headers": {"referer": "http://[abc/"}}, 200, None),
    ("POST", TRACK, {"content": b"{", "headers": {"referer": "http://[abc/"}}, 400, None),
    ("POST", TRACK, {"content": b"[" * 40_000}, 400, None),
    ("POST", "/api/analytics/batch", {"content": b"[" * 100_000}, 400, None),
    (
        "GET",
        TRACK,
        {"params": {"e": "purchase", "u": "abcdefgh", "d": json.dumps({"value": 10**400})}},
        422,
        "data.value",
    ),
    ("POST", "/api/identify", {"json": {"token": "abcdefgh", "user": []}}, 400, None),
    ("POST", "/api/identify", {"json": {"token": "abcdefgh", "user": 0}}, 400, None),
    (
        "POST",
        "/api/identify",
        {"json": {"token": "abcdefgh", "user": {"metadata": ""}}},
        422,
        "user.metadata",
    ),
    ("POST", "/api/identify", {"json": {"token": "x", "ephemeral": True}}, 422, "token"),
    ("POST", "/api/identify", {"json": {"token": 12345678}}, 422, "token"),
    (
        "POST",
        "/api/identify",
        {"json": {"token": "abcdefgh", "user": {"uniqueClientId": "u1" + "\r" * 300}}},
        422,
        "user.uniqueClientId",
    ),
    ("POST", TRACK, {"json": {**EVENT, "site": 5}}, 422, "site"),
    ("POST", TRACK, {"json": {**EVENT, "site": "nosuch"}}, 422, "site"),
    ("GET", "/api/reports/overview?days=%C2%B2", {}, 422, "days"),
    ("GET", "/api/reports/overview?days=" + "9" * 5000, {}, 422, "days"),
    ("GET", "/api/reports/overview?days=%205", {}, 422, "days"),
    ("GET", "/api/reports/funnel?window=%C2%B2", {}, 422, "window"),
    ("GET", "/api/reports/funnel?window=" + "9" * 5000, {}, 422, "window"),
    ("GET", "/api/reports/overview?from=9999-12-31", {}, 422, "from"),
    ("GET", "/api/reports/overview?to=0001-01-01", {}, 422, "to"),
    ("GET", "/api/reports/overview?from=0001-01-01T00:00:00%2B01:00", {}, 422, "from"),
    ("GET", "/api/reports/popups?top=abc", {}, 422, "top"),
    ("GET", "/api/persons/known-person-1/journey?limit=%C2%B2", {}, 422, "limit"),
    ("GET", "/api/persons/known-person-1/journey?limit=" + "9" * 5000, {}, 422, "limit"),
]


@pytest.mark.parametrize(
    ("method", "path", "request_args", "status", "field"),
    KNOWN_CASES,
    ids=[f"{c[0]} {c[1][:40]} {c[3]}" for c in KNOWN_CASES],
)
def test_inputs_that_once_gave_server_errors(
    keyed: tuple[Server, str],
    fresh_ip: str,
    method: str,
    path: str,
    request_args: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    server, key = keyed
    headers = {"authorization": f"Bearer {key}", **request_args.pop("headers", {})}
    with server.client(fresh_ip, headers=headers) as api:
        api.post("/api/alias", json={"a": "known-person-1", "b": "known-person-2"})
        answer = api.request(method, path, **request_args)
    assert answer.status_code == status, answer.text
    if status >= 400:
        assert rejection_problem(answer.status_code, answer.headers, answer.content) is None
        if field is not None:
            assert answer.json()["error"]["field"] == field


def test_a_purchase_quantity_cannot_break_the_revenue_report(
    keyed: tuple[Server, str], fresh_ip: str
) -> None:
    """Before the bound, one quantity of 10**20 made every revenue report of the site a 500
    (the report casts quantities to BIGINT)."""
    server, key = keyed
    with server.client(fresh_ip, headers={"authorization": f"Bearer {key}"}) as api:
        biggest = {"item_id": "bulk", "value": 1e12, "quantity": 1_000_000_000}
        for quantity in (10**20, 1_000_000_001):
            refused = api.post(
                TRACK,
                json={
                    "event": "purchase",
                    "token": "bulk-buyer-01",
                    "data": {
                        "orderNum": f"BULK-{quantity}",
                        "items": [{**biggest, "quantity": quantity}],
                    },
                },
            )
            assert refused.status_code == 422, refused.text
        accepted = api.post(
            TRACK,
            json={
                "event": "purchase",
                "token": "bulk-buyer-01",
                "data": {"orderNum": "BULK-1", "items": [biggest, biggest]},
            },
        )
        assert accepted.status_code == 200, accepted.text
        report = api.get("/api/reports/revenue", params={"days": 2})
    assert report.status_code == 200, report.text
    assert report.json()["revenue_eur"] == 2e21


# --------------------------------------------------------------------------- sizes and protocol


def test_payload_size_limits_are_exact(server: Server, fresh_ip: str) -> None:
    def padded(size: int) -> bytes:
        body = encode({"event": "visitor", "token": "size-token-01", "data": {"p": ""}})
        return body.replace(b'"p": ""', b'"p": "' + b"x" * (size - len(body)) + b'"')

    with server.client(fresh_ip) as api:
        assert api.post(TRACK, content=padded(50_000)).status_code == 200
        too_big = api.post(TRACK, content=padded(50_001))
        assert too_big.status_code == 400
        assert too_big.json()["error"]["code"] == "ANALYTICS_002"
        legacy = api.get(TRACK, params={"e": "visitor", "u": "size-token-01", "d": "9" * 50_001})
        assert legacy.json()["error"]["code"] == "ANALYTICS_002"
        batch = api.post("/api/analytics/batch", content=b"[" + b" " * 5_000_000 + b"]")
        assert batch.status_code == 400
        assert batch.json()["error"]["code"] == "ANALYTICS_002"
        many = api.post("/api/analytics/batch", json=[EVENT] * 501)
        assert many.status_code == 422
        assert many.json()["error"]["field"] == "events"


def raw_exchange(server: Server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_a_declared_huge_body_is_refused_before_it_is_sent(server: Server) -> None:
    """Content-Length alone decides: nothing is buffered, the answer comes at once."""
    answer = raw_exchange(
        server,
        b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.82.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert json.loads(body)["error"]["code"] == "ANALYTICS_002"


PROTOCOL_GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nContent-Length: \xb2\r\n\r\n{}",
    b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
    b"Content-Length: 5\r\n\r\n{}",
    b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n{}",
    b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n{}",
    b"GET /api/persons/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /api/analytics/track?e=%ff&u=%ff%fe%fd%fc%fb%fa%f9%f8 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /api/alias HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"x" * 300_000 + b"\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", PROTOCOL_GARBAGE, ids=range(len(PROTOCOL_GARBAGE)))
def test_protocol_garbage_gets_no_5xx_and_the_server_stays_up(
    server: Server, request_bytes: bytes
) -> None:
    answer = raw_exchange(server, request_bytes)
    if answer:  # the parser may also just close the connection
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    # A body cut short (the client went away) once logged a traceback as an unhandled error.
    assert "unhandled error" not in server.log.read_text()
