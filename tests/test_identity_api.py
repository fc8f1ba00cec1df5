"""Identity over real HTTP: identify, alias, the vendor-compatible API, person operations."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import KISSmetrics
import pytest

from conftest import Server

DOCS = "https://docs.acme.test"
FORUM = "https://forum.acme.test"
CONFIG = f"""
trusted_proxies = ["127.0.0.1"]
allowed_origins = ["https://shop.test"]

[[sites]]
id = "docs"
tenant = "acme"
allowed_origins = ["{DOCS}"]

[[sites]]
id = "forum"
tenant = "acme"
allowed_origins = ["{FORUM}"]

[[sites]]
id = "rival"
allowed_origins = ["https://rival.test"]
"""


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    srv = Server(tmp_path / "srv", config=CONFIG)
    srv.start()
    srv.stop()  # first start creates the sites; keys are made while the file is free
    keys = {site: srv.new_key(site) for site in ("forum", "rival")}
    srv.start()
    yield srv, keys
    if srv.process is not None:
        srv.stop()


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_reference_scenario_anonymous_then_identified_on_another_site(
    acme: tuple[Server, dict[str, str]],
) -> None:
    """Anonymous question on the docs site, later identified by email on the forum."""
    srv, keys = acme
    with srv.client("10.20.0.1") as api:
        cookie = "anon-cookie-3f9a2b"
        asked = api.post(
            "/api/analytics/track",
            headers={"origin": DOCS},
            json={
                "event": "message_sent",
                "token": cookie,
                "data": {"text": "How do I reset my key?"},
            },
        )
        assert asked.status_code == 200
        # Same browser on the forum (same registrable domain, same cookie), now logged in.
        who = api.post(
            "/api/identify",
            headers={"origin": FORUM},
            json={
                "token": cookie,
                "user": {
                    "email": "Jane.Doe@Acme.test",
                    "uniqueClientId": "u-42",
                    "metadata": {"company_name": "Acme Corp"},
                },
            },
        )
        assert who.json() == {"success": True}
        later = api.post(
            "/api/analytics/track",
            headers={"origin": FORUM},
            json={"event": "message_sent", "token": cookie, "data": {"text": "Thanks, found it"}},
        )
        assert later.status_code == 200
        # A later visit from another device, identified with the same email.
        api.post(
            "/api/analytics/track",
            headers={"origin": FORUM},
            json={"event": "visitor", "token": "laptop-token-77"},
        )
        api.post(
            "/api/identify",
            headers={"origin": FORUM},
            json={"token": "laptop-token-77", "user": {"email": "jane.doe@acme.test"}},
        )
        profile = api.get("/api/persons/jane.doe@acme.test", headers=auth(keys["forum"])).json()
        journey = api.get("/api/persons/u-42/journey", headers=auth(keys["forum"])).json()
    assert profile["metadata"] == {"company_name": "Acme Corp"}
    assert profile["events"] == 3
    # The email was never used for events or properties, so it is no customer id (yet).
    assert sorted(profile["customer_ids"]) == [
        "client_id:u-42",
        "token:anon-cookie-3f9a2b",
        "token:laptop-token-77",
    ]
    texts = [(e["site_id"], e["data"].get("text")) for e in journey["events"]]
    assert texts == [
        ("docs", "How do I reset my key?"),
        ("forum", "Thanks, found it"),
        ("forum", None),
    ]
    assert journey["person_id"] == profile["person_id"]


def test_official_vendor_client_records_sets_and_aliases(
    acme: tuple[Server, dict[str, str]],
) -> None:
    srv, keys = acme
    client = KISSmetrics.Client(keys["forum"], trk_host=f"127.0.0.1:{srv.port}", trk_scheme="http")
    assert client.record("bob@bob.com", "Signed Up", {"plan": "pro"}).status == 200
    assert client.set("User 12345", {"company": "Bob's"}).status == 200
    assert client.alias("User 12345", "bob@bob.com").status == 200
    assert client.record("User 12345", "Upgraded", timestamp=1_700_000_000).status == 200
    answer = client.record("bob@bob.com", "Viewed Pricing")
    assert answer.status == 200
    assert answer.headers["content-type"] == "image/gif"
    with srv.client() as api:
        profile = api.get("/api/persons/User 12345", headers=auth(keys["forum"])).json()
        journey = api.get("/api/persons/bob@bob.com/journey", headers=auth(keys["forum"])).json()
        denied = httpx.get(
            f"{srv.url}/e", params={"_k": "ff_000000000000_nope", "_p": "x", "_n": "y"}
        )
    assert profile["person_id"] == journey["person_id"]
    assert profile["metadata"] == {"plan": "pro", "company": "Bob's"}
    # The vendor's names are custom events (issue 18, item 10): never one of the 13 types.
    assert [(e["event"], e["custom_event"]) for e in journey["events"]] == [
        ("custom", "Upgraded"),
        ("custom", "Signed Up"),
        ("custom", "Viewed Pricing"),
    ]
    assert journey["events"][0]["ts"].startswith("2023-11-14T22:13:20")
    assert sorted(profile["customer_ids"]) == ["alias:User 12345", "email:bob@bob.com"]
    for bad in ("soon", "1e400", "nan"):
        answer = httpx.get(
            f"{srv.url}/e",
            params={"_k": keys["forum"], "_p": "bob@bob.com", "_n": "Late", "_t": bad, "_d": "1"},
        )
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["field"] == "_t"
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "UNAUTHORIZED"
    for bad_name in ("", "a\x01b", "x" * 256, "line\nbreak"):
        answer = httpx.get(
            f"{srv.url}/e", params={"_k": keys["forum"], "_p": "bob@bob.com", "_n": bad_name}
        )
        assert (answer.status_code, answer.json()["error"]["field"]) == (422, "_n"), bad_name
    with srv.client() as api:
        listed = api.get(
            "/api/reports/custom-events", params={"days": 3000}, headers=auth(keys["forum"])
        ).json()
        overview = api.get(
            "/api/reports/overview", params={"days": 3000}, headers=auth(keys["forum"])
        ).json()
    assert {e["name"]: e["count"] for e in listed["events"]} == {
        "Upgraded": 1,
        "Signed Up": 1,
        "Viewed Pricing": 1,
    }
    assert (overview["visits"], overview["orders"], overview["conversations"]) == (0, 0, 0)


def test_keys_are_required_and_scoped_to_their_tenant(acme: tuple[Server, dict[str, str]]) -> None:
    srv, keys = acme
    with srv.client("10.20.0.2") as api:
        assert api.post("/api/alias", json={"a": "x-name-1", "b": "y-name-2"}).status_code == 401
        assert (
            api.post(
                "/api/alias",
                json={"a": "x-name-1", "b": "y-name-2"},
                headers=auth("ff_123456789abc_wrong"),
            ).status_code
            == 401
        )
        assert api.get("/api/persons/x-name-1").status_code == 401
        made = api.post(
            "/api/alias", json={"a": "x-name-1", "b": "y-name-2"}, headers=auth(keys["forum"])
        )
        assert made.status_code == 200
        # The rival site's key sees nothing of acme's people, and cannot change them.
        assert api.get("/api/persons/x-name-1", headers=auth(keys["rival"])).status_code == 404
        assert api.delete("/api/persons/x-name-1", headers=auth(keys["rival"])).status_code == 404
        explained = api.get(
            "/api/identity/explain",
            params={"a": "x-name-1", "b": "y-name-2"},
            headers=auth(keys["rival"]),
        ).json()
        assert explained == {"same_person": False, "chain": []}
        assert api.get("/api/persons/x-name-1", headers=auth(keys["forum"])).status_code == 200
        huge = api.post(
            "/api/alias", json={"a": "x" * 60_000, "b": "y"}, headers=auth(keys["forum"])
        )
        assert huge.status_code == 400
        assert huge.json()["error"]["code"] == "ANALYTICS_002"
        long_name = api.post(
            "/api/alias", json={"a": "x" * 256, "b": "y-name-2"}, headers=auth(keys["forum"])
        )
        assert long_name.status_code == 422
        assert long_name.json()["error"]["field"] == "a"
        missing = api.post("/api/alias", json={"a": "only-one"}, headers=auth(keys["forum"]))
        assert missing.status_code == 422
        assert missing.json()["error"]["field"] == "b"


def test_identify_is_origin_validated_and_validated(acme: tuple[Server, dict[str, str]]) -> None:
    srv, _ = acme
    with srv.client("10.20.0.3") as api:
        evil = api.post(
            "/api/identify",
            headers={"origin": "https://evil.test"},
            json={"token": "abcdefgh1", "user": {"email": "a@b.co"}},
        )
        assert evil.status_code == 403
        bad_email = api.post(
            "/api/identify",
            headers={"origin": FORUM},
            json={"token": "abcdefgh1", "user": {"email": "not-an-email"}},
        )
        assert bad_email.status_code == 422
        assert bad_email.json()["error"]["field"] == "user.email"
        bad_token = api.post(
            "/api/identify",
            headers={"origin": FORUM},
            json={"token": "no", "user": {"email": "a@b.co"}},
        )
        assert bad_token.status_code == 422
        assert bad_token.json()["error"]["field"] == "token"
        assert (
            api.post("/api/identify", headers={"origin": FORUM}, content=b"{nope").json()["error"][
                "code"
            ]
            == "ANALYTICS_001"
        )
        preflight = api.options(
            "/api/identify", headers={"origin": FORUM, "access-control-request-method": "POST"}
        )
        assert preflight.status_code == 204


def test_split_explain_export_and_erase_with_tombstone(acme: tuple[Server, dict[str, str]]) -> None:
    srv, keys = acme
    key = auth(keys["forum"])
    with srv.client("10.20.0.4") as api:
        for token, text in [("phone-token-1", "q1"), ("desk-token-22", "q2")]:
            api.post(
                "/api/analytics/track",
                headers={"origin": FORUM},
                json={"event": "message_sent", "token": token, "data": {"text": text}},
            )
        api.post(
            "/api/alias", json={"a": "phone-token-1", "b": "email:sam@example.com"}, headers=key
        )
        api.post("/api/alias", json={"a": "desk-token-22", "b": "sam@example.com"}, headers=key)
        chain = api.get(
            "/api/identity/explain",
            headers=key,
            params={"a": "phone-token-1", "b": "desk-token-22"},
        ).json()
        assert chain["same_person"]
        assert [(s["a"], s["b"]) for s in chain["chain"]] == [
            ("token:phone-token-1", "email:sam@example.com"),
            ("email:sam@example.com", "token:desk-token-22"),
        ]
        assert all(s["source"] == "alias" and s["at"] for s in chain["chain"])
        split = api.post(
            "/api/identity/split", headers=key, json={"a": "desk-token-22", "b": "sam@example.com"}
        ).json()
        assert split["separated"]
        not_linked = api.post(
            "/api/identity/split", headers=key, json={"a": "desk-token-22", "b": "phone-token-1"}
        )
        assert not_linked.status_code == 409
        export = api.get("/api/persons/sam@example.com/export", headers=key)
        document = export.json()
        assert "attachment" in export.headers["content-disposition"]
        assert [e["data"]["text"] for e in document["event_list"]] == ["q1"]
        assert {entry["action"] for entry in document["link_log"]} == {"link", "unlink"}
        erased = api.delete("/api/persons/phone-token-1", headers=key).json()
        assert erased["erased"] == {"identifiers": 2, "events": 1}
        assert api.get("/api/persons/sam@example.com", headers=key).status_code == 404
        late = api.post(
            "/api/analytics/track",
            headers={"origin": FORUM},
            json={"event": "visitor", "token": "phone-token-1"},
        )
        assert late.json() == {"success": True, "erased": True}
        again = api.post(
            "/api/identify",
            headers={"origin": FORUM},
            json={"token": "phone-token-1", "user": {"email": "sam@example.com"}},
        )
        assert again.json()["erased"] is True
        for user, field in [
            ({"email": "sam@example.com", "uniqueClientId": 1.5}, "user.uniqueClientId"),
            ({"email": " " * 256}, "user.email"),
        ]:
            bad = api.post(
                "/api/identify",
                headers={"origin": FORUM},
                json={"token": "phone-token-1", "user": user},
            )
            assert bad.status_code == 422, user  # checked before the erased short-cut
            assert bad.json()["error"]["field"] == field
        assert api.get("/api/persons/desk-token-22", headers=key).status_code == 200
    srv.stop()
    assert srv.rows("SELECT token FROM events ORDER BY event_id") == [("desk-token-22",)]
    log_values = srv.rows(
        "SELECT a_value, b_value FROM link_log WHERE action IN ('link', 'unlink')"
    )
    assert all("sam@example.com" not in (a or "") + (b or "") for a, b in log_values)
    assert "sam@example.com" not in srv.log.read_text()


def test_person_cli_against_the_file(acme: tuple[Server, dict[str, str]]) -> None:
    srv, keys = acme
    with srv.client("10.20.0.5") as api:
        api.post(
            "/api/analytics/track",
            headers={"origin": FORUM},
            json={
                "event": "message_sent",
                "token": "cli-token-01",
                "data": {"text": "hello there"},
            },
        )
        api.post(
            "/api/identify",
            headers={"origin": FORUM},
            json={"token": "cli-token-01", "user": {"uniqueClientId": "cli-user"}},
        )
    remote = subprocess.run(
        [
            sys.executable,
            "-m",
            "footfall",
            "person",
            "show",
            "cli-user",
            "--server",
            srv.url,
            "--key",
            keys["forum"],
        ],
        capture_output=True,
        text=True,
        env={**srv.env, "COLUMNS": "160"},
    )
    assert remote.returncode == 0, remote.stderr
    assert "token:cli-token-01" in remote.stdout
    assert "hello there" in remote.stdout
    srv.stop()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "footfall",
                *args,
                "--site",
                "forum",
                "--database",
                str(srv.database),
            ],
            capture_output=True,
            text=True,
            env={**srv.env, "COLUMNS": "160"},
        )

    assert "are person" in cli("alias", "cli-user", "email:cli@example.com").stdout
    explained = cli("person", "explain", "cli-token-01", "cli@example.com")
    assert explained.returncode == 0
    assert "2 link(s)" in explained.stdout
    exported = cli("person", "export", "cli@example.com")
    document = json.loads(exported.stdout)
    assert [e["data"]["text"] for e in document["event_list"]] == ["hello there"]
    assert "person" in cli("person", "split", "cli-user", "cli@example.com").stdout
    assert cli("person", "explain", "cli-token-01", "cli@example.com").returncode == 1
    erased = cli("person", "erase", "cli-token-01", "--yes")
    assert "erased 2 identifiers and 1 event" in erased.stdout
    assert cli("person", "show", "cli-user").returncode == 1


ANON_CONFIG = f"""
trusted_proxies = ["127.0.0.1"]
allowed_origins = ["{FORUM}"]
"""


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_a_visitor_who_never_identified_is_a_person(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Show, journey, export and erase for a bare token and for ``token:...``, through the
    API, ``footfall person`` against the server and against the database (they once
    answered 404 while the dashboard showed the person)."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    srv = Server(tmp_path / "srv", config=ANON_CONFIG, database_url=url)
    key = srv.start_with_key()

    def person(*args: str, remote: bool) -> subprocess.CompletedProcess[str]:
        target = ("--server", srv.url, "--key", key) if remote else ("--database", srv.target)
        return subprocess.run(
            [sys.executable, "-m", "footfall", "person", *args, *target],
            capture_output=True,
            text=True,
            env={**srv.env, "COLUMNS": "160"},
        )

    tokens = ("anon-only-token-1", "anon-only-token-2", "anon-only-token-3")
    try:
        with srv.client("10.20.0.6", headers=auth(key)) as api:
            for token, count in zip(tokens, (2, 1, 1), strict=True):
                for n in range(count):
                    sent = api.post(
                        "/api/analytics/track",
                        headers={"origin": FORUM},
                        json={"event": "message_sent", "token": token, "data": {"text": f"q{n}"}},
                    )
                    assert sent.status_code == 200, sent.text
            for name in (tokens[0], f"token:{tokens[0]}"):
                shown = api.get(f"/api/persons/{name}")
                assert shown.status_code == 200, shown.text
                assert shown.json()["customer_ids"] == [f"token:{tokens[0]}"]
                assert shown.json()["events"] == 2
                journey = api.get(f"/api/persons/{name}/journey").json()
                assert [e["data"]["text"] for e in journey["events"]] == ["q0", "q1"]
                assert journey["person_id"] == shown.json()["person_id"]
                exported = api.get(f"/api/persons/{name}/export").json()
                assert len(exported["event_list"]) == 2
            remote = person("show", tokens[1], remote=True)
            assert remote.returncode == 0, remote.stderr
            assert f"token:{tokens[1]}" in remote.stdout
            assert "q0" in remote.stdout
            erased = api.delete(f"/api/persons/token:{tokens[1]}")
            assert erased.status_code == 200, erased.text
            assert erased.json()["erased"] == {"identifiers": 1, "events": 1}
            assert api.get(f"/api/persons/{tokens[1]}").status_code == 404
            late = api.post(
                "/api/analytics/track",
                headers={"origin": FORUM},
                json={"event": "visitor", "token": tokens[1]},
            )
            assert late.json() == {"success": True, "erased": True}
            assert api.get("/api/persons/never-seen-token").status_code == 404
        if backend == "duckdb":
            srv.stop()  # the CLI opens the file, which the server holds
        local = person("show", tokens[2], remote=False)
        assert local.returncode == 0, local.stderr
        assert f"token:{tokens[2]}" in local.stdout
        document = json.loads(person("export", f"token:{tokens[2]}", remote=False).stdout)
        assert [e["data"]["text"] for e in document["event_list"]] == ["q0"]
        gone = person("erase", tokens[2], "--yes", remote=False)
        assert "erased 1 identifier and 1 event" in gone.stdout, gone.stderr
        assert person("show", tokens[2], remote=False).returncode == 1
    finally:
        if srv.process is not None:
            srv.stop()
    if backend == "duckdb":
        stored = srv.rows("SELECT token, count(*) FROM events GROUP BY token")
        assert stored == [(tokens[0], 2)]
        tombstones = srv.rows("SELECT kind, value FROM tombstones ORDER BY value")
        assert tombstones == [("token", tokens[1]), ("token", tokens[2])]
