"""The server's side of footfall.js: the served script (minified, cached, within budget), the
HTTP renewal of the id cookie, and identify with an empty email clearing a form's email."""

from __future__ import annotations

import gzip
from http.cookies import SimpleCookie

import httpx
import pytest

from conftest import Server
from footfall.http.tracker import (
    COOKIE_MAX_AGE,
    SIZE_BUDGET_BYTES,
    build_tracker,
    registrable_domain,
)
from footfall.identity import IdentityGraph
from footfall.store import Store

TOKEN = "cookieToken_0123456789"


def test_tracker_is_served_minified_with_caching_headers(api: httpx.Client) -> None:
    plain = api.get("/footfall.js", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["cache-control"] == "public, max-age=3600"
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in plain.headers
    source = build_tracker().source
    assert len(plain.content) < len(source) * 0.75  # comments and indentation are gone
    assert b"footfall.consent" not in plain.content  # a comment-only phrase of the source
    assert b"getId:function()" in plain.content  # code survives, names stay readable

    zipped = api.get("/footfall.js", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.content == plain.content  # httpx decoded it
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2

    etag = plain.headers["etag"]
    again = api.get("/footfall.js", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_tracker_fits_the_size_budget() -> None:
    """SPEC: at most 6 KB minified and gzipped, consent screen and fingerprinting included."""
    asset = build_tracker()
    for part in ("fingerprint", "showConsent", "WEBGL_debug_renderer_info", "localStorage"):
        assert part.encode() in asset.minified, part
    size = len(gzip.compress(asset.minified, compresslevel=9))
    print(
        f"footfall.js: {len(asset.source)} B source, {len(asset.minified)} B minified, "
        f"{size} B minified+gzip (served: {len(asset.gzipped)} B)"
    )
    assert size <= SIZE_BUDGET_BYTES
    assert len(asset.gzipped) <= SIZE_BUDGET_BYTES


def test_registrable_domain() -> None:
    assert registrable_domain("stats.shop.co.uk") == "shop.co.uk"
    assert registrable_domain("WWW.Shop.Test") == "shop.test"
    assert registrable_domain("co.uk") is None
    assert registrable_domain("127.0.0.1") is None
    assert registrable_domain("[::1]") is None
    assert registrable_domain("localhost") is None


def _track(
    api: httpx.Client,
    *,
    host: str = "stats.shop.test",
    origin: str = "https://www.shop.test",
    cookie: str | None = TOKEN,
    token: str = TOKEN,
    query: str = "?cookie=footfall_id",
    ephemeral: bool = False,
    site: str = "",
) -> httpx.Response:
    headers = {"host": host, "origin": origin}
    if cookie is not None:
        headers["cookie"] = f"other=1; footfall_id={cookie}"
    answer = api.post(
        f"/api/analytics/track{query}{site}",
        headers=headers,
        content=f'{{"event":"visitor","token":"{token}","ephemeral":{str(ephemeral).lower()}}}',
    )
    assert answer.status_code == 200, answer.text
    return answer


def test_id_cookie_is_renewed_over_http_on_the_sites_own_domain(api: httpx.Client) -> None:
    """Safari keeps script-written cookies 7 days; Footfall on stats.shop.test renews it."""
    answer = _track(api)
    jar = SimpleCookie(answer.headers["set-cookie"])
    renewed = jar["footfall_id"]
    assert renewed.value == TOKEN
    assert renewed["domain"] == "shop.test"
    assert renewed["max-age"] == str(COOKIE_MAX_AGE) == str(399 * 86400)
    assert renewed["path"] == "/"
    assert renewed["samesite"].lower() == "lax"
    assert renewed["secure"]  # the page is https
    assert not renewed["httponly"]  # the tracker reads it

    custom = _track(api, query="?cookie=shop_visitor", cookie=None)
    assert "set-cookie" not in custom.headers  # the request does not carry shop_visitor
    plain_page = _track(
        api, origin="https://shop.test", host="stats.shop.test:8443", query="?cookie=footfall_id"
    )
    assert "Domain=shop.test" in plain_page.headers["set-cookie"]


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("no cookie parameter (fingerprint and ephemeral modes)", {"query": ""}),
        ("ephemeral event", {"ephemeral": True}),
        ("cookie holds another id", {"cookie": "someoneElse_0123456"}),
        ("no cookie sent", {"cookie": None}),
        ("server on another site", {"host": "footfall.example.org"}),
        ("server on an IP address", {"host": "127.0.0.1:8000"}),
        ("page on another site", {"origin": "https://other.test", "site": "&site=other"}),
        ("bad cookie name", {"query": "?cookie=foot%3Bfall"}),
    ],
)
def test_id_cookie_is_not_renewed(
    api: httpx.Client, case: str, overrides: dict[str, object]
) -> None:
    answer = _track(api, **overrides)  # type: ignore[arg-type]
    assert "set-cookie" not in answer.headers, case


# --------------------------------------------------------------------------- email clearing


def _person(store: Store, kind: str, value: str) -> int:
    rows = store.query(
        "SELECT person_id FROM identity_nodes WHERE kind = ? AND value = ? "
        "ORDER BY valid_from DESC LIMIT 1",
        [kind, value],
    )
    return int(rows[0][0])


def test_empty_form_email_clears_the_stale_email(store: Store) -> None:
    """A second submission with an empty email field: the token is no longer that email."""
    graph = IdentityGraph(store)
    first = graph.identify("default", TOKEN, email=" Jane@Example.test ")
    assert first.merged
    assert _person(store, "token", TOKEN) == _person(store, "email", "jane@example.test")

    cleared = graph.identify("default", TOKEN, email="")
    assert cleared.cleared_email
    assert _person(store, "token", TOKEN) != _person(store, "email", "jane@example.test")
    assert graph.explain("default", TOKEN, "jane@example.test") is None
    log = store.query(
        "SELECT action, a_kind, a_value, b_kind, b_value, rule FROM link_log "
        "WHERE action = 'unlink' ORDER BY seq"
    )
    assert log == [("unlink", "token", TOKEN, "email", "jane@example.test", "email-cleared")]
    nodes = store.query(
        "SELECT person_id, valid_from > TIMESTAMP '1970-01-01', valid_to < TIMESTAMP '9999-01-01' "
        "FROM identity_nodes WHERE kind = 'token' AND value = ? ORDER BY valid_from",
        [TOKEN],
    )
    # The earlier node keeps the token's past (it was Jane then) and ends where the new begins.
    assert len(nodes) == 2
    assert nodes[0][0] == _person(store, "email", "jane@example.test")
    assert nodes[0][2]  # the old node ends...
    assert nodes[1][1]  # ...where the new one begins

    again = graph.identify("default", TOKEN, email="   ")
    assert not again.cleared_email  # nothing left to clear: no further node
    assert len(store.query("SELECT 1 FROM identity_nodes WHERE value = ?", [TOKEN])) == 2

    relinked = graph.identify("default", TOKEN, email="jane@example.test")
    assert relinked.merged
    assert _person(store, "token", TOKEN) == _person(store, "email", "jane@example.test")


def test_empty_email_leaves_explicit_links_and_client_ids(store: Store) -> None:
    graph = IdentityGraph(store)
    graph.alias("default", f"token:{TOKEN}", "email:ops@example.test")
    graph.identify("default", TOKEN, client_id="user-7")
    result = graph.identify("default", TOKEN, client_id="user-7", email="")
    assert not result.cleared_email  # only emails linked by identify are a form's to clear
    token_person = _person(store, "token", TOKEN)
    assert token_person == _person(store, "email", "ops@example.test")
    assert token_person == _person(store, "client_id", "user-7")

    untouched = graph.identify("default", "freshToken_000000", email="")
    assert not untouched.cleared_email
    assert untouched.person_id == _person(store, "token", "freshToken_000000")


def test_identify_api_clears_with_an_empty_email(fresh_server: Server) -> None:
    with fresh_server.client("10.77.0.1", headers={"origin": "https://www.shop.test"}) as api:
        for email in ("sam@example.test", ""):
            answer = api.post("/api/identify", json={"token": TOKEN, "user": {"email": email}})
            assert answer.status_code == 200, answer.text
    fresh_server.stop()
    rows = fresh_server.rows(
        "SELECT action, b_value, rule FROM link_log WHERE a_value = ? ORDER BY seq", [TOKEN]
    )
    assert rows == [
        ("link", "sam@example.test", "identify"),
        ("unlink", "sam@example.test", "email-cleared"),
    ]
