"""Security against real servers: origins and CORS, API keys (hashed, compared in constant
time, refused when missing, wrong or revoked), tenant isolation, SQL built only with
parameters (checked in PostgreSQL's own statement log), and no raw email, key or client IP
in logs, the DuckDB file or the ingest journal."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from conftest import CLEAN_EXIT, OTHER, SHOP, Server, config_with, setup_links
from footfall import sites
from pgserver import PostgresServer

EVIL = "https://evil.test"
TRACK = "/api/analytics/track"
PUBLIC_POSTS = ("/api/analytics/track", "/api/events/track", "/api/save")
EVENT = {"event": "visitor", "token": "security-token-1"}


class Tenants:
    """A server with two sites in two tenants, a key for each and a revoked key."""

    def __init__(self, server: Server, key_a: str, key_b: str, revoked: str) -> None:
        self.server, self.key_a, self.key_b, self.revoked = server, key_a, key_b, revoked

    def client(self, ip: str, key: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return self.server.client(ip, headers=headers)


def revoke(server: Server, key: str) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "footfall", "sites", "revoke-key", key.split("_")[1]),
            *("--database", server.target),
        ],
        env=server.env,
        capture_output=True,
        check=True,
    )


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    server = Server(tmp_path_factory.mktemp("tenants")).start()
    server.stop()
    key_a, key_b, revoked = (server.new_key(s) for s in ("default", "other", "default"))
    revoke(server, revoked)
    yield Tenants(server.start(), key_a, key_b, revoked)
    assert server.stop() in CLEAN_EXIT


# --------------------------------------------------------------------------- origins and CORS


def no_cors(answer: httpx.Response) -> bool:
    return not any(name.startswith("access-control-") for name in answer.headers)


def test_preflight_answers_allowed_origins_only(tenants: Tenants, fresh_ip: str) -> None:
    ask = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    with tenants.client(fresh_ip) as api:
        for path in (*PUBLIC_POSTS, "/api/analytics/batch", "/api/identify"):
            for origin in (SHOP, OTHER, "https://www.shop.test"):
                allowed = api.options(path, headers={**ask, "origin": origin})
                assert allowed.status_code == 204, (path, origin)
                assert allowed.headers["access-control-allow-origin"] == origin
                assert allowed.headers["vary"] == "Origin"
            for origin in (EVIL, "http://shop.test", "null"):
                refused = api.options(path, headers={**ask, "origin": origin})
                assert refused.status_code == 403, (path, origin)
                assert refused.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
                assert no_cors(refused), refused.headers


def test_a_disallowed_origin_gets_403_and_no_cors_headers_everywhere(
    tenants: Tenants, fresh_ip: str
) -> None:
    with tenants.client(fresh_ip) as api:
        calls = [
            *(api.post(p, json=EVENT, headers={"origin": EVIL}) for p in PUBLIC_POSTS),
            api.post("/api/analytics/batch", json=[EVENT], headers={"origin": EVIL}),
            api.post("/api/identify", json={"token": "security-token-1"}, headers={"origin": EVIL}),
            api.get(TRACK, params={"e": "visitor", "u": "abcdefgh"}, headers={"origin": EVIL}),
            api.post(TRACK, json=EVENT, headers={"referer": f"{EVIL}/page"}),
            # A site named explicitly still checks the origin against that site.
            api.post(f"{TRACK}?site=default", json=EVENT, headers={"origin": OTHER}),
            api.post(
                "/api/analytics/batch",
                json={"events": [EVENT], "site": "other"},
                headers={"origin": SHOP},
            ),
        ]
    for answer in calls:
        assert answer.status_code == 403, (answer.request.url, answer.text)
        assert answer.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
        assert no_cors(answer), answer.headers


def test_a_site_named_in_the_body_is_checked_like_one_in_the_query(
    tenants: Tenants, fresh_ip: str
) -> None:
    """The README lets a call name its site in the body; that site's origins decide (the
    body's site was once ignored, so an event went to the Origin's site instead)."""
    with tenants.client(fresh_ip) as api:
        for path in PUBLIC_POSTS:
            wrong = api.post(path, json={**EVENT, "site": "other"}, headers={"origin": SHOP})
            assert wrong.status_code == 403, wrong.text
            assert no_cors(wrong)
            right = api.post(path, json={**EVENT, "site": "other"}, headers={"origin": OTHER})
            assert right.status_code == 200, right.text
            assert right.headers["access-control-allow-origin"] == OTHER


def test_errors_before_the_site_check_carry_cors_only_for_allowed_origins(
    tenants: Tenants, fresh_ip: str
) -> None:
    """405, a batch that is not JSON and 429 are decided before the site is known; an
    allowed page may read them, another page may not (it once got its origin echoed)."""
    with tenants.client(fresh_ip) as api:
        for origin, readable in ((EVIL, False), (SHOP, True), (OTHER, True)):
            for answer in (
                api.put(TRACK, json=EVENT, headers={"origin": origin}),
                api.post("/api/analytics/batch", content=b"{", headers={"origin": origin}),
            ):
                assert answer.status_code in (400, 405), answer.text
                assert (answer.headers.get("access-control-allow-origin") == origin) is readable
                assert no_cors(answer) is not readable
    with tenants.client("10.61.0.9") as api:  # an IP of its own for the rate limit
        spent = [api.post(TRACK, json=EVENT, headers={"origin": SHOP}) for _ in range(120)]
        assert {answer.status_code for answer in spent} == {200}  # this IP's minute is spent
        for origin, readable in ((EVIL, False), (SHOP, True)):
            limited = api.post(TRACK, json=EVENT, headers={"origin": origin})
            assert limited.status_code == 429
            assert (limited.headers.get("access-control-allow-origin") == origin) is readable


def test_calls_without_origin_are_refused_when_configured(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with("allow_missing_origin = false")).start()
    try:
        with server.client("10.60.0.1") as api:
            bare = api.post(TRACK, json=EVENT)
            assert bare.status_code == 403
            assert bare.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
            assert api.post(TRACK, json=EVENT, headers={"origin": SHOP}).status_code == 200
    finally:
        server.stop()


NULL_ORIGIN_CONFIG = f"""
default_site = "default"
allowed_origins = ["{SHOP}"]
trusted_proxies = ["127.0.0.1"]

[[sites]]
id = "anyone"
allowed_origins = ["*"]

[[sites]]
id = "sandboxed"
allowed_origins = ["https://app.test", "null"]
"""


def test_origin_null_is_a_foreign_origin_unless_listed(tmp_path: Path) -> None:
    """Sandboxed iframes, file: pages and some redirects send ``Origin: null``: it once passed
    as "no origin" (or fell back to the Referer), so any page could identify people."""
    server = Server(tmp_path / "srv", NULL_ORIGIN_CONFIG)
    key = server.start_with_key("default")
    null = {"origin": "null"}
    identify = {"token": "null-origin-token", "user": {"email": "sandboxed@example.com"}}

    def calls(api: httpx.Client, site: str, headers: dict[str, str]) -> list[httpx.Response]:
        return [
            *(api.post(f"{p}?site={site}", json=EVENT, headers=headers) for p in PUBLIC_POSTS),
            api.get(TRACK, params={"e": "visitor", "u": "abcdefgh", "site": site}, headers=headers),
            api.post(f"/api/analytics/batch?site={site}", json=[EVENT], headers=headers),
            api.post(f"/api/identify?site={site}", json=identify, headers=headers),
        ]

    ask = {"access-control-request-method": "POST", **null}
    try:
        with server.client("10.62.0.1") as api:
            # "*" means any web origin, not the opaque one; the Referer does not stand in.
            for site, headers in (
                ("default", null),
                ("anyone", null),
                ("default", {**null, "referer": f"{SHOP}/page"}),
            ):
                for answer in calls(api, site, headers):
                    assert answer.status_code == 403, (site, answer.request.url, answer.text)
                    error = answer.json()["error"]
                    assert error["code"] == "ORIGIN_NOT_ALLOWED"
                    assert "null" in error["message"]
                    assert no_cors(answer), answer.headers
                for path in (*PUBLIC_POSTS, "/api/analytics/batch", "/api/identify"):
                    refused = api.options(f"{path}?site={site}", headers=ask)
                    assert refused.status_code == 403, (path, site)
                    assert no_cors(refused)
            # Nothing was linked by the refused identify calls.
            person = api.get("/api/persons/sandboxed@example.com", headers={"x-api-key": key})
            assert person.status_code == 404, person.text
            # Listed explicitly, it is allowed, and the page may read the answer.
            for answer in calls(api, "sandboxed", null):
                assert answer.status_code == 200, (answer.request.url, answer.text)
                assert answer.headers["access-control-allow-origin"] == "null"
            preflight = api.options("/api/identify?site=sandboxed", headers=ask)
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "null"
            # Without a site named, the site that lists null is the null origin's site.
            owned = api.post(TRACK, json=EVENT, headers=null)
            assert owned.status_code == 200, owned.text
    finally:
        server.stop()
    added = subprocess.run(
        [
            *(sys.executable, "-m", "footfall", "sites", "set-origins", "anyone"),
            *("https://shop.test", "NULL", "--database", server.target),
        ],
        env=server.env,
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    listed = server.rows("SELECT allowed_origins FROM sites WHERE site_id = 'anyone'")
    assert "null" in str(listed[0][0]), listed


# --------------------------------------------------------------------------- keys


def keyed_operations(api: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request arguments) of every operation the document says needs a key."""
    document = api.get("/openapi.json").json()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or not operation.get("security"):
                continue
            params = {
                p["name"]: "security-name-1"
                for p in [*item.get("parameters", []), *operation.get("parameters", [])]
                if p["in"] == "query" and p.get("required")
            }
            url = path.replace("{name}", "overview" if "reports" in path else "someone")
            body = {"json": {"a": "x1", "b": "x2"}} if "requestBody" in operation else {}
            found.append((method.upper(), url, {"params": params, **body}))
    return found


def test_every_keyed_operation_refuses_missing_wrong_and_revoked_keys(
    tenants: Tenants, fresh_ip: str
) -> None:
    key_id = tenants.key_a.split("_")[1]
    secret = tenants.key_a.split("_", 2)[2]
    wrong_secret = f"ff_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    presented: list[dict[str, str] | None] = [
        None,
        {"authorization": ""},
        {"authorization": "Bearer"},
        {"authorization": "Bearer nonsense"},
        {"authorization": f"Bearer {wrong_secret}"},
        {"authorization": f"Bearer {tenants.key_a[:-4]}"},
        {"authorization": f"Bearer {tenants.key_a}x"},
        {"authorization": f"Bearer ff_000000000000_{secret}"},
        {"authorization": f"Bearer {tenants.revoked}"},
        {"x-api-key": wrong_secret},
        {"x-api-key": tenants.revoked},
        {"authorization": f"Basic {tenants.key_a}"},
    ]
    with tenants.client(fresh_ip) as api:
        operations = keyed_operations(api)
        assert len(operations) >= 10, operations
        for method, url, args in operations:
            for headers in presented:
                call = dict(args)
                if url in ("/a", "/e", "/s"):
                    value = (headers or {}).get("authorization", "")[7:] or None
                    call["params"] = {**args["params"], **({"_k": value} if value else {})}
                answer = api.request(method, url, headers=headers or {}, **call)
                assert answer.status_code == 401, (method, url, headers, answer.text)
                assert answer.json()["error"]["code"] == "UNAUTHORIZED"
        # The same calls with the right key get past the key check.
        for method, url, args in operations:
            call = dict(args)
            if url in ("/a", "/e", "/s"):
                call["params"] = {**args["params"], "_k": tenants.key_a}
            answer = api.request(method, url, headers={"x-api-key": tenants.key_a}, **call)
            assert answer.status_code != 401, (method, url, answer.text)


def test_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with('metrics_token = "m3tr1cs-t0ken"')).start()
    try:
        with server.client("10.60.0.2") as api:
            for headers in (
                {},
                {"authorization": "Bearer wrong"},
                {"authorization": "m3tr1cs-t0ken"},
            ):
                refused = api.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "UNAUTHORIZED"
            ok = api.get("/metrics", headers={"authorization": "Bearer m3tr1cs-t0ken"})
            assert ok.status_code == 200
    finally:
        server.stop()


def test_key_comparison_is_constant_time_by_construction() -> None:
    """A key is found by its public id, then the SHA-256 of the whole presented key is
    compared with the stored hash by hmac.compare_digest: two equal-length hex strings, so
    the time does not depend on how much of the secret was right. (A timing measurement
    would be a flaky test; this pins the construction down instead.)"""
    source = inspect.getsource(sites.verify_api_key)
    assert "hmac.compare_digest(record.key_hash, hash_key(presented))" in source
    assert "==" not in source.replace("len(parts) != 3", "")
    assert len(sites.hash_key("ff_x_short")) == len(sites.hash_key("ff_x_" + "y" * 500)) == 64
    assert sites.hash_key("k") == hashlib.sha256(b"k").hexdigest()


def files_under(directory: Path) -> Iterator[Path]:
    yield from (p for p in directory.rglob("*") if p.is_file())


def test_keys_are_stored_hashed_and_never_written_raw(tmp_path: Path) -> None:
    """The raw key appears in no file the server writes: DuckDB file, WAL, journal, log."""
    config = config_with("journal_load_interval_ms = 10000")
    server = Server(tmp_path / "srv", config)
    key = server.start_with_key()
    secret = key.split("_", 2)[2]

    def use_key() -> None:
        with server.client("10.60.0.3", headers={"authorization": f"Bearer {key}"}) as api:
            api.post(TRACK, json={"event": "visitor", "token": "key-user-0001"})
            assert api.post("/api/alias", json={"a": "key-user-0001", "b": "k@x.test"}).is_success
            assert api.get("/e", params={"_k": key, "_p": "k@x.test", "_n": "seen"}).is_success
            assert api.get("/api/persons/k@x.test", headers={"x-api-key": key}).is_success
            api.get("/api/persons/k@x.test", headers={"authorization": f"Bearer {key}x"})

    use_key()
    assert server.stop() in CLEAN_EXIT
    [(stored_hash,)] = server.rows("SELECT key_hash FROM api_keys")
    assert stored_hash == hashlib.sha256(key.encode()).hexdigest()
    server.start()
    use_key()  # these events stay in the journal (the loader waits 10 s) ...
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # ... and the WAL is not folded
    journal = list(Path(f"{server.database}.journal").glob("*.journal"))
    assert journal, "the journal should hold the last events"
    for path in files_under(server.workdir):
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert key.encode() not in data, path


# --------------------------------------------------------------------------- tenants


def test_one_sites_key_cannot_read_or_change_another_tenants_data(
    tenants: Tenants, fresh_ip: str
) -> None:
    a, b = tenants.key_a, tenants.key_b
    with tenants.client(fresh_ip, a) as api_a, tenants.client(fresh_ip, b) as api_b:
        # Tenant A: a person with an email, a token and events.
        assert api_a.post(
            "/api/alias", json={"a": "iso-token-aaaa", "b": "jane@iso.test"}
        ).is_success
        assert api_a.get("/e", params={"_k": a, "_p": "jane@iso.test", "_n": "a-event"}).is_success
        assert api_a.get("/e", params={"_k": a, "_p": "iso-only-in-a", "_n": "a-event"}).is_success
        assert api_a.post("/api/alias", json={"a": "iso-only-in-a", "b": "iso-a-2"}).is_success
        before = api_a.get("/api/persons/jane@iso.test/export").json()
        # Tenant B knows the same email as its own, separate person.
        assert api_b.get("/e", params={"_k": b, "_p": "jane@iso.test", "_n": "b-event"}).is_success

        # Reading A's data with B's key.
        assert api_b.get("/api/reports/overview", params={"site": "default"}).status_code == 403
        assert (
            api_b.get("/api/reports/overview", params={"site": "other,default"}).status_code == 403
        )
        for suffix in ("", "/journey", "/export"):
            assert api_b.get(f"/api/persons/iso-only-in-a{suffix}").status_code == 404
            assert api_b.get(f"/api/persons/iso-token-aaaa{suffix}").status_code == 404
        b_jane = api_b.get("/api/persons/jane@iso.test/journey").json()
        assert [e["custom_event"] for e in b_jane["events"]] == ["b-event"]
        explained = api_b.get(
            "/api/identity/explain", params={"a": "iso-only-in-a", "b": "iso-a-2"}
        )
        assert explained.json()["same_person"] is False

        # Changing A's data with B's key.
        assert (
            api_b.post(
                "/api/identity/split", json={"a": "iso-only-in-a", "b": "iso-a-2"}
            ).status_code
            == 404
        )
        assert api_b.delete("/api/persons/iso-only-in-a").status_code == 404
        assert api_b.post(
            "/api/alias", json={"a": "iso-token-aaaa", "b": "mallory@b.test"}
        ).is_success
        assert api_b.get("/s", params={"_k": b, "_p": "jane@iso.test", "plan": "evil"}).is_success
        erased = api_b.delete("/api/persons/jane@iso.test")  # B's own jane, not A's
        assert erased.status_code == 200
        assert erased.json()["erased"]["events"] == 1

        # Tenant A sees nothing of it.
        after = api_a.get("/api/persons/jane@iso.test/export").json()
        for field in ("identifiers", "metadata", "event_list", "links", "customer_ids"):
            assert after[field] == before[field], field
        assert api_a.get(
            "/api/identity/explain", params={"a": "iso-only-in-a", "b": "iso-a-2"}
        ).json()["same_person"]
        a_report = api_a.get("/api/reports/overview", params={"days": 2}).json()
        b_report = api_b.get("/api/reports/overview", params={"days": 2}).json()
        assert a_report["filters"]["sites"] == ["default"]
        assert b_report["filters"]["sites"] == ["other"]


# --------------------------------------------------------------------------- SQL injection

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE events; --",
    '"); DELETE FROM events; --',
    "x' UNION SELECT key_hash FROM api_keys --",
    "' || (SELECT string_agg(key_hash, ',') FROM api_keys) || '",
    "$$; DROP TABLE events; $$",
    "?",
    "%s %% %(x)s",
    "\\'; SELECT 1; --",
    "Robert'); DROP TABLE identity_nodes;--",
]


def canary(n: int, payload: str) -> str:
    """A findable marker (in logs and answers) followed by an injection attempt."""
    return f"zq{n:03d}qz{payload}"


@pytest.fixture(params=["duckdb", "postgresql"])
def sql_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Server, str, PostgresServer | None]]:
    """A keyed server on either store; on PostgreSQL its database logs every statement."""
    postgres: PostgresServer | None = None
    url = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        url = request.getfixturevalue("postgres_url")
        postgres.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET log_statement = 'all'")
    server = Server(tmp_path / "srv", database_url=url).start()
    if url is None:
        server.stop()  # DuckDB: the CLI needs the file to itself
    key = server.new_key("default")
    if server.process is None:
        server.start()
    yield server, key, postgres
    if server.process is not None:
        server.stop()


def send_everywhere(api: httpx.Client, key: str) -> list[str]:
    """Every string input of the API gets injection attempts; returns the values sent."""
    sent: list[str] = []

    def mark(payload: str, limit: int = 255) -> str:
        sent.append(canary(len(sent), payload)[:limit])
        return sent[-1]

    answers = []
    for i, payload in enumerate(INJECTIONS):
        token = f"inject-token-{i:03d}"
        data = {
            "chatbot_id": mark(payload),
            "popup_version": mark(payload),
            "orderNum": mark(payload),
            "text": mark(payload),
            mark(payload, 60): mark(payload),
            "items": [{"item_id": mark(payload, 128), "value": 1, "currency": "'--"}],
        }
        event = {"event": "purchase", "token": token, "url": mark(payload), "data": data}
        headers = {"user-agent": mark(payload)}
        answers += [
            api.post(TRACK, json=event, headers=headers),
            api.post("/api/analytics/batch", json=[{**event, "token": token + "b"}]),
            api.get(
                TRACK, params={"e": "visitor", "u": token, "d": json.dumps({"x": mark(payload)})}
            ),
        ]
        user = {
            "uniqueClientId": mark(payload),
            "email": mark(payload, 40).replace(" ", "") + "@inject.test",
            "metadata": {mark(payload, 60): mark(payload)},
        }
        alias_a, alias_b = mark(payload), mark(payload)
        answers += [
            api.post("/api/identify", json={"token": token, "user": user}),
            api.post("/api/alias", json={"a": alias_a, "b": alias_b}),
            api.get("/a", params={"_k": key, "_p": alias_a, "_n": token}),
            api.get(
                "/e",
                params={
                    "_k": key,
                    "_p": alias_a,
                    "_n": mark(payload),
                    mark(payload, 60): mark(payload),
                },
            ),
            api.get("/s", params={"_k": key, "_p": alias_b, mark(payload, 60): mark(payload)}),
            *(
                api.get(f"/api/persons/{quote(alias_a, safe='')}{s}")
                for s in ("", "/journey", "/export")
            ),
            api.get("/api/identity/explain", params={"a": alias_a, "b": alias_b}),
            api.get(
                "/api/reports/funnel",
                params={"steps": "visitor,purchase", "breakdown": "chatbot_id"},
            ),
        ]
    failed = [(a.request.url, a.status_code, a.text[:200]) for a in answers if a.status_code != 200]
    assert failed == []
    return sent


CANARY = re.compile(r"zq\d{3}qz")
_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.M)


def statement_log(text: str) -> tuple[list[str], list[str]]:
    """(SQL texts, bound parameter lists) in a PostgreSQL log with log_statement = all."""
    starts = [m.start() for m in _ENTRY.finditer(text)] + [len(text)]
    entries = [text[a:b] for a, b in itertools.pairwise(starts)]
    statements = [e for e in entries if " LOG:  statement: " in e or " LOG:  execute " in e]
    parameters = [e for e in entries if " DETAIL:  parameters: " in e]
    return statements, parameters


def test_injection_looking_values_are_stored_as_plain_data(
    sql_server: tuple[Server, str, PostgresServer | None], fresh_ip: str
) -> None:
    """Quotes, comments, UNIONs, dollar quotes and placeholders through every string input
    come back verbatim, every table stays, and on PostgreSQL no SQL text the server sent
    contains any of them: they only ever travel as bound parameters."""
    server, key, postgres = sql_server
    log_start = len(postgres.log_text()) if postgres else 0
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    with server.client(fresh_ip, headers={"authorization": f"Bearer {key}"}) as api:
        sent = send_everywhere(api, key)
        exports = [
            api.get(f"/api/persons/inject-token-{i:03d}/export").json()
            for i in range(len(INJECTIONS))
        ]
        overview = api.get("/api/reports/overview", params={"days": 2}).json()
        revenue = api.get("/api/reports/revenue", params={"days": 2})
    text = json.dumps(exports, ensure_ascii=False)
    assert key_hash not in text
    assert revenue.status_code == 200
    for i, export in enumerate(exports):  # each person's own values, byte for byte
        assert {"kind": "client_id", "value": sent_of(sent, i, "uniqueClientId")} in [
            {"kind": n["kind"], "value": n["value"]} for n in export["identifiers"]
        ]
        chatbots = {e["chatbot_id"] for e in export["event_list"] if e["chatbot_id"]}
        assert chatbots == {sent_of(sent, i, "chatbot_id")}
    assert overview["events"] == 4 * len(INJECTIONS), overview
    if postgres is not None:
        statements, parameters = statement_log(postgres.log_text()[log_start:])
        assert any(CANARY.search(p) for p in parameters), "no bound parameters were logged"
        leaked = [s for s in statements if CANARY.search(s)]
        assert leaked == [], leaked[:3]
    assert server.stop() in CLEAN_EXIT
    if postgres is None:
        tables = {t for (t,) in server.rows("SELECT table_name FROM information_schema.tables")}
        assert {"events", "identity_nodes", "api_keys", "links", "orders", "sites"} <= tables
        chatbot_ids = {
            r[0] for r in server.rows("SELECT chatbot_id FROM events WHERE chatbot_id IS NOT NULL")
        }
        assert chatbot_ids == {sent_of(sent, i, "chatbot_id") for i in range(len(INJECTIONS))}
        assert server.rows("SELECT count(*) FROM api_keys") == [(1,)]


FIELDS_PER_PAYLOAD = (
    *("chatbot_id", "popup_version", "orderNum", "text", "prop_key", "prop_value", "item_id"),
    *("url", "user_agent", "d", "uniqueClientId", "email", "meta_key", "meta_value"),
    *("alias_a", "alias_b", "e_name", "e_key", "e_value", "s_key", "s_value"),
)


def sent_of(sent: list[str], payload: int, field: str) -> str:
    """The value ``send_everywhere`` sent for ``field`` with the ``payload``-th injection."""
    return sent[payload * len(FIELDS_PER_PAYLOAD) + FIELDS_PER_PAYLOAD.index(field)]


# --------------------------------------------------------------------------- logs and files


def test_logs_hold_no_raw_email_key_or_client_ip(tmp_path: Path) -> None:
    config = config_with("identity_max_per_kind = 1", "journal_load_interval_ms = 10000")
    server = Server(tmp_path / "srv", config)
    key = server.start_with_key()
    emails = ["jane.doe@example.com", "Bob.Smith+tag@Example.org", "o'reilly@corp.test"]
    wrong_keys = [f"ff_{'ab' * 6}_{'x' * 43}", key[:-3] + "zzz"]
    ips = ["203.0.113.77", "198.51.100.23"]
    with server.client(ips[0], headers={"authorization": f"Bearer {key}"}) as api:
        for n, email in enumerate(emails):
            token = f"log-token-{n:04d}"
            api.post("/api/identify", json={"token": token, "user": {"email": email}})
            api.post(
                TRACK,
                json={
                    "event": "purchase",
                    "token": token,
                    "data": {
                        "email": email,
                        "key": key,
                        "currency": "XYZ",
                        "value": 1,
                        "items": [{"item_id": email, "value": 1, "currency": "QQQ"}],
                    },
                },
                headers={"user-agent": f"agent {email} {key}", "referer": f"{SHOP}/?e={email}"},
            )
            api.post("/api/alias", json={"a": email, "b": f"alias-{n}"})
            api.post("/api/alias", json={"a": email, "b": emails[(n + 1) % len(emails)]})  # cap
            api.get(f"/api/persons/{email}/journey")
            api.get("/e", params={"_k": key, "_p": email, "_n": "x", "mail": email})
            for wrong in wrong_keys:
                api.get(f"/api/persons/{email}", headers={"authorization": f"Bearer {wrong}"})
                api.get("/e", params={"_k": wrong, "_p": email, "_n": "x"})
            api.post(TRACK, content=f'{{"token": "{email}", "key": "{key}"'.encode())
        api.delete(f"/api/persons/{emails[0]}")
    with server.client(ips[1]) as api:
        for _ in range(125):  # into the rate limit, which logs nothing about the IP either
            api.post(TRACK, json={"event": "visitor", "token": "log-token-ip"})
    # Setup links (no admin password yet: one per start) opened, mistyped, and used.
    printed = setup_links(server.log.read_text())
    assert len(printed) == 2
    with server.client(ips[0], follow_redirects=False) as page:
        for _, token in printed:
            for attempt in (token, token[:-2], token + "x"):
                page.get("/dashboard/setup", params={"token": attempt})
        form = page.get("/dashboard/setup", params={"token": printed[-1][1]})
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        done = page.post(
            "/dashboard/setup",
            data={
                "csrf": csrf.group(1),
                "token": printed[-1][1],
                "password": "log test password",
                "repeat": "log test password",
            },
        )
        assert done.status_code == 303
    server.stop(signal.SIGKILL)
    server.start()  # a replay writes its own log lines
    assert server.stop() in CLEAN_EXIT
    text = server.log.read_text()
    for _, token in printed:  # the line `footfall serve` printed, and nowhere else
        assert text.count(token) == 1, token
        assert text.count(token[8:30]) == 1, token
    assert "log test password" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any("unknown currency" in r["message"] for r in records)
    assert any("journal replayed" in r["message"] for r in records)
    lowered = text.lower()
    for email in emails:
        assert email.lower() not in lowered, email
    for secret in [key, key.split("_", 2)[2], *wrong_keys]:
        assert secret not in text, secret
    for ip in ips:
        assert ip not in text, ip


def test_client_ips_are_never_stored(tmp_path: Path) -> None:
    """Rate limiting is the only use of the client IP: not in the DuckDB file, its WAL, the
    ingest journal or the log, whichever way the IP arrived."""
    ips = ["203.0.113.201", "198.51.100.202", "2001:db8::beef:1"]
    server = Server(tmp_path / "srv", config_with("journal_load_interval_ms = 10000")).start()

    def traffic(n: int) -> None:
        for ip in ips:
            with server.client(ip, headers={"origin": SHOP}) as api:
                token = f"ip-token-{n}-{ips.index(ip)}"
                assert api.post(TRACK, json={"event": "visitor", "token": token}).is_success
                assert api.post(
                    "/api/analytics/batch", json=[{"event": "visitor", "token": token}]
                ).is_success
                assert api.post(
                    "/api/identify", json={"token": token, "user": {"uniqueClientId": f"u{n}"}}
                ).is_success
                assert api.get(TRACK, params={"e": "visitor", "u": token}).is_success
        # Through two proxies: the client's own IP is the left-most hop.
        with server.client(f"{ips[0]}, 127.0.0.1") as api:
            assert api.post(TRACK, json={"event": "visitor", "token": f"ip-hops-{n}"}).is_success

    traffic(1)
    assert server.stop() in CLEAN_EXIT  # everything loaded into the DuckDB file
    server.start()
    traffic(2)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # the journal and WAL stay
    assert list(Path(f"{server.database}.journal").glob("*.journal"))
    checked = 0
    for path in files_under(server.workdir):
        data = path.read_bytes()
        for ip in ips:
            assert ip.encode() not in data, (ip, path)
        checked += 1
    assert checked >= 4  # database, journal segment, config, log (and the WAL)


def test_dashboard_pages_need_a_signed_in_session(tenants: Tenants, fresh_ip: str) -> None:
    from footfall.web.pages import COOKIE

    pages = [
        "/",
        "/people",
        "/retention",
        "/funnel",
        "/ab",
        "/revenue",
        "/widget",
        "/questions",
        "/errors",
        "/persons",
        "/person?name=jane@iso.test",
        "/person/export?name=jane@iso.test",
        "/person/erase?name=jane@iso.test",
        "/sites",
        "/sites/new",
        "/site/default",
        "/password",
    ]
    forged = {"cookie": f"{COOKIE}=forged.value.here"}
    with tenants.client(fresh_ip) as api:
        for path in pages:
            for headers in ({}, forged):
                answer = api.get(f"/dashboard{path}", headers=headers)
                assert answer.status_code == 303, (path, answer.status_code)
                assert answer.headers["location"].startswith("/dashboard/login")
        for path in (
            "/person/erase",
            "/person/split",
            "/sites/new",
            "/site/default",
            "/site/default/keys",
            f"/site/default/keys/{tenants.key_a.split('_')[1]}/revoke",
            "/password",
        ):
            answer = api.post(f"/dashboard{path}", data={"name": "jane@iso.test"}, headers=forged)
            assert answer.status_code in (303, 403), (path, answer.status_code)
        for headers in ({}, forged):
            events = api.get("/dashboard/site/default/events", headers=headers)
            assert events.status_code == 401
        assert api.get("/api/persons/jane@iso.test").status_code == 401
