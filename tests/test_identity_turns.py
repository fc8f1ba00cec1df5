"""Identity work in fair turns per tenant: order kept within a tenant, another tenant served
between a busy tenant's turns, and a backlog answered 429 (tenant) or 503 (server); then the
per-request bound and the fairness through a real server with Segment batches."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, config_with
from footfall.errors import ApiError
from footfall.http.identity_turns import TURN_CALLS, IdentityBacklogged, IdentityTurns, IdentityWork


def recorder(log: list[str], tenant: str, n: int, pause: float = 0.0) -> list[IdentityWork]:
    def call(i: int) -> None:
        if pause:
            time.sleep(pause)
        log.append(f"{tenant}{i}")

    return [functools.partial(call, i) for i in range(n)]


def test_a_tenant_keeps_its_order_and_another_goes_between_its_turns() -> None:
    log: list[str] = []
    turns = IdentityTurns(lanes=1, tenant_backlog=1000, total_backlog=5000)

    async def scenario() -> None:
        busy = asyncio.create_task(turns.run("a", recorder(log, "a", 10 * TURN_CALLS, 0.001)))
        await asyncio.sleep(0.005)
        await turns.run("b", recorder(log, "b", 1))
        assert not busy.done()  # b was answered while a still had turns to go
        await busy

    asyncio.run(scenario())
    turns.close()
    a_calls = [entry for entry in log if entry.startswith("a")]
    assert a_calls == [f"a{i}" for i in range(10 * TURN_CALLS)]
    # b waited for at most the turn of a under way and the one after it.
    assert log.index("b0") <= 2 * TURN_CALLS


def test_a_tenants_backlog_is_refused_429_and_the_servers_503() -> None:
    turns = IdentityTurns(lanes=1, tenant_backlog=20, total_backlog=30)
    release = threading.Event()

    def blocked() -> None:
        release.wait(10)

    async def scenario() -> None:
        first = asyncio.create_task(turns.run("a", [blocked] * 15))
        await asyncio.sleep(0.01)
        with pytest.raises(IdentityBacklogged) as refused:
            await turns.run("a", [blocked] * 6)  # 15 + 6 > 20
        assert refused.value.status == 429
        assert refused.value.retry_after >= 1
        other = asyncio.create_task(turns.run("b", [blocked] * 10))  # 25 of 30 queued
        await asyncio.sleep(0.01)
        with pytest.raises(ApiError) as full:
            await turns.run("c", [blocked] * 6)
        assert full.value.status == 503
        release.set()
        await first
        await other
        assert turns.queued == 0
        # A tenant with nothing queued is admitted whatever its size.
        await turns.run("a", [lambda: None] * 50)

    asyncio.run(scenario())
    turns.close()


def test_a_failing_call_reaches_its_request_and_spares_the_others() -> None:
    turns = IdentityTurns(lanes=2, tenant_backlog=100, total_backlog=100)
    log: list[str] = []

    def broken() -> None:
        raise ApiError(422, "VALIDATION_ERROR", "refused")

    async def scenario() -> None:
        with pytest.raises(ApiError, match="refused"):
            await turns.run("a", [broken, *recorder(log, "a", 3)])
        await turns.run("a", recorder(log, "b", 2))
        assert turns.queued == 0

    asyncio.run(scenario())
    turns.close()
    assert log == ["b0", "b1"]


# --------------------------------------------------------------------------- real server

RIVAL = "https://rival.test"
TENANTS = config_with("rate_limit_per_minute = 0") + (
    f'\n[[sites]]\nid = "rival"\nname = "Rival"\nallowed_origins = ["{RIVAL}"]\ntenant = "rival"\n'
)


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    server = Server(tmp_path_factory.mktemp("turns"), TENANTS)
    server.start()
    server.stop()
    key, write_key = server.new_key("default"), server.write_key("default")
    server.start()
    yield server, key, write_key
    server.stop()


def identifies(seed: str, n: int) -> bytes:
    return json.dumps(
        {
            "batch": [
                {
                    "type": "identify",
                    "userId": f"user-{seed}-{i}",
                    "anonymousId": f"anon-{seed}-{i:05d}",
                    "traits": {"email": f"{seed}-{i}@shop.test"},
                }
                for i in range(n)
            ]
        }
    ).encode()


def basic(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"authorization": f"Basic {token}", "content-type": "application/json"}


def test_a_write_key_batch_applies_100_identity_calls_and_refuses_the_rest(
    two_tenants: tuple[Server, str, str], fresh_ip: str
) -> None:
    server, key, write_key = two_tenants
    with server.client(fresh_ip) as api:
        answer = api.post("/v1/batch", headers=basic(write_key), content=identifies("cap", 130))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["accepted"] == 100
        assert [r["index"] for r in body["rejected"]] == list(range(100, 130))
        assert {r["error"]["code"] for r in body["rejected"]} == {"RATE_LIMITED"}
        bearer = {"authorization": f"Bearer {key}"}
        assert api.get("/api/persons/user-cap-99", headers=bearer).status_code == 200
        assert api.get("/api/persons/user-cap-100", headers=bearer).status_code == 404
        # The operator's secret key (footfall import --server) is not held to it.
        keyed = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        answer = api.post("/v1/batch", headers=keyed, content=identifies("op", 130))
        assert answer.status_code == 200, answer.text
        assert "rejected" not in answer.json()
        assert api.get("/api/persons/user-op-129", headers=bearer).status_code == 200


def test_another_tenant_is_answered_while_one_floods_identity_work(
    two_tenants: tuple[Server, str, str],
) -> None:
    """Four batches of 100 identifies from one tenant's public write key (seconds of store
    work); the other tenant's identify is answered before most of them finish."""
    server, _, write_key = two_tenants
    finished: list[float] = []

    def flood(seed: int) -> None:
        with server.client(f"10.200.0.{seed}") as api:
            answer = api.post(
                "/v1/batch", headers=basic(write_key), content=identifies(f"flood{seed}", 100)
            )
            assert answer.status_code == 200
            finished.append(time.monotonic())

    threads = [threading.Thread(target=flood, args=(seed,)) for seed in range(1, 5)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    with server.client("10.200.1.1") as rival:
        answer = rival.post(
            "/api/identify",
            headers={"origin": RIVAL},
            json={"token": "rival-token-0001", "user": {"email": "r@rival.test"}},
        )
        answered = time.monotonic()
    for thread in threads:
        thread.join(120)
    assert answer.status_code == 200
    assert len(finished) == 4
    assert sum(1 for moment in finished if moment > answered) >= 3, (finished, answered)


def test_a_tenants_identity_backlog_is_answered_429_with_retry_after(tmp_path: Path) -> None:
    config = config_with("rate_limit_per_minute = 0", "identity_backlog_per_tenant = 150")
    server = Server(tmp_path / "srv", config)
    server.start()
    server.stop()
    write_key = server.write_key("default")
    server.start()
    statuses: list[httpx.Response] = []
    try:

        def flood(seed: int) -> None:
            with server.client(f"10.201.0.{seed}") as api:
                statuses.append(
                    api.post(
                        "/v1/batch",
                        headers=basic(write_key),
                        content=identifies(f"backlog{seed}", 100),
                    )
                )

        threads = [threading.Thread(target=flood, args=(seed,)) for seed in range(1, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()
    codes = sorted(answer.status_code for answer in statuses)
    assert 200 in codes
    assert 429 in codes, codes
    refused = next(answer for answer in statuses if answer.status_code == 429)
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
