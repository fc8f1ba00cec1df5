"""Administration of a running server, over HTTP: the first sign-in through the setup link,
the admin password, the admin API and the dashboard's site pages, with tenant isolation on
every route. (The whole first run in a browser is tests/test_first_run.py.)"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import CLEAN_EXIT, Server, config_with, eventually, setup_links
from footfall.passwords import hash_password
from pgserver import PostgresServer

ADMIN_TOKEN = "admin-token-of-the-tests-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "the first admin password"
TRACK = "/api/analytics/track"
EVENT = {"event": "visitor", "token": "admin-test-token"}
REFUSED = "This setup link cannot be used"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
WRITE_KEY_FIELD = re.compile(r'id="write-key-value" value="(fw_[^"]+)"')


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def set_password(client: httpx.Client, link: str, password: str = PASSWORD) -> httpx.Response:
    form = client.get(path_of(link))
    assert form.status_code == 200, form.text[:300]
    token = urlsplit(link).query.removeprefix("token=")
    return client.post(
        "/dashboard/setup",
        data={"csrf": csrf_of(form), "token": token, "password": password, "repeat": password},
    )


@contextmanager
def session(
    server: Server, *, key: str | None = None, password: str | None = None
) -> Iterator[tuple[httpx.Client, str]]:
    """A client signed in to the dashboard with a key or the admin password, and its CSRF."""
    with server.client(follow_redirects=False) as client:
        form = client.get("/dashboard/login")
        data = {"csrf": csrf_of(form), "method": "password" if password else "key"}
        data.update({"password": password} if password else {"key": key or ""})
        answer = client.post("/dashboard/login", data=data)
        assert answer.status_code == 303, answer.text[:300]
        yield client, csrf_of(client.get("/dashboard/sites"))


# --------------------------------------------------------------------------- first sign-in


def test_the_setup_link_sets_the_first_password_once(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv").start()
    try:
        [(link, token)] = setup_links(server.log.read_text())
        assert link.startswith(f"http://localhost:{server.port}/dashboard/setup?token=ffsetup_")
        with server.client(follow_redirects=False) as client:
            # Unknown, mistyped and missing tokens: the same page, nothing about the right one.
            answers = [
                client.get("/dashboard/setup", params={"token": wrong})
                for wrong in ("ffsetup_" + "A" * 43, token[:-1], token + "x", "", "../../etc")
            ]
            answers.append(client.get("/dashboard/setup"))
            assert {a.status_code for a in answers} == {403}
            assert {_main(a.text) for a in answers} == {_main(answers[0].text)}
            assert REFUSED in answers[0].text
            assert all(token[8:16] not in a.text for a in answers)
            # A password that breaks a rule, or two that differ, leave the link usable.
            form = client.get(path_of(link))
            assert form.status_code == 200
            assert 'name="token"' in form.text
            post = {"csrf": csrf_of(form), "token": token}
            short = client.post("/dashboard/setup", data={**post, "password": "x", "repeat": "x"})
            assert (short.status_code, "at least 10" in short.text) == (422, True)
            differ = client.post(
                "/dashboard/setup", data={**post, "password": PASSWORD, "repeat": PASSWORD + "!"}
            )
            assert (differ.status_code, "differ" in differ.text) == (422, True)
            forged = client.post(
                "/dashboard/setup",
                data={**post, "csrf": "x" * 43, "password": PASSWORD, "repeat": PASSWORD},
            )
            assert forged.status_code == 403
            done = client.post(
                "/dashboard/setup", data={**post, "password": PASSWORD, "repeat": PASSWORD}
            )
            assert (done.status_code, done.headers["location"]) == (
                303,
                "/dashboard/sites?done=welcome",
            )
            landed = client.get("/dashboard/sites?done=welcome")
            assert landed.status_code == 200
            assert "Administrator" in landed.text
            assert "Your admin password is set" in landed.text
            # The link is spent: a second use, by this browser or another, is refused.
            for again in (
                client.get(path_of(link)),
                httpx.get(link.replace("localhost", "127.0.0.1")),
            ):
                assert again.status_code == 403
                assert "admin password is set already" in again.text
            reuse = client.post(
                "/dashboard/setup", data={**post, "password": "x" * 20, "repeat": "x" * 20}
            )
            assert reuse.status_code == 403
        with session(server, password=PASSWORD) as (client, _):
            assert client.get("/dashboard/").status_code == 200
        with session(server, password=PASSWORD) as (client, _):
            assert client.get("/dashboard/password").status_code == 200
    finally:
        assert server.stop() in CLEAN_EXIT
    # A start on a store with a password prints no link.
    server.start()
    assert server.stop() in CLEAN_EXIT
    log = server.log.read_text()
    assert len(setup_links(log)) == 1
    assert '"setup_link_issued": false' in log
    assert log.count(token) == 1  # the printed line only: never in a log record


def _main(page: str) -> str:
    """A page without its per-response CSRF value, to compare two refusals."""
    return CSRF.sub("", page)


def test_setup_links_expire_and_each_start_prints_a_new_one(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with("setup_link_minutes = 0.02")).start()
    try:
        [(first, _)] = setup_links(server.log.read_text())
        with server.client() as client:
            assert client.get(path_of(first)).status_code == 200
            time.sleep(1.5)  # 0.02 minutes is 1.2 s
            expired = client.get(path_of(first))
            wrong = client.get("/dashboard/setup", params={"token": "ffsetup_" + "B" * 43})
            assert expired.status_code == wrong.status_code == 403
            assert _main(expired.text) == _main(wrong.text)
            login = client.get("/dashboard/login")
            assert 'data-testid="setup-hint"' in login.text  # still no password
    finally:
        assert server.stop() in CLEAN_EXIT
    server.config.write_text(config_with())  # the hour again: this link is used, not awaited
    server.start()
    try:
        links = setup_links(server.log.read_text())
        assert len(links) == 2
        second = links[1][0]
        assert second != first
        with server.client(follow_redirects=False) as client:
            assert set_password(client, second).status_code == 303
    finally:
        assert server.stop() in CLEAN_EXIT


def test_a_configured_password_wins_and_closes_the_setup_page(tmp_path: Path) -> None:
    configured = hash_password("configured password", n=2**12)
    server = Server(tmp_path / "srv", config_with(f'admin_password_hash = "{configured}"')).start()
    try:
        assert setup_links(server.log.read_text()) == []
        with server.client() as client:
            closed = client.get("/dashboard/setup", params={"token": "ffsetup_" + "C" * 43})
            assert closed.status_code == 403
            assert "admin password is set already" in closed.text
        with session(server, password="configured password") as (client, _):
            page = client.get("/dashboard/password")
            assert 'data-testid="password-in-config"' in page.text
    finally:
        assert server.stop() in CLEAN_EXIT


def test_changing_the_password_ends_the_other_sessions(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv").start()
    try:
        [(link, _)] = setup_links(server.log.read_text())
        with server.client(follow_redirects=False) as first:
            assert set_password(first, link).status_code == 303
            with session(server, password=PASSWORD) as (second, _):
                assert second.get("/dashboard/sites").status_code == 200
                page = first.get("/dashboard/password")
                data = {"csrf": csrf_of(page), "current": PASSWORD, "repeat": "new password 2"}
                wrong = first.post(
                    "/dashboard/password", data={**data, "current": "nope", "new": "new password 2"}
                )
                assert (wrong.status_code, "not right" in wrong.text) == (422, True)
                changed = first.post("/dashboard/password", data={**data, "new": "new password 2"})
                assert changed.status_code == 303
                assert first.get("/dashboard/sites").status_code == 200  # signed in again
                ended = second.get("/dashboard/sites")
                assert ended.status_code == 303
                assert ended.headers["location"].startswith("/dashboard/login")
        with server.client() as client:
            form = client.get("/dashboard/login")
            old = client.post(
                "/dashboard/login",
                data={"csrf": csrf_of(form), "method": "password", "password": PASSWORD},
            )
            assert old.status_code == 401
        with session(server, password="new password 2") as (client, _):
            assert client.get("/dashboard/").status_code == 200
    finally:
        assert server.stop() in CLEAN_EXIT


# --------------------------------------------------------------------------- the admin API


class Tenants:
    """A server with an admin token and two tenants' sites (default, other), a key each."""

    def __init__(self, server: Server, key_a: str, key_b: str, write_key_a: str) -> None:
        self.server, self.key_a, self.key_b = server, key_a, key_b
        self.write_key_a = write_key_a

    @property
    def key_a_id(self) -> str:
        return self.key_a.split("_")[1]

    def api(self, ip: str, headers: dict[str, str] | None = None) -> httpx.Client:
        return self.server.client(ip, headers=headers or ADMIN)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    server = Server(
        tmp_path_factory.mktemp("admin"), config_with(f'admin_token = "{ADMIN_TOKEN}"')
    ).start()
    with server.client(headers=ADMIN) as api:
        keys = [
            api.post(f"/api/admin/sites/{site}/keys", json={"label": site}).json()["key"]
            for site in ("default", "other")
        ]
        write_key_a = api.get("/api/admin/sites/default/write-key").json()["write_key"]
    yield Tenants(server, keys[0], keys[1], write_key_a)
    assert server.stop() in CLEAN_EXIT


def test_sites_and_keys_change_while_the_server_runs(tenants: Tenants, fresh_ip: str) -> None:
    with tenants.api(fresh_ip) as api:
        created = api.post(
            "/api/admin/sites",
            json={
                "id": "blog",
                "name": "Blog",
                "allowed_origins": ["https://Blog.test/", " https://*.blog.test"],
            },
        )
        assert created.status_code == 201, created.text
        site = created.json()["site"]
        assert site["allowed_origins"] == ["https://blog.test", "https://*.blog.test"]
        assert (site["tenant"], site["warnings"], site["last_event_at"]) == ("blog", [], None)
        # The running server follows at once: no restart, no cache delay in this process.
        www = {"origin": "https://www.blog.test"}
        assert api.post(f"{TRACK}?site=blog", json=EVENT, headers=www).status_code == 200
        changed = api.patch(
            "/api/admin/sites/blog",
            json={"allowed_origins": ["https://new.blog.test"], "name": None},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["site"]["name"] == "Blog"  # null leaves it as it was
        assert api.post(f"{TRACK}?site=blog", json=EVENT, headers=www).status_code == 403
        new = {"origin": "https://new.blog.test"}
        assert api.post(f"{TRACK}?site=blog", json=EVENT, headers=new).status_code == 200
        shown = api.get("/api/admin/sites/blog").json()["site"]
        assert shown["events_today"] == 2
        assert shown["last_event_at"] is not None
        # A key: shown once, works, revoked, refused on its very next call.
        made = api.post("/api/admin/sites/blog/keys", json={"label": "reports"})
        assert made.status_code == 201
        key, record = made.json()["key"], made.json()["record"]
        assert key.startswith(f"ff_{record['key_id']}_")
        assert (record["kind"], record["label"], record["revoked"]) == ("secret", "reports", False)
        with tenants.api(fresh_ip, {"authorization": f"Bearer {key}"}) as keyed:
            assert keyed.get("/api/reports/overview").status_code == 200
            listed = api.get("/api/admin/sites/blog/keys").json()["keys"]
            assert [k["key_id"] for k in listed] == [record["key_id"]]
            assert key not in str(listed)
            gone = api.delete(f"/api/admin/keys/{record['key_id']}")
            assert (gone.status_code, gone.json()["record"]["revoked"]) == (200, True)
            refused = keyed.get("/api/reports/overview")
            assert refused.status_code == 401
        assert api.get("/api/admin/sites/blog/keys").json()["keys"][0]["revoked"] is True
        star = api.patch("/api/admin/sites/blog", json={"allowed_origins": ["*"]}).json()
        assert any("any web page" in w for w in star["site"]["warnings"])
        ids = [s["id"] for s in api.get("/api/admin/sites").json()["sites"]]
        assert ids == ["blog", "default", "other"]


def test_write_keys_through_the_admin_api_and_the_site_page(
    tenants: Tenants, fresh_ip: str
) -> None:
    """Every new site has a public write key; rotating or revoking it refuses the old one on
    its very next call in this process, and the site's page shows the current one."""
    segment = {"userId": "u-1", "event": "Signed Up"}
    with tenants.api(fresh_ip) as api, tenants.server.client(fresh_ip) as sender:
        created = api.post("/api/admin/sites", json={"id": "docs", "allowed_origins": []})
        first = created.json()["site"]["write_key"]
        assert first.startswith("fw_")
        shown = api.get("/api/admin/sites/docs/write-key").json()
        assert (shown["write_key"], shown["site_id"]) == (first, "docs")
        assert sender.post("/v1/track", json={**segment, "writeKey": first}).status_code == 200
        rotated = api.post("/api/admin/sites/docs/write-key")
        assert rotated.status_code == 201, rotated.text
        second = rotated.json()["write_key"]
        assert second != first
        old = sender.post("/v1/track", json={**segment, "writeKey": first})
        assert (old.status_code, old.json()["error"]["code"]) == (401, "UNAUTHORIZED")
        assert sender.post("/v1/track", json={**segment, "writeKey": second}).status_code == 200
        # The write key sends only: it reads nothing and administers nothing.
        as_writer = {"authorization": f"Bearer {second}"}
        for path in ("/api/admin/sites", "/api/reports/overview?site=docs"):
            assert sender.get(path, headers=as_writer).status_code == 401
        with session(tenants.server, password=None, key=tenants.key_a) as (client, _):
            assert client.get("/dashboard/site/docs").status_code == 404  # another tenant
        gone = api.delete("/api/admin/sites/docs/write-key")
        assert gone.status_code == 200
        assert sender.post("/v1/track", json={**segment, "writeKey": second}).status_code == 401
        assert api.delete("/api/admin/sites/docs/write-key").status_code == 404
        assert api.get("/api/admin/sites/docs").json()["site"]["write_key"] is None
    with session(tenants.server, key=tenants.key_b) as (client, csrf):
        page = client.get("/dashboard/site/other").text
        with tenants.api(fresh_ip) as api:
            current = api.get("/api/admin/sites/other/write-key").json()["write_key"]
        assert WRITE_KEY_FIELD.findall(page) == [current]
        answer = client.post("/dashboard/site/other/write-key", data={"csrf": csrf})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/dashboard/site/other?done=write-key")
        [after] = WRITE_KEY_FIELD.findall(client.get("/dashboard/site/other").text)
        assert after.startswith("fw_")
        assert after != current
        forged = client.post("/dashboard/site/other/write-key", data={"csrf": "forged"})
        assert forged.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"id": "default"}, 409, "id"),
        ({"id": "x1", "allowed_origins": ["https://ok.test", "https://ok.test/p"]}, 422, None),
        ({"id": "x2", "origins": ["https://ok.test"]}, 422, "origins"),
        ({"id": "x6", "": 1}, 422, '""'),
        ({"id": "Not An Id"}, 422, "id"),
        ({"name": "no id"}, 422, "id"),
        ({"id": "x3", "tenant": "Bad Tenant"}, 422, "tenant"),
        ({"id": "x4", "name": 7}, 422, "name"),
        ({"id": "x5", "allowed_origins": "https://ok.test"}, 422, "allowed_origins"),
    ],
)
def test_bad_site_bodies_are_refused_with_the_field(
    tenants: Tenants, fresh_ip: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    with tenants.api(fresh_ip) as api:
        answer = api.post("/api/admin/sites", json=body)
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["code"] == ("CONFLICT" if status == 409 else "VALIDATION_ERROR")
        assert error["field"] == (field or "allowed_origins[1]")
        for raw in (b"{", b"[]", b'"site"'):
            malformed = api.post("/api/admin/sites", content=raw)
            assert malformed.status_code == 400
            assert malformed.json()["error"]["code"] == "ANALYTICS_001"


ROUTES = [
    ("GET", "/api/admin/sites", None),
    ("POST", "/api/admin/sites", {"id": "new-site"}),
    ("GET", "/api/admin/sites/default", None),
    ("PATCH", "/api/admin/sites/default", {"name": "x"}),
    ("GET", "/api/admin/sites/default/keys", None),
    ("POST", "/api/admin/sites/default/keys", {"label": "x"}),
    ("DELETE", "/api/admin/keys/000000000000", None),
    ("GET", "/api/admin/sites/default/write-key", None),
    ("POST", "/api/admin/sites/default/write-key", None),
    ("DELETE", "/api/admin/sites/default/write-key", None),
]


def test_the_admin_api_needs_the_admin_token_or_a_key(tenants: Tenants, fresh_ip: str) -> None:
    presented: list[dict[str, str]] = [
        {},
        {"authorization": "Bearer"},
        {"authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"authorization": f"Basic {ADMIN_TOKEN}"},
        {"x-api-key": ADMIN_TOKEN},  # the admin token is a bearer token only
        {"authorization": "Bearer ff_000000000000_nope"},
    ]
    with tenants.server.client(fresh_ip) as api:
        for method, path, body in ROUTES:
            for headers in presented:
                answer = api.request(method, path, json=body, headers=headers)
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert answer.json()["error"]["code"] == "UNAUTHORIZED"
        assert api.get("/api/admin/sites", headers={"x-api-key": tenants.key_a}).status_code == 200


FOREIGN = [
    ("GET", "/api/admin/sites/default", None),
    ("PATCH", "/api/admin/sites/default", {"name": "taken over"}),
    ("PATCH", "/api/admin/sites/default", {"allowed_origins": ["https://evil.test"]}),
    ("GET", "/api/admin/sites/default/keys", None),
    ("POST", "/api/admin/sites/default/keys", {"label": "mine now"}),
    ("DELETE", "/api/admin/keys/{key_a}", None),
    ("GET", "/api/admin/sites/default/write-key", None),
    ("POST", "/api/admin/sites/default/write-key", None),
    ("DELETE", "/api/admin/sites/default/write-key", None),
]


@pytest.mark.parametrize(("method", "path", "body"), FOREIGN)
def test_a_key_cannot_reach_another_tenants_site_through_the_api(
    tenants: Tenants, fresh_ip: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """The other tenant's key gets 404, as for a site that does not exist; nothing changes."""
    target = path.replace("{key_a}", tenants.key_a_id)
    with tenants.api(fresh_ip, {"authorization": f"Bearer {tenants.key_b}"}) as api:
        answer = api.request(method, target, json=body)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "NOT_FOUND"
        missing = api.request(method, target.replace("default", "no-such-site"), json=body)
        assert missing.status_code == 404
    with tenants.api(fresh_ip) as admin:
        site = admin.get("/api/admin/sites/default").json()["site"]
        assert site["name"] == "Default site"
        assert "https://evil.test" not in site["allowed_origins"]
        keys = admin.get("/api/admin/sites/default/keys").json()["keys"]
        assert [k["label"] for k in keys if not k["revoked"]] == ["default"]
        assert site["write_key"] == tenants.write_key_a
    with tenants.api(fresh_ip, {"authorization": f"Bearer {tenants.key_a}"}) as api:
        assert api.get("/api/reports/overview").status_code == 200


def test_a_key_lists_and_adds_sites_of_its_own_tenant_only(tenants: Tenants, fresh_ip: str) -> None:
    with tenants.api(fresh_ip, {"authorization": f"Bearer {tenants.key_b}"}) as api:
        assert [s["id"] for s in api.get("/api/admin/sites").json()["sites"]] == ["other"]
        foreign = api.post("/api/admin/sites", json={"id": "b-site", "tenant": "default"})
        assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "FORBIDDEN")
        move = api.patch("/api/admin/sites/other", json={"tenant": "default"})
        assert move.status_code == 403
        own = api.post("/api/admin/sites", json={"id": "b-site", "allowed_origins": []})
        assert own.status_code == 201
        assert own.json()["site"]["tenant"] == "other"
        assert [s["id"] for s in api.get("/api/admin/sites").json()["sites"]] == [
            "b-site",
            "other",
        ]
        made = api.post("/api/admin/sites/b-site/keys", json={})
        assert made.status_code == 201
    with tenants.api(fresh_ip, {"authorization": f"Bearer {tenants.key_a}"}) as api:
        assert "b-site" not in str(api.get("/api/admin/sites").json())
        assert api.get("/api/admin/sites/b-site").status_code == 404


# --------------------------------------------------------------------------- the dashboard


DASHBOARD_FOREIGN = [
    ("GET", "/dashboard/site/default", None),
    ("POST", "/dashboard/site/default", {"name": "taken", "origins": "https://evil.test"}),
    ("GET", "/dashboard/site/default/events", None),
    ("POST", "/dashboard/site/default/keys", {"label": "mine now"}),
    ("POST", "/dashboard/site/default/keys/{key_a}/revoke", {}),
    ("POST", "/dashboard/site/other/keys/{key_a}/revoke", {}),  # own site, foreign key
    ("POST", "/dashboard/site/default/write-key", {}),
]


@pytest.mark.parametrize(("method", "path", "form"), DASHBOARD_FOREIGN)
def test_a_key_cannot_reach_another_tenants_site_through_the_pages(
    tenants: Tenants, method: str, path: str, form: dict[str, str] | None
) -> None:
    with session(tenants.server, key=tenants.key_b) as (client, csrf):
        target = path.replace("{key_a}", tenants.key_a_id)
        data = None if form is None else {**form, "csrf": csrf}
        answer = client.request(method, target, data=data)
        assert answer.status_code == 404, answer.text[:300]
        assert "default" not in client.get("/dashboard/sites").text.split("<main", 1)[1]
    with tenants.server.client(headers=ADMIN) as admin:
        site = admin.get("/api/admin/sites/default").json()["site"]
        assert (site["name"], "https://evil.test" in site["allowed_origins"]) == (
            "Default site",
            False,
        )
        keys = admin.get("/api/admin/sites/default/keys").json()["keys"]
        assert [k["label"] for k in keys if not k["revoked"]] == ["default"]
        assert site["write_key"] == tenants.write_key_a


def test_the_site_pages_of_a_key_session(tenants: Tenants, fresh_ip: str) -> None:
    """A key session manages its tenant's sites; forms need the CSRF token; the admin password
    page is the administrator's."""
    with session(tenants.server, key=tenants.key_b) as (client, csrf):
        assert client.get("/dashboard/password").status_code == 403
        listed = client.get("/dashboard/sites")
        assert 'data-site="other"' in listed.text
        assert 'data-site="default"' not in listed.text
        for path, form in (
            ("/dashboard/sites/new", {"id": "page-site"}),
            ("/dashboard/site/other", {"name": "x", "origins": ""}),
            ("/dashboard/site/other/keys", {"label": "x"}),
        ):
            for no_csrf in ({}, {"csrf": "x" * 43}):
                assert client.post(path, data={**form, **no_csrf}).status_code == 403, path
        # The tenant field is the administrator's: a key's new site joins the key's tenant.
        made = client.post(
            "/dashboard/sites/new",
            data={
                "csrf": csrf,
                "id": "page-site",
                "origins": "https://p.test",
                "tenant": "default",
            },
        )
        assert (made.status_code, made.headers["location"]) == (
            303,
            "/dashboard/site/page-site?done=created",
        )
        page = client.get("/dashboard/site/page-site?done=created")
        assert page.status_code == 200
        named_new = client.post("/dashboard/sites/new", data={"csrf": csrf, "id": "new"})
        assert named_new.headers["location"] == "/dashboard/site/new?done=created"
        assert 'data-site-id="new"' in client.get("/dashboard/site/new").text
        assert 'data-site-id="page-site"' in page.text
        assert f"{tenants.server.url}/footfall.js" in page.text
        bad = client.post(
            "/dashboard/site/page-site",
            data={"csrf": csrf, "name": "P", "origins": "https://p.test\nhttps://p.test/path"},
        )
        assert bad.status_code == 422
        assert "Allowed origin 2: &#39;https://p.test/path&#39;: an origin has no path" in bad.text
        assert "https://p.test/path" in bad.text  # what was typed stays in the form
        events = client.get("/dashboard/site/page-site/events").json()
        assert events == {
            "site": "page-site",
            "receiving": False,
            "events": [],
            "events_today": 0,
            "refused": [],
        }
        with tenants.api(fresh_ip, {"origin": "https://p.test"}) as tracker:
            assert tracker.post(f"{TRACK}?site=page-site", json=EVENT).status_code == 200
        events = client.get("/dashboard/site/page-site/events").json()
        assert (events["receiving"], events["events_today"]) == (True, 1)
        assert [(e["event"], e["label"]) for e in events["events"]] == [("visitor", "Visit")]
        made_key = client.post("/dashboard/site/page-site/keys", data={"csrf": csrf, "label": "k"})
        assert made_key.status_code == 303  # redirected: a reload makes no second key
        key_page = client.get(made_key.headers["location"])
        [key] = re.findall(r'value="(ff_[0-9a-f]{12}_[^"]+)"', key_page.text)
        assert client.get("/dashboard/site/page-site").text.count(key) == 0  # shown once
        revoked = client.post(
            f"/dashboard/site/page-site/keys/{key.split('_')[1]}/revoke", data={"csrf": csrf}
        )
        assert revoked.status_code == 303
        with tenants.api(fresh_ip, {"authorization": f"Bearer {key}"}) as api:
            assert api.get("/api/reports/overview").status_code == 401
    with tenants.server.client() as anonymous:
        assert anonymous.get("/dashboard/site/page-site/events").status_code == 401


# --------------------------------------------------------------------------- PostgreSQL


def test_setup_and_sites_across_processes(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    """Each process prints its own link; the first used sets the password for all of them.
    A site added through one process is served by the other within cache_refresh_seconds."""
    config = config_with(f'admin_token = "{ADMIN_TOKEN}"', "cache_refresh_seconds = 0.5")
    a = Server(tmp_path / "a", config, database_url=postgres_url).start()
    b = Server(tmp_path / "b", config, database_url=postgres_url).start()
    try:
        [(link_a, _)] = setup_links(a.log.read_text())
        [(link_b, _)] = setup_links(b.log.read_text())
        assert link_a != link_b
        with a.client(follow_redirects=False) as client:
            assert set_password(client, link_a).status_code == 303
        with b.client() as client:
            refused = client.get(path_of(link_b))
            assert (refused.status_code, "set already" in refused.text) == (403, True)
        with session(b, password=PASSWORD) as (client, _):
            assert client.get("/dashboard/sites").status_code == 200
        with a.client(headers=ADMIN) as api:
            made = api.post(
                "/api/admin/sites", json={"id": "pg-site", "allowed_origins": ["https://pg.test"]}
            )
            assert made.status_code == 201
        with b.client(headers={"origin": "https://pg.test"}) as other:

            def served() -> bool:
                return other.post(f"{TRACK}?site=pg-site", json=EVENT).status_code == 200

            assert eventually(served, 10)
    finally:
        for server in (a, b):
            assert server.stop() in CLEAN_EXIT


def test_a_new_keys_secret_reaches_its_page_from_another_process(
    tmp_path: Path, postgres_url: str
) -> None:
    """The form redirects (a reload makes no second key); the page after it may be served by
    another process of the same PostgreSQL store, and still shows the secret, once."""
    config = config_with(f'admin_token = "{ADMIN_TOKEN}"', 'session_secret = "shared-by-both"')
    a = Server(tmp_path / "a", config, database_url=postgres_url).start()
    b = Server(tmp_path / "b", config, database_url=postgres_url).start()
    try:
        key = a.new_key("default")
        with session(a, key=key) as (client, csrf):
            made = client.post("/dashboard/site/default/keys", data={"csrf": csrf, "label": "b"})
            assert made.status_code == 303
            assert "ff_" not in made.headers.get("set-cookie", "")  # sealed, not the secret
            shown = client.get(b.url + made.headers["location"])
            [secret] = re.findall(r'value="(ff_[0-9a-f]{12}_[^"]+)"', shown.text)
            with b.client(headers={"authorization": f"Bearer {secret}"}) as api:
                assert api.get("/api/reports/overview").status_code == 200
            again = client.get(a.url + made.headers["location"])
            assert secret not in again.text
            assert "Its secret is shown once only" in again.text
        # The sealed cookie opens for its own session only.
        sealed = made.cookies.get("footfall_new_key")
        assert sealed
        with session(b, key=key) as (stranger, _):
            stranger.cookies.set("footfall_new_key", sealed, path="/dashboard/site/default")
            page = stranger.get("/dashboard/site/default?done=key-created")
            assert 'data-testid="new-key"' not in page.text
            assert secret not in page.text
    finally:
        for server in (a, b):
            assert server.stop() in CLEAN_EXIT


def test_the_admin_api_is_in_the_openapi_document(tenants: Tenants, fresh_ip: str) -> None:
    with tenants.server.client(fresh_ip) as api:
        paths = api.get("/openapi.json").json()["paths"]
    expected = {
        "/api/admin/sites": {"get", "post"},
        "/api/admin/sites/{site_id}": {"get", "patch"},
        "/api/admin/sites/{site_id}/keys": {"get", "post"},
        "/api/admin/keys/{key_id}": {"delete"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            operation = paths[path][method]
            assert operation["security"], (path, method)
            assert "401" in operation["responses"], (path, method)
    assert {"201", "409", "422"} <= set(paths["/api/admin/sites"]["post"]["responses"])
    assert "404" in paths["/api/admin/keys/{key_id}"]["delete"]["responses"]
