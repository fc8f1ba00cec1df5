"""What an outside review sent to break the server, against a real one: gzip bodies of many
members, a person holding one token twice, bytes that are not UTF-8 inside JSON strings."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SHOP, Server, config_with
from footfall.errors import ApiError
from footfall.http.shared import MAX_GZIP_MEMBERS, inflate_gzip

# --------------------------------------------------------------------------- gzip members


def test_inflate_walks_members_and_refuses_too_many() -> None:
    members = [gzip.compress(f"part {n};".encode(), mtime=0) for n in range(MAX_GZIP_MEMBERS)]
    assert inflate_gzip(b"".join(members), 10_000) == b"".join(
        f"part {n};".encode() for n in range(MAX_GZIP_MEMBERS)
    )
    # Zero padding after the last member is allowed, as gzip(1) allows it.
    assert inflate_gzip(members[0] + b"\0" * 100, 100) == b"part 0;"
    with pytest.raises(ApiError, match="more than 64 members"):
        inflate_gzip(b"".join(members) + members[0], 10_000)
    with pytest.raises(ApiError, match="cut short"):
        inflate_gzip(members[0] + members[1][:-3], 10_000)
    with pytest.raises(ApiError, match="not gzip data"):
        inflate_gzip(members[0] + b"garbage", 10_000)
    with pytest.raises(ApiError) as too_big:
        inflate_gzip(gzip.compress(b"x" * 5000), 4999)
    assert too_big.value.code == "ANALYTICS_002"


def test_a_member_larger_than_one_input_step_inflates_whole() -> None:
    body = json.dumps([{"event": "visitor", "token": f"tok-{n:06d}"} for n in range(4000)])
    packed = zlib.compress(body.encode(), 0, wbits=31)  # stored blocks: ~200 KB of input
    assert len(packed) > 100_000
    assert inflate_gzip(packed + packed, 1_000_000) == (body + body).encode()


def test_thousands_of_tiny_gzip_members_are_refused_at_once(api: httpx.Client) -> None:
    """The review's 5 MB body of ~238,000 one-byte members held the event loop 29 s."""
    tiny = gzip.compress(b" ", mtime=0)
    events = gzip.compress(b'[{"event":"visitor","token":"gzip-member-01"}]', mtime=0)
    body = tiny * 200_000 + events
    headers = {"origin": SHOP, "content-encoding": "gzip", "content-type": "application/json"}
    answer = api.post("/api/analytics/batch", headers=headers, content=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ANALYTICS_001"
    assert "members" in answer.json()["error"]["message"]
    # A few members, as some clients concatenate, are one body.
    split = [
        b'[{"event":"visitor",',
        b'"token":"gzip-member-02"},',
        b'{"event":"visitor","token":"gzip-member-03"}]',
    ]
    answer = api.post(
        "/api/analytics/batch",
        headers=headers,
        content=b"".join(gzip.compress(part, mtime=0) for part in split),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2


# ------------------------------------------------------- one token twice in one person


@pytest.fixture(params=["duckdb", "postgresql"])
def keyed_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Server, str, str]]:
    """A server on either store with an API key and the write key of the default site."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    server = Server(tmp_path / "srv", database_url=url).start()
    if url is None:
        server.stop()  # DuckDB: the CLI needs the file to itself
    key = server.new_key("default")
    write_key = server.write_key("default")
    if server.process is None:
        server.start()
    yield server, key, write_key
    if server.process is not None:
        server.stop()


def test_a_person_holding_a_token_twice_answers_on_every_person_route(
    keyed_server: tuple[Server, str, str], fresh_ip: str
) -> None:
    """identify (token + client id), identify (email), an event, a Segment identify of
    another user from the same token (takeover), then an alias naming that token again:
    the person holds two nodes of one token value. Profile, journey, export and erase
    answered 500 (one placeholder per node, one value per distinct token)."""
    server, key, write_key = keyed_server
    basic = {"authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    bearer = {"authorization": f"Bearer {key}"}
    page = {"origin": SHOP}
    with server.client(fresh_ip) as api:
        steps = [
            api.post(
                "/api/identify",
                headers=page,
                json={"token": "shared-token-01", "user": {"uniqueClientId": "cid-owner"}},
            ),
            api.post(
                "/api/identify",
                headers=page,
                json={"token": "shared-token-01", "user": {"email": "owner@shop.test"}},
            ),
            api.post(
                "/api/analytics/track",
                headers=page,
                json={"event": "visitor", "token": "shared-token-01"},
            ),
            api.post(
                "/v1/identify",
                headers=basic,
                json={"anonymousId": "shared-token-01", "userId": "someone-else"},
            ),
            api.post(
                "/v1/alias",
                headers=basic,
                json={"previousId": "shared-token-01", "userId": "cid-owner"},
            ),
        ]
        assert [step.status_code for step in steps] == [200] * 5, [s.text for s in steps]
        profile = api.get("/api/persons/cid-owner", headers=bearer)
        assert profile.status_code == 200, profile.text
        tokens = [i["value"] for i in profile.json()["identifiers"] if i["kind"] == "token"]
        assert tokens.count("shared-token-01") == 2  # the case this test is about
        assert profile.json()["events"] == 1
        journey = api.get("/api/persons/cid-owner/journey", headers=bearer)
        assert journey.status_code == 200, journey.text
        assert [e["event"] for e in journey.json()["events"]] == ["visitor"]
        export = api.get("/api/persons/cid-owner/export", headers=bearer)
        assert export.status_code == 200, export.text
        assert len(export.json()["event_list"]) == 1
        erased = api.delete("/api/persons/cid-owner", headers=bearer)
        assert erased.status_code == 200, erased.text
        assert erased.json()["erased"]["events"] == 1
        assert api.get("/api/persons/cid-owner", headers=bearer).status_code == 404


def test_a_bug_answers_500_in_json_without_re_raising() -> None:
    """Starlette's handler for ``Exception`` answers, then re-raises to uvicorn, which drops
    the keep-alive connection without ``Connection: close``; the next request on it fails.
    The app's own barrier answers and keeps the error inside."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from footfall.http.middleware import UnexpectedErrors, error_handlers

    async def broken(request: object) -> None:
        raise RuntimeError("a bug")

    app = Starlette(routes=[Route("/broken", broken)], exception_handlers=error_handlers())
    app.add_middleware(UnexpectedErrors)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/broken")

    answer = asyncio.run(call())
    assert answer.status_code == 500
    assert answer.json() == {
        "success": False,
        "error": {"code": "INTERNAL", "message": "internal error"},
    }


# ------------------------------------------------------------------ invalid UTF-8

NOT_UTF8 = b"caf\xe9 \xff\xfe"


def test_invalid_utf8_in_a_string_is_refused_alone_on_batch_routes(
    keyed_server: tuple[Server, str, str], fresh_ip: str
) -> None:
    server, _, write_key = keyed_server
    basic = {"authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    json_type = {"content-type": "application/json"}
    good = b'{"event":"visitor","token":"utf8-good-0001"}'
    bad = b'{"event":"visitor","token":"utf8-bad-00001","data":{"note":"' + NOT_UTF8 + b'"}}'
    with server.client(fresh_ip) as api:
        batch = api.post(
            "/api/analytics/batch",
            headers={"origin": SHOP, **json_type},
            content=b"[" + good + b"," + bad + b"]",
        )
        assert batch.status_code == 200, batch.text
        assert batch.json()["accepted"] == 1
        refused = batch.json()["results"][1]
        assert refused["error"]["code"] == "ANALYTICS_001"
        assert "UTF-8" in refused["error"]["message"]
        segment = (
            b'{"batch":[{"type":"track","event":"Bought","anonymousId":"anon-utf8",'
            b'"properties":{"note":"' + NOT_UTF8 + b'"}},'
            b'{"type":"track","event":"Viewed","anonymousId":"anon-utf8"}]}'
        )
        answer = api.post("/v1/batch", headers={**basic, **json_type}, content=segment)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
        assert [r["index"] for r in answer.json()["rejected"]] == [0]
        assert "UTF-8" in answer.json()["rejected"][0]["error"]["message"]
        # A whole body that is not UTF-8 on a single-message route: 400, as before.
        single = api.post("/v1/track", headers={**basic, **json_type}, content=segment[10:-1])
        assert single.status_code == 400


def test_import_skips_a_line_that_is_not_utf8_and_stores_the_rest(tmp_path: Path) -> None:
    lines = [
        b'{"type":"track","event":"First","anonymousId":"imp-anon-1","messageId":"m-1"}',
        b'{"type":"track","event":"Bad","anonymousId":"imp-anon-1","properties":{"n":"'
        + NOT_UTF8
        + b'"}}',
        b'{"event":"visitor","token":"import-token-01","data":{"n":"' + NOT_UTF8 + b'"}}',
        b'{"type":"identify","userId":"imp-user","anonymousId":"imp-anon-1"}',
        b'{"type":"track","event":"Last","anonymousId":"imp-anon-1","messageId":"m-4"}',
    ]
    source = tmp_path / "archive.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    database = tmp_path / "footfall.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "footfall", "import", str(source), "--database", str(database)],
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")},
            "COLUMNS": "200",
        },
        timeout=120,
    )
    assert done.returncode == 1, done.stderr + done.stdout  # 1: lines were skipped
    assert "Traceback" not in done.stderr + done.stdout
    said = done.stdout + done.stderr
    assert "line 2: " in said
    assert "line 3: " in said
    assert "UTF-8" in said
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        stored = sorted(r[0] for r in con.execute("SELECT custom_event FROM events").fetchall())
    finally:
        con.close()
    assert stored == ["First", "Last"]


# ------------------------------------------------- import --server with a key's authority

TENANT_SITES = config_with("rate_limit_per_minute = 0") + (
    '\n[[sites]]\nid = "blog"\nname = "Blog, same tenant"\nallowed_origins = ["https://blog.test"]\n'
    'tenant = "default"\n'
    '\n[[sites]]\nid = "rival"\nname = "Rival tenant"\nallowed_origins = ["https://rival.test"]\n'
    'tenant = "rival"\n'
)


def test_import_to_a_server_goes_with_the_keys_authority(tmp_path: Path) -> None:
    """A key of site A with ``--site B``: Segment lines went to A (``--site`` ignored) and
    tracking lines to B through the public route, even for B of another tenant."""
    server = Server(tmp_path / "srv", TENANT_SITES)
    server.start()
    server.stop()
    key = server.new_key("default")
    server.start()
    archive = tmp_path / "mixed.ndjson"
    archive.write_text(
        '{"type":"track","event":"Signed Up","anonymousId":"anon-import-1","messageId":"s-1"}\n'
        '{"event":"visitor","token":"import-token-01","messageId":"t-1"}\n'
    )

    def run(site: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "footfall", "import", str(archive)]
        command += ["--server", server.url, "--key", key, "--site", site]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**server.env, "COLUMNS": "200"},
            timeout=120,
        )

    try:
        refused = run("rival")
        same_tenant = run("blog")
    finally:
        server.stop()
    assert refused.returncode != 0
    assert "cannot write to site 'rival'" in refused.stdout + refused.stderr
    assert same_tenant.returncode == 0, same_tenant.stdout + same_tenant.stderr
    stored = server.rows("SELECT site_id, event FROM events ORDER BY event")
    assert [site for site, _ in stored] == ["blog", "blog"]  # none in rival, none in default
    assert "visitor" in [event for _, event in stored]


def test_a_public_tracking_call_cannot_claim_a_segment_senders_message_id(
    keyed_server: tuple[Server, str, str], fresh_ip: str
) -> None:
    """Message ids of the public tracking routes (no key) are scoped apart: a page cannot
    suppress the site's own Segment message by sending its id first; repeats of either
    are still stored once."""
    server, _, write_key = keyed_server
    basic = {"authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    public = {"event": "visitor", "token": "claims-token-01", "messageId": "order-77"}
    with server.client(fresh_ip) as api:
        first = api.post("/api/analytics/track", headers={"origin": SHOP}, json=public)
        again = api.post("/api/analytics/track", headers={"origin": SHOP}, json=public)
        assert first.status_code == again.status_code == 200
        assert first.json().get("duplicate") is not True
        assert again.json().get("duplicate") is True, again.text
        message = {"event": "Order Completed", "anonymousId": "anon-77", "messageId": "order-77"}
        segment = api.post("/v1/track", headers=basic, json=message)
        assert segment.json() == {"success": True, "stored": 1}, segment.text
        resent = api.post("/v1/track", headers=basic, json=message)
        assert resent.json() == {"success": True, "stored": 0}
