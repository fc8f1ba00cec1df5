"""Clients of the Segment-compatible API: the published server libraries, unchanged, against
a real server (``segment_clients`` runs each in a process of its own). Their error path (the
server's code and message reach ``on_error``, a 400/401 is not retried), RudderStack's batch
sizes, a message over 32 KB refused alone, the write-key rate limit, and the default
currency of an order."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CONFIG, SHOP, Server, config_with
from segment_clients import LIBRARIES, run

ALL = sorted(LIBRARIES)


def start(workdir: Path, config: str = CONFIG) -> tuple[Server, str]:
    """A server and the default site's write key (made while the DuckDB file is free)."""
    server = Server(workdir, config)
    server.start()
    server.stop()
    key = server.write_key("default")
    server.start()
    return server, key


def responses(server: Server, route: str, status: int) -> int:
    """How many answers of ``status`` the server gave on ``route`` (its /metrics)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    pattern = (
        rf'^footfall_http_responses_total\{{route="{re.escape(route)}",status="{status}"\}} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def tracks(count: int, size: int = 0, **extra: Any) -> list[dict[str, Any]]:
    """``count`` track calls of about ``size`` bytes each (their ``properties.text``)."""
    return [
        {
            "user_id": f"user-{i % 7}",
            "event": "Viewed Item",
            "properties": {"i": i, "text": uuid.uuid4().hex * (size // 32)},
            **extra,
        }
        for i in range(count)
    ]


@dataclass
class Keyed:
    server: Server
    key: str


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Keyed]:
    """A server of the test's own (its /metrics count only the test's calls) and its key."""
    server, key = start(tmp_path / "srv")
    yield Keyed(server, key)
    if server.process is not None:
        server.stop()


@pytest.mark.parametrize("library", ALL)
def test_a_wrong_write_key_reaches_the_library_as_the_servers_code_and_is_sent_once(
    keyed: Keyed, library: str
) -> None:
    """Before, the libraries found no top-level ``code``: KeyError, retried for minutes
    (segment-analytics-python 2.4 reported ``unknown``)."""
    server = keyed.server
    outcome = run(library, server.url, "wk_not_a_write_key_at_all", tracks(3))
    assert outcome.flushed, outcome.log  # done: not retrying
    assert outcome.errors == [
        {
            "type": "APIError",
            "status": 401,
            "code": "UNAUTHORIZED",
            "message": "unknown or revoked write key",
            "messages": 3,
        }
    ], outcome.log
    assert "UNAUTHORIZED" in outcome.log  # what the library logs names the server's code
    assert responses(server, "/v1/batch", 401) == 1


@pytest.mark.parametrize("library", ALL)
def test_a_batch_over_the_cap_reaches_the_library_as_the_servers_code_and_is_sent_once(
    tmp_path: Path, library: str
) -> None:
    """10 messages of 20 KB in one batch against a server whose cap is 64 KiB: 400
    ANALYTICS_002, which no library retries once it can read the code."""
    server, key = start(tmp_path / "srv", config_with("segment_max_batch_bytes = 65536"))
    try:
        outcome = run(
            library,
            server.url,
            key,
            tracks(10, 20_000),
            upload_size=10,
            upload_interval=10,  # the ten go in one batch
        )
        assert outcome.flushed, outcome.log
        assert outcome.errors == [
            {
                "type": "APIError",
                "status": 400,
                "code": "ANALYTICS_002",
                "message": "payload is larger than 65536 bytes",
                "messages": 10,
            }
        ], outcome.log
        assert responses(server, "/v1/batch", 400) == 1
    finally:
        server.stop()


def test_error_answers_on_v1_carry_code_and_message_at_the_top_level(keyed: Keyed) -> None:
    """Every /v1/* error (before the route too: an unknown path, a bad method), the
    documented shape beside; other routes keep theirs alone."""
    key = keyed.key
    with httpx.Client(base_url=keyed.server.url, timeout=30) as http:
        answers = [
            http.post("/v1/track", json={"event": "x", "userId": "u"}),  # no key
            http.post("/v1/batch", content=b'{"batch": [', headers=basic(key)),
            http.post("/v1/identify", json={"userId": "u", "traits": 1}, headers=basic(key)),
            http.post("/v1/nothing", json={}),
            http.get("/v1/batch"),
        ]
        for answer in answers:
            body = answer.json()
            assert body == {
                "success": False,
                "code": body["error"]["code"],
                "message": body["error"]["message"],
                "error": body["error"],
            }, answer.text
        assert [a.status_code for a in answers] == [401, 400, 400, 404, 405]
        assert answers[2].json()["error"]["field"] == "traits"
        other = http.post("/api/analytics/track", content=b"{")
        assert set(other.json()) == {"success", "error"}
        document = http.get("/openapi.json").json()
        said = document["paths"]["/v1/batch"]["post"]["responses"]
        assert {said[s]["content"]["application/json"]["schema"]["$ref"] for s in said} == {
            "#/components/schemas/SegmentResponse",
            "#/components/schemas/SegmentErrorResponse",
        }
        schema = document["components"]["schemas"]["SegmentErrorResponse"]
        assert set(schema["required"]) == {"success", "code", "message", "error"}


@pytest.mark.parametrize("workers", [0, 2])
def test_rudderstacks_default_batches_are_stored_whole(tmp_path: Path, workers: int) -> None:
    """rudder-sdk-python's defaults: 100 messages a batch (up to 4 MiB), gzip. 100 messages
    of about 6 KB (600 KB, over the old 500 KB cap) are all stored, in the server or in an
    ingest worker alike."""
    server, key = start(tmp_path / "srv", config_with(f"ingest_workers = {workers}"))
    try:
        outcome = run("rudder-sdk-python", server.url, key, tracks(100, 6_000), upload_interval=5)
        assert (outcome.flushed, outcome.errors) == (True, []), outcome.log
        assert responses(server, "/v1/batch", 200) == 1  # one batch of 100
    finally:
        server.stop()
    assert server.rows("SELECT count(*) FROM events") == [(100,)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_message_over_32_kb_is_refused_alone_and_the_rest_stored(
    tmp_path: Path, workers: int
) -> None:
    """rudder-sdk-python sends a message of up to 4 MiB; one over the 32 KB a message may
    have is listed in ``rejected`` and the batch's other messages are stored."""
    server, key = start(tmp_path / "srv", config_with(f"ingest_workers = {workers}"))
    messages = tracks(100, 6_000)
    messages[40]["properties"]["text"] = "y" * 40_000
    try:
        outcome = run("rudder-sdk-python", server.url, key, messages, upload_interval=5)
        assert (outcome.flushed, outcome.errors) == (True, []), outcome.log
        assert responses(server, "/v1/batch", 200) == 1
        big = {
            "type": "track",
            "userId": "u-big",
            "event": "Big",
            "properties": {"x": "y" * 40_000},
        }
        small = {"type": "track", "userId": "u-small", "event": "Small"}
        batch = {"batch": [small, big, small | {"properties": {"x": "z" * 30_000}}]}
        answer = httpx.post(server.url + "/v1/batch", json=batch, headers=basic(key), timeout=30)
        assert answer.json() == {
            "success": True,
            "stored": 2,
            "accepted": 2,
            "rejected": [
                {
                    "index": 1,
                    "success": False,
                    "error": {
                        "code": "ANALYTICS_002",
                        "message": "payload is larger than 32768 bytes",
                    },
                }
            ],
        }
    finally:
        server.stop()
    assert server.rows("SELECT count(*), count(*) FILTER (WHERE token = 'u-big') FROM events") == [
        (101, 0)
    ]


def test_a_batch_of_more_than_10000_messages_is_refused_whole(keyed: Keyed) -> None:
    """A cap on the count too: a batch of tiny messages could otherwise outgrow the ingest
    queue (a 503 for ever) within the byte cap."""
    tiny = {"type": "page", "userId": 1}
    with httpx.Client(base_url=keyed.server.url, headers=basic(keyed.key), timeout=60) as http:
        answer = http.post("/v1/batch", json={"batch": [tiny] * 10_001})
        assert (answer.status_code, answer.json()["code"]) == (400, "ANALYTICS_002")
        assert answer.json()["message"] == "more than 10000 messages in one batch"
        assert http.post("/v1/batch", json={"batch": [tiny] * 10_000}).json()["stored"] == 10_000


TRACK = {"type": "track", "userId": "burst-user", "event": "Burst"}


def test_a_write_key_sender_has_a_limit_of_its_own_and_browsers_keep_the_per_ip_one(
    tmp_path: Path,
) -> None:
    """A backend sends from one IP: 500 calls in a burst are taken (the per-IP limit stopped
    the 121st), then the write key's pace answers 429 with Retry-After, in both shapes.
    Keyless calls, a key in the body (analytics.js) and a browser's calls keep the per-IP
    limit; the bucket is the key's and the IP's, so another sender of the key has its own."""
    config = config_with("write_key_rate_limit_per_minute = 60", "write_key_burst = 500")
    server, key = start(tmp_path / "srv", config)
    try:
        with server.client("10.70.0.1", headers=basic(key)) as http:
            statuses = [http.post("/v1/track", json=TRACK).status_code for _ in range(500)]
            assert statuses == [200] * 500
            for _ in range(200):  # 60/min: a few more at most while the loop runs
                answer = http.post("/v1/track", json=TRACK)
                if answer.status_code != 200:
                    break
            assert answer.status_code == 429, answer.text
            body = answer.json()
            assert body["code"] == body["error"]["code"] == "RATE_LIMITED"
            assert body["message"] == body["error"]["message"]
            assert "write key" in body["message"]
            assert 1 <= int(answer.headers["retry-after"]) <= 60
            batch = http.post("/v1/batch", json={"batch": [TRACK]})
            assert batch.status_code == 429  # every /v1 route of the key shares it
        with server.client("10.70.0.2", headers=basic(key)) as http:
            assert http.post("/v1/track", json=TRACK).status_code == 200
        with server.client("10.70.0.1") as http:
            event = {"event": "visitor", "token": "burst-token-01"}
            statuses = [
                http.post("/api/analytics/track", json=event).status_code for _ in range(121)
            ]
            assert statuses == [200] * 120 + [429]
            in_body = http.post("/v1/track", json={**TRACK, "writeKey": key})
            browser = http.post("/v1/track", json=TRACK, headers={**basic(key), "origin": SHOP})
            wrong = http.post("/v1/track", json=TRACK, headers=basic("wk_not_a_write_key_at_all"))
            for answer in (in_body, browser, wrong):
                assert answer.status_code == 429, answer.text
                assert answer.json()["message"] == "too many requests from this IP; slow down"
        with server.client("10.70.0.3", headers=basic(key)) as http:
            assert http.post("/v1/track", json=TRACK).status_code == 200  # not this IP's minute
    finally:
        server.stop()


@pytest.mark.parametrize("library", ALL)
def test_an_order_without_currency_is_usd(tmp_path: Path, library: str) -> None:
    """Segment's spec: an ``Order Completed`` without ``currency`` is in US dollars; the
    revenue report (EUR) converts it, none is left without a EUR total."""
    server = Server(tmp_path / "srv")
    api_key = server.start_with_key()
    server.stop()
    write_key = server.write_key("default")
    server.start()
    order = {
        "user_id": "buyer-1",
        "event": "Order Completed",
        "properties": {
            "order_id": "ORD-USD-1",
            "revenue": 100.0,
            "products": [{"product_id": "SKU-1", "price": 50.0, "quantity": 2}],
        },
    }
    try:
        outcome = run(library, server.url, write_key, [order])
        assert (outcome.flushed, outcome.errors) == (True, []), outcome.log
        bearer = {"authorization": f"Bearer {api_key}"}
        revenue = httpx.get(
            server.url + "/api/reports/revenue", params={"days": 2}, headers=bearer, timeout=30
        ).json()
        assert (revenue["orders"], revenue["orders_without_eur"]) == (1, 0)
        assert revenue["revenue_eur"] == pytest.approx(100.0 * 0.92)
        assert revenue["top_items"][0]["revenue_eur"] == pytest.approx(100.0 * 0.92)
    finally:
        server.stop()
    stored = server.rows("SELECT data->>'currency', items->0->>'currency' FROM events")
    assert stored == [("USD", "USD")]
