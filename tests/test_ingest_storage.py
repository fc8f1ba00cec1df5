"""What ends up in the DuckDB file: normalisation, currencies, dedup, A/B groups, truncation."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from conftest import Server
from footfall.ingest.validate import EUR_RATES, EVENT_TYPES

RATES = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CZK": 0.041,
    "PLN": 0.23,
    "RON": 0.20,
    "HUF": 0.0026,
    "UAH": 0.024,
    "CHF": 1.05,
    "DKK": 0.134,
    "SEK": 0.088,
    "NOK": 0.086,
    "BGN": 0.51,
    "HRK": 0.133,
    "RSD": 0.0085,
}


def test_rate_table_is_the_specified_one() -> None:
    assert dict(EUR_RATES) == RATES


def test_every_event_type_is_stored_and_tracktrans_becomes_purchase(fresh_server: Server) -> None:
    with fresh_server.client("10.0.0.1") as api:
        for i, name in enumerate(sorted(EVENT_TYPES)):
            assert (
                api.post(
                    "/api/analytics/track", json={"event": name, "token": f"token-{i:04d}"}
                ).status_code
                == 200
            )
        assert (
            api.post(
                "/api/analytics/track", json={"event": "tracktrans", "token": "token-legacy"}
            ).status_code
            == 200
        )
    fresh_server.stop()
    stored = dict(fresh_server.rows("SELECT token, event FROM events"))
    assert {stored[f"token-{i:04d}"] for i in range(len(EVENT_TYPES))} == set(EVENT_TYPES)
    assert stored["token-legacy"] == "purchase"
    assert len(stored) == len(EVENT_TYPES) + 1


def test_every_currency_converts_to_eur_and_unknown_is_null(fresh_server: Server) -> None:
    with fresh_server.client("10.0.0.2") as api:
        for code in [*RATES, "JPY"]:
            payload = {
                "event": "purchase",
                "token": f"buyer-{code}",
                "data": {
                    "orderNum": f"order-{code}",
                    "items": [
                        {"item_id": "A", "value": 10, "quantity": 3, "currency": code},
                        {"id": "B", "price": 5.5, "currency": code},
                    ],
                },
            }
            assert api.post("/api/analytics/track", json=payload).status_code == 200
    fresh_server.stop()
    totals = dict(fresh_server.rows("SELECT token, total_value_base FROM events"))
    for code, rate in RATES.items():
        assert math.isclose(totals[f"buyer-{code}"], (10 * 3 + 5.5) * rate, rel_tol=1e-9), code
    assert totals["buyer-JPY"] is None
    log = fresh_server.log.read_text()
    warnings = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and "unknown currency" in line
    ]
    assert warnings
    assert warnings[0]["level"] == "WARNING"
    assert warnings[0]["currencies"] == ["JPY"]


def test_items_are_normalised(fresh_server: Server) -> None:
    payload = {
        "event": "added_to_cart",
        "token": "cart-token-1",
        "data": {
            "items": [
                {"id": "SKU-1", "price": 49.99, "name": "Mug"},
                {"item_id": 77, "value": 2, "quantity": 4, "currency": "gbp"},
            ]
        },
    }
    with fresh_server.client("10.0.0.3") as api:
        assert api.post("/api/analytics/track", json=payload).status_code == 200
    fresh_server.stop()
    [(items, total)] = fresh_server.rows("SELECT items, total_value_base FROM events")
    assert json.loads(items) == [
        {"name": "Mug", "item_id": "SKU-1", "value": 49.99, "quantity": 1, "currency": "EUR"},
        {"item_id": "77", "value": 2.0, "quantity": 4, "currency": "GBP"},
    ]
    assert math.isclose(total, 49.99 + 2 * 4 * 1.17)


def test_purchases_deduplicated_by_order_number_per_site(fresh_server: Server) -> None:
    def purchase(order: str, token: str) -> dict[str, Any]:
        return {
            "event": "purchase",
            "token": token,
            "data": {"orderNum": order, "items": [{"item_id": "A", "value": 10}]},
        }

    with fresh_server.client("10.0.0.4") as api:
        first = api.post("/api/analytics/track", json=purchase("ORD-1", "buyer-aaaa"))
        again = api.post("/api/analytics/track", json=purchase("ORD-1", "buyer-aaaa"))
        legacy = api.post(
            "/api/save", json={**purchase("ORD-1", "buyer-bbbb"), "event": "tracktrans"}
        )
        other_site = api.post(
            "/api/analytics/track?site=other", json=purchase("ORD-1", "buyer-cccc")
        )
        second_order = api.post("/api/analytics/track", json=purchase("ORD-2", "buyer-aaaa"))
        batch = api.post(
            "/api/analytics/batch",
            json={"events": [purchase("ORD-3", "buyer-dddd"), purchase("ORD-3", "buyer-dddd")]},
        )
    assert first.json() == {"success": True}
    assert again.json() == {"success": True, "duplicate": True}
    assert legacy.json() == {"success": True, "duplicate": True}
    assert other_site.json() == {"success": True}
    assert second_order.json() == {"success": True}
    assert [r.get("duplicate", False) for r in batch.json()["results"]] == [False, True]
    fresh_server.stop()
    rows = fresh_server.rows(
        "SELECT site_id, order_num, count(*), count(*) FILTER (WHERE NOT duplicate) "
        "FROM events GROUP BY ALL ORDER BY ALL"
    )
    assert rows == [
        ("default", "ORD-1", 3, 1),
        ("default", "ORD-2", 1, 1),
        ("default", "ORD-3", 2, 1),
        ("other", "ORD-1", 1, 1),
    ]


def test_ab_group_from_last_token_character(fresh_server: Server) -> None:
    cases = {"abcdefg0": "control", "abcdefg1": "test", "abcdefg2": None, "abcdefgx": None}
    with fresh_server.client("10.0.0.5") as api:
        for token in cases:
            api.post(
                "/api/analytics/track", json={"event": "visitor", "token": token, "ab_test": True}
            )
        api.post("/api/analytics/track", json={"event": "visitor", "token": "nogroup1"})
        api.post(
            "/api/analytics/track", json={"event": "visitor", "token": "nogroup0", "ab_test": False}
        )
        api.get("/api/events/track", params={"e": "visitor", "u": "legacyab1", "ab_test": "true"})
    fresh_server.stop()
    groups = dict(fresh_server.rows("SELECT token, ab_group FROM events"))
    assert groups == {**cases, "nogroup1": None, "nogroup0": None, "legacyab1": "test"}


def test_url_and_user_agent_truncated_not_rejected(fresh_server: Server) -> None:
    long_url = "https://shop.test/" + "p" * 3_000
    long_agent = "Agent/" + "u" * 2_000
    with fresh_server.client("10.0.0.6", headers={"user-agent": long_agent}) as api:
        ok = api.post(
            "/api/analytics/track",
            json={"event": "visitor", "token": "trunc-token", "url": long_url},
        )
        via_referer = api.post(
            "/api/analytics/track",
            json={"event": "visitor", "token": "ref-token1"},
            headers={"referer": "https://shop.test/from-referer"},
        )
    assert ok.status_code == 200
    assert via_referer.status_code == 200
    fresh_server.stop()
    stored = {
        t: (u, a) for t, u, a in fresh_server.rows("SELECT token, url, user_agent FROM events")
    }
    assert stored["trunc-token"] == (long_url[:2_048], long_agent[:1_024])
    assert stored["ref-token1"][0] == "https://shop.test/from-referer"


def test_legacy_get_maps_e_u_d(fresh_server: Server) -> None:
    data = {"chatbot_id": "550e8400", "orderNum": "G-1", "items": [{"item_id": "S", "value": 2}]}
    with fresh_server.client("10.0.0.7") as api:
        for path in ("/api/analytics/track", "/api/events/track"):
            answer = api.get(
                path, params={"e": "purchase", "u": f"get-token-{path[5:8]}", "d": json.dumps(data)}
            )
            assert answer.status_code == 200
    fresh_server.stop()
    rows = fresh_server.rows(
        "SELECT token, event, chatbot_id, order_num, total_value_base, duplicate "
        "FROM events ORDER BY event_id"
    )
    assert rows == [
        ("get-token-ana", "purchase", "550e8400", "G-1", 2.0, False),
        ("get-token-eve", "purchase", "550e8400", "G-1", 2.0, True),
    ]


def test_columns_and_free_form_properties(fresh_server: Server) -> None:
    payload = {
        "event": "convo_started",
        "token": "props-token",
        "ephemeral": True,
        "data": {
            "chatbot_id": "bot-7",
            "open_way": "popup",
            "popup_version": "v2",
            "text": "Where is my parcel?",
            "extra": {"n": 1},
        },
    }
    with fresh_server.client("10.0.0.8") as api:
        assert api.post("/api/analytics/track", json=payload).status_code == 200
    fresh_server.stop()
    [row] = fresh_server.rows(
        "SELECT site_id, event, chatbot_id, open_way, popup_version, ephemeral, data FROM events"
    )
    assert row[:6] == ("default", "convo_started", "bot-7", "popup", "v2", True)
    assert json.loads(row[6]) == {"text": "Where is my parcel?", "extra": {"n": 1}}


def test_bad_input_loses_nothing_else(fresh_server: Server) -> None:
    good = [{"event": "visitor", "token": f"good-token-{i}"} for i in range(5)]
    with fresh_server.client("10.0.0.9") as api:
        for i, event in enumerate(good):
            assert api.post("/api/analytics/track", json=event).status_code == 200
            assert api.post("/api/analytics/track", content=b"{oops").status_code == 400
            assert (
                api.post("/api/analytics/track", json={"event": "x", "token": "t"}).status_code
                == 422
            )
            if i == 2:
                batch = api.post(
                    "/api/analytics/batch",
                    json=[
                        {"event": "visitor", "token": "batch-good-1"},
                        {"event": "visitor"},
                        "not an object",
                        {"event": "visitor", "token": "batch-good-2"},
                    ],
                )
                assert batch.status_code == 200
                assert [r["status"] for r in batch.json()["results"]] == [200, 422, 400, 200]
    fresh_server.stop()
    tokens = {t for (t,) in fresh_server.rows("SELECT token FROM events")}
    assert tokens == {e["token"] for e in good} | {"batch-good-1", "batch-good-2"}


def test_client_time_is_kept_within_bounds(fresh_server: Server) -> None:
    import time

    now_ms = time.time() * 1000
    with fresh_server.client("10.0.0.10") as api:
        for token, ts in [
            ("recent-tok", now_ms - 3_600_000),
            ("future-tok", now_ms + 86_400_000),
            ("ancient-tok", now_ms - 30 * 86_400_000),
        ]:
            api.post("/api/analytics/track", json={"event": "visitor", "token": token, "ts": ts})
    fresh_server.stop()
    lag = dict(fresh_server.rows("SELECT token, epoch(received_at) - epoch(ts) FROM events"))
    assert 3590 < lag["recent-tok"] < 3610
    assert abs(lag["future-tok"]) < 1
    assert abs(lag["ancient-tok"]) < 1


@pytest.mark.parametrize("shape", ["envelope", "array"])
def test_batch_endpoint(fresh_server: Server, shape: str) -> None:
    events = [{"event": "visitor", "token": f"batch-token-{i:03d}"} for i in range(500)]
    events[10] = {"event": "visitor", "token": "bad"}
    payload: Any = {"events": events} if shape == "envelope" else events
    with fresh_server.client("10.0.0.11") as api:
        answer = api.post("/api/analytics/batch", json=payload)
        too_many = api.post("/api/analytics/batch", json={"events": events + events[:1]})
        to_other = api.post("/api/analytics/batch", json={"site": "other", "events": events[:3]})
    result = answer.json()
    assert answer.status_code == 200
    assert (result["accepted"], result["rejected"], result["success"]) == (499, 1, False)
    assert result["results"][10]["error"]["field"] == "token"
    assert result["results"][10]["status"] == 422
    assert too_many.status_code == 422
    assert too_many.json()["error"]["field"] == "events"
    assert to_other.json()["accepted"] == 3
    fresh_server.stop()
    assert fresh_server.rows("SELECT site_id, count(*) FROM events GROUP BY 1 ORDER BY 1") == [
        ("default", 499),
        ("other", 3),
    ]
