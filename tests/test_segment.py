"""The Segment-spec API against a real server: Segment's own Python library, unchanged,
then the persons API and the reports; idempotency by messageId (restart and concurrent
resends too), clock-skew correction, write keys, limits and answers, gzip bodies."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CONFIG, Server


class Keys:
    def __init__(self, server: Server, api_key: str, write_key: str) -> None:
        self.server = server
        self.api_key = api_key
        self.write_key = write_key

    def client(self, ip: str) -> httpx.Client:
        return self.server.client(ip, headers={"authorization": f"Bearer {self.api_key}"})

    def basic(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.write_key}:".encode()).decode()
        return {"authorization": f"Basic {token}"}


def start_keyed(workdir: Path, config: str = CONFIG) -> Keys:
    server = Server(workdir, config)
    server.start()
    server.stop()
    api_key = server.new_key("default")
    write = server.write_key("default")
    server.start()
    return Keys(server, api_key, write)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Keys]:
    keys = start_keyed(tmp_path / "srv")
    yield keys
    if keys.server.process is not None:
        keys.server.stop()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "messageId": str(uuid.uuid4()), **fields}


def test_segments_python_library_unchanged_then_persons_and_reports(
    keyed: Keys, fresh_ip: str
) -> None:
    """analytics-python (segment-analytics-python from PyPI) as its users run it."""
    from segment.analytics import Client

    errors: list[Any] = []
    client = Client(
        keyed.write_key,
        host=keyed.server.url,
        on_error=lambda error, batch: errors.append(error),
        max_retries=1,
        upload_size=100,
    )
    client.identify("user-1", {"email": "Jane@Shop.test", "name": "Jane Doe"})
    client.alias("anon-prev-0001", "user-1")
    client.page("user-1", "Docs", "Pricing", {"url": "https://shop.test/pricing"})
    client.track(
        "user-1",
        "Order Completed",
        {
            "order_id": "ORD-7",
            "currency": "EUR",
            "revenue": 60.0,
            "products": [
                {"product_id": "SKU-1", "price": 20.0, "quantity": 2},
                {"product_id": "SKU-2", "price": 20.0, "quantity": 1},
            ],
        },
    )
    client.track("user-1", "Product Added", {"product_id": "SKU-3", "price": 5.0})
    client.track("user-2", "Order Completed", {"order_id": "ORD-8", "revenue": 10.0})  # USD
    for i in range(1000):
        client.track(f"user-{i % 10 + 10}", "Viewed Item", {"item": i})
    client.flush()
    client.join()
    assert errors == []

    http = keyed.client(fresh_ip)
    profile = http.get("/api/persons/client_id:user-1").json()
    assert profile["customer_ids"] == ["client_id:user-1"]  # the only one with events
    names = {f"{i['kind']}:{i['value']}" for i in profile["identifiers"]}
    assert names == {"client_id:user-1", "email:jane@shop.test", "token:anon-prev-0001"}
    assert profile["metadata"] == {"name": "Jane Doe"}
    journey = http.get("/api/persons/client_id:user-1/journey").json()["events"]
    kinds = sorted((e["event"], e["custom_event"]) for e in journey)
    assert kinds == [("added_to_cart", None), ("purchase", None), ("visitor", None)]
    purchase = next(e for e in journey if e["event"] == "purchase")
    assert purchase["order_num"] == "ORD-7"
    assert [i["item_id"] for i in purchase["items"]] == ["SKU-1", "SKU-2"]
    revenue = http.get("/api/reports/revenue", params={"days": 2}).json()
    assert revenue["orders"] == 2
    assert revenue["revenue_eur"] == pytest.approx(60.0 + 10.0 * 0.92)
    assert revenue["buyers"] == 2
    custom = http.get("/api/reports/custom-events", params={"days": 2}).json()
    assert custom["events"] == [
        {**custom["events"][0], "name": "Viewed Item", "count": 1000, "people": 10}
    ]
    overview = http.get("/api/reports/overview", params={"days": 2}).json()
    assert overview["events"] == 1004
    assert overview["people"] == 12  # user-1 (with its email and alias), user-2, 10 viewers
    assert overview["visits"] == 1


def test_a_resent_batch_adds_nothing_even_across_a_crash_and_concurrently(
    keyed: Keys, fresh_ip: str
) -> None:
    batch = {
        "batch": [
            message("track", anonymousId=f"anon-{i:06d}", event="Clicked", properties={"i": i})
            for i in range(200)
        ]
    }
    url = "/v1/batch"
    with keyed.server.client(fresh_ip, headers=keyed.basic()) as http:
        assert http.post(url, json=batch).json() == {"success": True, "stored": 200}
        assert http.post(url, json=batch).json() == {"success": True, "stored": 0}
    keyed.server.stop(9)  # SIGKILL: the journal is replayed at the next start
    keyed.server.start()
    answers: list[int] = []

    def resend() -> None:
        with keyed.server.client(fresh_ip, headers=keyed.basic()) as http:
            answers.append(http.post(url, json=batch).status_code)

    threads = [threading.Thread(target=resend) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 6
    fresh = {"batch": [message("track", anonymousId="anon-000001", event="Clicked")]}
    with keyed.server.client(fresh_ip, headers=keyed.basic()) as http:
        assert http.post(url, json=fresh).status_code == 200
    keyed.server.stop()
    assert keyed.server.rows("SELECT count(*) FROM events") == [(201,)]
    assert keyed.server.rows("SELECT count(*) FROM message_ids") == [(201,)]


def test_clock_skew_is_corrected_from_sent_at(keyed: Keys, fresh_ip: str) -> None:
    """A client whose clock runs 3 hours fast: its event happened 2 minutes before it sent
    the batch, so it lands 2 minutes before the server received it."""
    skew = timedelta(hours=3)
    client_now = datetime.now(UTC) + skew
    batch = {
        "sentAt": iso(client_now),
        "batch": [
            message(
                "track",
                anonymousId="skewed-0001",
                event="Clicked",
                timestamp=iso(client_now - timedelta(minutes=2)),
            ),
            message(
                "page",
                anonymousId="skewed-0001",
                sentAt=iso(client_now),
                originalTimestamp=iso(client_now - timedelta(minutes=5)),
                timestamp=iso(client_now + timedelta(days=9)),
            ),
        ],
    }
    before = datetime.now(UTC).replace(tzinfo=None)
    with keyed.server.client(fresh_ip, headers=keyed.basic()) as http:
        assert http.post("/v1/batch", json=batch).json() == {"success": True, "stored": 2}
    after = datetime.now(UTC).replace(tzinfo=None)
    keyed.server.stop()
    times = dict(keyed.server.rows("SELECT event, ts FROM events"))
    clicked, viewed = times["custom"], times["visitor"]
    slack = timedelta(seconds=2)
    assert before - timedelta(minutes=2) - slack <= clicked <= after - timedelta(minutes=2)
    assert before - timedelta(minutes=5) - slack <= viewed <= after - timedelta(minutes=5)


def test_write_keys_send_only_and_answers_follow_segment(keyed: Keys, fresh_ip: str) -> None:
    one = message("track", anonymousId="anon-keys-01", event="Clicked")
    with keyed.server.client(fresh_ip) as http:
        assert http.post("/v1/track", json=one).status_code == 401
        assert http.post("/v1/track", json={**one, "writeKey": "fw_" + "x" * 32}).status_code == 401
        sent = http.post("/v1/track", json={**one, "writeKey": keyed.write_key}).json()
        assert sent == {"success": True, "stored": 1}
        # A write key is no API key: it reads and administers nothing.
        bearer = {"authorization": f"Bearer {keyed.write_key}"}
        assert http.get("/api/reports/overview", headers=bearer).status_code == 401
        assert http.get("/api/persons/anon-keys-01", headers=bearer).status_code == 401
        assert (
            http.post("/api/alias", json={"a": "x1", "b": "y1"}, headers=bearer).status_code == 401
        )
        basic = keyed.basic()
        # A single call over 32 KB, a batch over 9 MB, and bad JSON: 400 with a reason; a
        # message over 32 KB in a batch is refused alone (test_segment_clients.py).
        big = {
            **message("track", anonymousId="anon-keys-01", event="Big"),
            "properties": {"x": "y" * 33_000},
        }
        answer = http.post("/v1/track", json=big, headers=basic)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "ANALYTICS_002")
        answer = http.post("/v1/batch", json={"batch": [big]}, headers=basic)
        assert answer.json()["rejected"][0]["error"]["code"] == "ANALYTICS_002"
        many = {"batch": [{**one, "properties": {"x": "y" * 20_000}} for _ in range(460)]}
        answer = http.post("/v1/batch", json=many, headers=basic)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "ANALYTICS_002")
        answer = http.post("/v1/batch", content=b'{"batch": [', headers=basic)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "ANALYTICS_001")
        # A message that breaks a rule is dropped alone; a single call says why (400).
        mixed = {
            "batch": [
                message("track", event="No ids"),
                one,
                message("track", anonymousId="anon-keys-02", event="a\x01b"),
            ]
        }
        answer = http.post("/v1/batch", json=mixed, headers=basic).json()
        assert answer["success"] is True
        assert [(r["index"], r["error"]["field"]) for r in answer["rejected"]] == [
            (0, "anonymousId"),
            (2, "event"),
        ]
        answer = http.post(
            "/v1/identify", json={"userId": "u-1", "traits": {"email": "no"}}, headers=basic
        )
        assert (answer.status_code, answer.json()["error"]["field"]) == (400, "user.email")
        # Fields a message's type does not use are still held to their documented types.
        for path, odd in (
            ("/v1/identify", {"previousId": False}),
            ("/v1/group", {"groupId": "g-1", "previousId": "p" * 256}),
            ("/v1/track", {"event": "Odd", "groupId": [1]}),
            ("/v1/alias", {"previousId": "p-1", "messageId": ""}),
        ):
            answer = http.post(path, json={"userId": "u-1", **odd}, headers=basic)
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["error"]["field"] == next(iter(reversed(odd))), answer.text
        # From a browser: the site's origins apply to a write key too.
        allowed = http.post(
            "/v1/t",
            json={**one, "writeKey": keyed.write_key},
            headers={"origin": "https://shop.test"},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://shop.test"
        foreign = http.post(
            "/v1/t",
            json={**one, "writeKey": keyed.write_key},
            headers={"origin": "https://evil.test"},
        )
        assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    keyed.server.stop()
    assert keyed.server.rows("SELECT count(*) FROM events") == [(1,)]  # one messageId


def gzipped(payload: Any) -> bytes:
    return gzip.compress(json.dumps(payload).encode())


GZIP = {"content-encoding": "gzip", "content-type": "application/json"}


def test_gzip_bodies_on_every_ingest_route(keyed: Keys, fresh_ip: str) -> None:
    event = {"event": "visitor", "token": "gzip-token-01"}
    basic = {**GZIP, **keyed.basic()}
    routes: list[tuple[str, Any, dict[str, str]]] = [
        ("/api/analytics/track", event, GZIP),
        ("/api/events/track", event, GZIP),
        ("/api/save", event, GZIP),
        ("/api/analytics/batch", {"events": [event, event]}, GZIP),
        ("/api/identify", {"token": "gzip-token-01", "user": {"uniqueClientId": "gz-1"}}, GZIP),
        ("/v1/track", message("track", anonymousId="gzip-token-01", event="Zipped"), basic),
        ("/v1/batch", {"batch": [message("page", anonymousId="gzip-token-01")]}, basic),
    ]
    # A bomb: 50 MB of zeros in 50 KB; refused without inflating past the cap.
    bomb = gzip.compress(b'{"x":"' + b"0" * (50 << 20) + b'"}', compresslevel=9)
    with keyed.server.client(fresh_ip) as http:
        for path, payload, headers in routes:
            answer = http.post(path, content=gzipped(payload), headers=headers)
            assert answer.status_code == 200, (path, answer.text)
            # Plain JSON labelled gzip is no longer taken as it is.
            plain = http.post(path, content=json.dumps(payload).encode(), headers=headers)
            assert (plain.status_code, plain.json()["error"]["code"]) == (400, "ANALYTICS_001")
            answer = http.post(path, content=bomb, headers=headers)
            assert (answer.status_code, answer.json()["error"]["code"]) == (400, "ANALYTICS_002")
            cut = http.post(path, content=gzipped(payload)[:-6], headers=headers)
            assert (cut.status_code, cut.json()["error"]["code"]) == (400, "ANALYTICS_001")
        other = http.post("/api/analytics/track", content=b"{}", headers={"content-encoding": "br"})
        assert (other.status_code, other.json()["error"]["code"]) == (400, "ANALYTICS_001")
    keyed.server.stop()
    stored = dict(keyed.server.rows("SELECT event, count(*) FROM events GROUP BY 1"))
    assert stored == {"visitor": 6, "custom": 1}


CONTROL_IDS: list[tuple[str, dict[str, Any], str]] = [
    ("identify", {"userId": "u-\x1b[2J"}, "userId"),
    ("track", {"anonymousId": "anon \x07 bell", "event": "Clicked"}, "anonymousId"),
    ("alias", {"userId": "u-1", "previousId": "p-\x00"}, "previousId"),
    ("group", {"userId": "u-1", "groupId": "g-\x1b]8;;https://evil.test\x1b\\"}, "groupId"),
    ("page", {"userId": "u-\x9b31m"}, "userId"),  # C1: CSI
    ("track", {"anonymousId": "anon-ctrl-01", "userId": "a\nb", "event": "E"}, "userId"),
]


def test_control_characters_in_ids_are_refused(keyed: Keys, fresh_ip: str) -> None:
    """userId, anonymousId, previousId, groupId and the tracker's uniqueClientId refuse
    control characters as custom event names do: a single call answers with the field
    (400 on Segment's routes, which answer a single call's faults so, 422 on the tracker's),
    a batch drops the message alone."""
    basic = keyed.basic()
    with keyed.server.client(fresh_ip) as http:
        for kind, fields, field in CONTROL_IDS:
            answer = http.post(f"/v1/{kind}", json=message(kind, **fields), headers=basic)
            assert answer.status_code == 400, (kind, answer.text)
            error = answer.json()["error"]
            assert (error["code"], error["field"]) == ("VALIDATION_ERROR", field), answer.text
        good = message("track", anonymousId="anon-ctrl-01", event="Clicked")
        batch = [message(kind, **fields) for kind, fields, _ in CONTROL_IDS] + [good]
        answer = http.post("/v1/batch", json={"batch": batch}, headers=basic)
        assert answer.status_code == 200, answer.text
        assert [(r["index"], r["error"]["field"]) for r in answer.json()["rejected"]] == [
            (i, field) for i, (_, _, field) in enumerate(CONTROL_IDS)
        ]
        identify = {"token": "ctrl-token-01", "user": {"uniqueClientId": "c-\x1b[31m"}}
        answer = http.post("/api/identify", json=identify)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("VALIDATION_ERROR", "user.uniqueClientId")
    keyed.server.stop()
    assert keyed.server.rows("SELECT count(*) FROM events") == [(1,)]
    assert keyed.server.rows("SELECT value FROM identity_nodes") == []  # no call made one
