"""Random bodies and parameters against every public and keyed endpoint: never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Server

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        "event",
        "token",
        "data",
        "ab_test",
        "user",
        "a",
        "b",
        "site",
        "ts",
        "url",
        "ephemeral",
        "events",
    ]
)
bodies = st.dictionaries(keys, json_values, max_size=6) | json_values
names = st.text(max_size=300)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert error["code"]
        assert error["message"]


@FUZZ
@given(
    body=bodies,
    path=st.sampled_from(
        ["/api/analytics/track", "/api/analytics/batch", "/api/identify", "/api/save"]
    ),
)
def test_public_posts(server: Server, body: Any, path: str) -> None:
    with server.client("10.99.0.1", headers={"origin": "https://shop.test"}) as api:
        check(api.post(path, json=body))


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["e", "u", "d", "ab_test", "site", "_k", "_p", "_n", "_t", "_d", "x"]),
        names,
        max_size=6,
    ),
    path=st.sampled_from(["/api/analytics/track", "/api/events/track", "/a", "/e", "/s"]),
)
def test_gets(server: Server, params: dict[str, str], path: str) -> None:
    with server.client("10.99.0.2") as api:
        check(api.get(path, params=params))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    srv = Server(tmp_path_factory.mktemp("keyed"))
    key = srv.start_with_key()
    yield srv, key
    srv.stop()


@FUZZ
@given(name=names, body=bodies, kind=st.sampled_from(["", "email:", "token:", "alias:"]))
def test_keyed_endpoints(keyed: tuple[Server, str], name: str, body: Any, kind: str) -> None:
    srv, key = keyed
    with srv.client("10.99.0.3", headers={"authorization": f"Bearer {key}"}) as api:
        check(api.post("/api/alias", json=body))
        check(api.post("/api/alias", json={"a": kind + name, "b": "fuzz-partner"}))
        check(api.post("/api/identity/split", json={"a": kind + name, "b": "fuzz-partner"}))
        check(api.get("/api/identity/explain", params={"a": kind + name, "b": name}))
        for suffix in ("", "/journey", "/export"):
            check(api.get(f"/api/persons/{quote(kind + name, safe='')}{suffix}"))
