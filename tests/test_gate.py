"""Rate limiting per client IP, trusted proxies, origin validation and CORS, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import OTHER, SHOP, Server

EVENT = {"event": "visitor", "token": "rate-limit-token"}


def test_121st_request_within_a_minute_gets_429_other_ip_does_not(
    server: Server, fresh_ip: str
) -> None:
    with server.client(fresh_ip) as api:
        statuses = [api.post("/api/analytics/track", json=EVENT).status_code for _ in range(120)]
        assert statuses == [200] * 120
        limited = api.post("/api/analytics/track", json=EVENT)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Every public route shares the per-IP budget, the legacy GET form included.
        assert (
            api.get("/api/events/track", params={"e": "visitor", "u": "abcdefgh"}).status_code
            == 429
        )
    with server.client("192.0.2.77") as other:
        assert other.post("/api/analytics/track", json=EVENT).status_code == 200


def test_forwarded_for_honoured_only_from_trusted_proxy(server: Server) -> None:
    """The proxy appends the client it saw; hops left of it are the client's own claims."""
    with server.client() as api:
        for _ in range(120):
            api.post(
                "/api/analytics/track",
                json=EVENT,
                headers={"x-forwarded-for": f"spoofed-{_}, 203.0.113.9"},
            )
        blocked = api.post(
            "/api/analytics/track",
            json=EVENT,
            headers={"x-forwarded-for": "198.51.100.1, 203.0.113.9"},
        )
        assert blocked.status_code == 429


@pytest.fixture
def untrusting_server(tmp_path: Path) -> Iterator[Server]:
    config = 'allowed_origins = ["*"]\nrate_limit_per_minute = 120\n'
    srv = Server(tmp_path / "srv", config=config).start()
    yield srv
    srv.stop()


def test_peer_address_is_the_key_without_trusted_proxies(untrusting_server: Server) -> None:
    """Sent from 127.0.0.2 and 127.0.0.3 for real; a forged X-Forwarded-For changes nothing."""

    def client(source: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=untrusting_server.url, transport=transport, timeout=30)

    with client("127.0.0.2") as first, client("127.0.0.3") as second:
        for i in range(120):
            forged = {"x-forwarded-for": f"10.9.{i}.1"}
            assert first.post("/api/analytics/track", json=EVENT, headers=forged).status_code == 200
        assert first.post("/api/analytics/track", json=EVENT).status_code == 429
        assert second.post("/api/analytics/track", json=EVENT).status_code == 200


def test_disallowed_origin_is_403(api: httpx.Client) -> None:
    answer = api.post("/api/analytics/track", json=EVENT, headers={"origin": "https://evil.test"})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    assert "access-control-allow-origin" not in answer.headers
    referer_only = api.get(
        "/api/analytics/track",
        params={"e": "visitor", "u": "abcdefgh"},
        headers={"referer": "https://evil.test/page"},
    )
    assert referer_only.status_code == 403


def test_allowed_origins_exact_wildcard_and_per_site(api: httpx.Client) -> None:
    for origin in (
        SHOP,
        "https://www.shop.test",
        "https://help.shop.test",
        "HTTPS://SHOP.TEST:443",
    ):
        answer = api.post("/api/analytics/track", json=EVENT, headers={"origin": origin})
        assert answer.status_code == 200, origin
        assert answer.headers["access-control-allow-origin"] in (SHOP, origin.lower())
        assert answer.headers["access-control-allow-credentials"] == "true"
    # http is a different origin from https; the bare suffix is not a subdomain.
    for origin in ("http://shop.test", "https://notshop.test", "https://shop.test.evil.test"):
        assert (
            api.post("/api/analytics/track", json=EVENT, headers={"origin": origin}).status_code
            == 403
        ), origin
    # The other site's origin finds the other site on its own, and only there is it allowed.
    assert (
        api.post("/api/analytics/track", json=EVENT, headers={"origin": OTHER}).status_code == 200
    )
    assert (
        api.post(
            "/api/analytics/track?site=default", json=EVENT, headers={"origin": OTHER}
        ).status_code
        == 403
    )
    assert (
        api.post(
            "/api/analytics/track?site=other", json=EVENT, headers={"origin": SHOP}
        ).status_code
        == 403
    )
    unknown = api.post("/api/analytics/track?site=nosuchsite", json=EVENT)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "site"


def test_cors_preflight_for_allowed_origins_only(api: httpx.Client) -> None:
    ask = {
        "origin": SHOP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    for path in ("/api/analytics/track", "/api/events/track", "/api/save", "/api/analytics/batch"):
        answer = api.options(path, headers=ask)
        assert answer.status_code == 204, path
        assert answer.headers["access-control-allow-origin"] == SHOP
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "content-type" in answer.headers["access-control-allow-headers"].lower()
        assert answer.headers["vary"] == "Origin"
    refused = api.options("/api/analytics/track", headers={**ask, "origin": "https://evil.test"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    no_origin = api.options(
        "/api/analytics/track", headers={"access-control-request-method": "POST"}
    )
    assert no_origin.status_code == 403
    bad_method = api.options(
        "/api/analytics/track", headers={**ask, "access-control-request-method": "DELETE"}
    )
    assert bad_method.status_code == 403


def test_errors_for_allowed_origins_carry_cors_headers(api: httpx.Client) -> None:
    """A page must be able to read why its event was refused."""
    answer = api.post(
        "/api/analytics/track",
        json={"event": "nope", "token": "abcdefgh"},
        headers={"origin": SHOP},
    )
    assert answer.status_code == 422
    assert answer.headers["access-control-allow-origin"] == SHOP
