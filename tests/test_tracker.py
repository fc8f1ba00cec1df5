"""footfall.js in headless Chromium against a real ``footfall serve`` and its DuckDB file.

Pages come from a small static server on 127.0.0.1; Chromium resolves *.shop.test and
*.other.test to 127.0.0.1, so a page at http://www.shop.test:PORT loads the tracker from the
Footfall server at http://stats.shop.test:PORT (the site's own domain). Nothing leaves the
loopback interface. Server-side facts are read from the stopped server's DuckDB file, or
while it runs from its /metrics and keyed API.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Response,
    Route,
    sync_playwright,
)

from conftest import Server, launch_chromium

# The test sites' names all lead to this machine, over plain http.
SITE_ARGS = (
    "--disable-features=HttpsUpgrades",
    "--host-resolver-rules=MAP *.shop.test 127.0.0.1, MAP *.other.test 127.0.0.1",
)
TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")  # 128 random bits are 22 base64url characters
WAIT_S = 30.0
SECONDS_399_DAYS = 399 * 86400


# --------------------------------------------------------------------------- fixtures


class PageServer:
    """Serves the test pages (any Host name) from a dict; loopback only."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.send_header("cache-control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright, *SITE_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(WAIT_S * 1000)
    yield ctx
    ctx.close()


def _config(pages: PageServer) -> str:
    port = pages.port
    return f"""
default_site = "default"
allowed_origins = ["http://*.shop.test:{port}", "http://*.other.test:{port}"]
"""


@pytest.fixture
def footfall(tmp_path: Path, pages: PageServer) -> Iterator[Server]:
    """A Footfall server of the test's own; stop it to read what it stored."""
    srv = Server(tmp_path / "footfall", config=_config(pages)).start()
    yield srv
    if srv.process is not None:
        srv.stop()


@pytest.fixture
def keyed_footfall(tmp_path: Path, pages: PageServer) -> Iterator[tuple[Server, str]]:
    """A Footfall server and an API key of its default site (for the keyed person API)."""
    srv = Server(tmp_path / "footfall", config=_config(pages))
    key = srv.start_with_key()
    yield srv, key
    if srv.process is not None:
        srv.stop()


# --------------------------------------------------------------------------- helpers


def tracker_page(
    srv: Server,
    site: str = "shop.test",
    attrs: dict[str, str] | None = None,
    head: str = "",
    body: str = "",
) -> str:
    """A page embedding footfall.js from the Footfall server on the site's own domain."""
    attributes = " ".join(f'{k}="{html.escape(v)}"' for k, v in (attrs or {}).items())
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>test page</title>'
        f'{head}<script async src="http://stats.{site}:{srv.port}/footfall.js" '
        f'data-site-id="default" {attributes}></script></head><body>{body}</body></html>'
    )


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    wait_loaded(page)
    return page


def wait_loaded(page: Page) -> None:
    page.wait_for_function("() => window.footfall && typeof window.footfall.getId === 'function'")


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def metric(srv: Server, name: str, **labels: str) -> float:
    """A counter from the running server's /metrics (0 when it has no such series yet)."""
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    series = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_committed(srv: Server, event: str, count: int) -> None:
    wait_until(
        lambda: metric(srv, "footfall_events_committed_total", event=event) >= count,
        f"{count} committed {event} event(s)",
    )


def wait_identified(srv: Server, count: int) -> None:
    wait_until(
        lambda: (
            metric(srv, "footfall_http_responses_total", route="/api/identify", status="200")
            >= count
        ),
        f"{count} identify call(s)",
    )


def stored_events(srv: Server) -> list[dict[str, Any]]:
    """Every stored event, oldest first (the server must be stopped)."""
    names = ("event", "token", "ephemeral", "ab_group", "url", "data", "ts", "received_at")
    rows = srv.rows(f"SELECT {', '.join(names)} FROM events ORDER BY ts, event_id")  # noqa: S608
    out = []
    for row in rows:
        record = dict(zip(names, row, strict=True))
        record["data"] = json.loads(record["data"])
        out.append(record)
    return out


def cookies(context: BrowserContext) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in context.cookies()}


def consent_screen(page: Page) -> bool:
    return bool(page.evaluate("() => !!document.querySelector('footfall-consent')"))


def same_person(srv: Server, key: str, a: str, b: str) -> bool:
    answer = httpx.get(
        srv.url + "/api/identity/explain",
        params={"a": a, "b": b},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["same_person"])


# --------------------------------------------------------------------------- cookie mode


def test_cookie_id_is_shared_by_subdomains_and_not_by_another_site(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    pages.pages["/cookie.html"] = tracker_page(footfall)
    pages.pages["/other.html"] = tracker_page(footfall, site="other.test")
    answers: list[Response] = []
    context.on("response", lambda r: answers.append(r) if "/track" in r.url else None)

    shop = open_page(context, pages.url("www.shop.test", "/cookie.html"))
    shop_id = shop.evaluate("footfall.getId()")
    assert TOKEN.fullmatch(shop_id)
    stored = cookies(context)["footfall_id"]
    assert stored["value"] == shop_id
    assert stored["domain"] == ".shop.test"  # the registrable domain, not www.shop.test
    assert stored["path"] == "/"
    assert stored["sameSite"] == "Lax"
    assert not stored["secure"]  # the page is plain http
    assert abs(stored["expires"] - time.time() - SECONDS_399_DAYS) < 3600

    help_page = open_page(context, pages.url("help.shop.test", "/cookie.html"))
    assert help_page.evaluate("footfall.getId()") == shop_id
    shop.reload()
    wait_loaded(shop)
    assert shop.evaluate("footfall.getId()") == shop_id

    other = open_page(context, pages.url("www.other.test", "/other.html"))
    other_id = other.evaluate("footfall.getId()")
    assert TOKEN.fullmatch(other_id)
    assert other_id != shop_id
    domains = {c["domain"] for c in context.cookies() if c["name"] == "footfall_id"}
    assert domains == {".shop.test", ".other.test"}

    wait_committed(footfall, "visitor", 4)
    # The server runs on the site's own domain (stats.shop.test): it renewed the cookie.
    renewals = [a.all_headers().get("set-cookie", "") for a in answers]
    assert any("Domain=shop.test" in h and f"Max-Age={SECONDS_399_DAYS}" in h for h in renewals)
    assert any("Domain=other.test" in h for h in renewals)
    footfall.stop()
    visits = [(e["token"], e["url"], e["ephemeral"]) for e in stored_events(footfall)]
    port = pages.port
    assert sorted(visits) == sorted(
        [
            (shop_id, f"http://www.shop.test:{port}/cookie.html", False),
            (shop_id, f"http://help.shop.test:{port}/cookie.html", False),
            (shop_id, f"http://www.shop.test:{port}/cookie.html", False),
            (other_id, f"http://www.other.test:{port}/other.html", False),
        ]
    )


def test_ab_test_puts_the_last_character_in_a_group(
    footfall: Server, pages: PageServer, browser: Browser
) -> None:
    pages.pages["/ab.html"] = tracker_page(footfall, attrs={"data-ab-test": "true"})
    ids = []
    for _ in range(6):
        ctx = browser.new_context()
        page = open_page(ctx, pages.url("www.shop.test", "/ab.html"))
        ids.append(page.evaluate("footfall.getId()"))
        ctx.close()
    assert all(TOKEN.fullmatch(i) and i[-1] in "01" for i in ids)
    assert len(set(ids)) == 6
    wait_committed(footfall, "visitor", 6)
    footfall.stop()
    groups = {e["token"]: e["ab_group"] for e in stored_events(footfall)}
    assert groups == {i: "control" if i[-1] == "0" else "test" for i in ids}


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_id_survives_new_contexts_and_wins_over_the_cookie(
    footfall: Server, pages: PageServer, browser: Browser
) -> None:
    fingerprint_only = {
        "data-user-analytics-fingerprint-enabled": "true",
        "data-user-analytics-cookie-enabled": "false",
    }
    pages.pages["/fp.html"] = tracker_page(footfall, attrs=fingerprint_only)
    both = {"data-user-analytics-fingerprint-enabled": "true"}  # the cookie is on by default
    pages.pages["/both.html"] = tracker_page(footfall, attrs=both)
    pages.pages["/cookie.html"] = tracker_page(footfall)

    first = browser.new_context()
    fp_id = open_page(first, pages.url("www.shop.test", "/fp.html")).evaluate("footfall.getId()")
    assert TOKEN.fullmatch(fp_id)
    first.clear_cookies()
    first.close()

    fresh = browser.new_context()
    assert not fresh.cookies()
    page = open_page(fresh, pages.url("www.other.test", "/fp.html"))  # across domains, too
    assert page.evaluate("footfall.getId()") == fp_id
    page = open_page(fresh, pages.url("www.shop.test", "/both.html"))
    assert page.evaluate("footfall.getId()") == fp_id  # fingerprint takes precedence
    assert "footfall_id" not in cookies(fresh)
    fresh.close()

    # Another device (screen) is another fingerprint; the cookie mode's id is random.
    other_device = browser.new_context(screen={"width": 1920, "height": 1200})
    other_id = open_page(other_device, pages.url("www.shop.test", "/fp.html")).evaluate(
        "footfall.getId()"
    )
    assert TOKEN.fullmatch(other_id)
    assert other_id != fp_id
    other_device.close()

    wait_committed(footfall, "visitor", 4)
    footfall.stop()
    tokens = [(e["token"], e["ephemeral"]) for e in stored_events(footfall)]
    assert sorted(tokens) == sorted([(fp_id, False)] * 3 + [(other_id, False)])


# --------------------------------------------------------------------------- ephemeral


def test_both_disabled_writes_no_cookie_and_sends_no_persistent_id(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    off = {
        "data-user-analytics-cookie-enabled": "false",
        "data-user-analytics-fingerprint-enabled": "false",
    }
    user = (
        "<script>window.footfallSettings = {user: {uniqueClientId: 'client-42', "
        "email: 'kim@example.test', metadata: {first_name: 'Kim'}}};</script>"
    )
    pages.pages["/off.html"] = tracker_page(footfall, attrs=off, head=user)

    page = open_page(context, pages.url("www.shop.test", "/off.html"))
    first_id = page.evaluate("footfall.getId()")
    page.evaluate("footfall.track('bot_open', {open_way: 'chat_button'})")
    page.reload()
    wait_loaded(page)
    second_id = page.evaluate("footfall.getId()")
    page.evaluate("footfall.track('message_sent', {text: 'do you ship to Norway?'})")
    assert first_id != second_id  # lives in page memory only
    assert context.cookies() == []
    assert page.evaluate("Object.keys(localStorage)") == []

    wait_committed(footfall, "message_sent", 1)
    wait_identified(footfall, 2)  # explicit user data is still sent, once per page view
    footfall.stop()
    events = stored_events(footfall)
    assert [(e["event"], e["token"], e["ephemeral"]) for e in events] == [
        ("visitor", first_id, True),
        ("bot_open", first_id, True),
        ("visitor", second_id, True),
        ("message_sent", second_id, True),
    ]
    nodes = footfall.rows("SELECT kind, value FROM identity_nodes ORDER BY kind")
    assert nodes == [("client_id", "client-42"), ("email", "kim@example.test")]  # no token


# --------------------------------------------------------------------------- consent


CONSENT = {
    "data-consent-required": "true",
    "data-consent-screen-title": "Help us improve the assistant",
    "data-consent-screen-disclaimer": "An anonymous id, nothing about you.",
    "data-consent-screen-accept-button-text": "Yes, allow",
    "data-consent-screen-reject-button-text": "No, thanks",
}


def test_consent_accept_persists_the_id_and_revoke_deletes_it(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    pages.pages["/consent.html"] = tracker_page(footfall, attrs=CONSENT)
    page = open_page(context, pages.url("www.shop.test", "/consent.html"))
    before = page.evaluate("footfall.getId()")
    assert not consent_screen(page)  # shown before the first interaction, not on load
    page.evaluate("footfall.track('bot_open', {open_way: 'chat_button'})")
    dialog = page.locator("footfall-consent [role=dialog]")
    dialog.wait_for()
    assert dialog.locator("h2").inner_text() == "Help us improve the assistant"
    assert dialog.locator("p").inner_text() == "An anonymous id, nothing about you."
    assert context.cookies() == []  # nothing persistent before the choice
    assert page.evaluate("Object.keys(localStorage)") == []

    dialog.get_by_role("button", name="Yes, allow").click()
    assert not consent_screen(page)
    jar = cookies(context)
    assert jar["footfall_consent"]["value"] == "1"
    accepted = jar["footfall_id"]["value"]
    assert page.evaluate("footfall.getId()") == accepted != before

    page.reload()
    wait_loaded(page)
    assert page.evaluate("footfall.getId()") == accepted  # the decision survived the reload
    # Its answer renews the id cookie (Set-Cookie): let it arrive before the revoke, so
    # it cannot set the cookie again after the revoke has deleted it.
    with page.expect_response(lambda answer: "/api/analytics/track" in answer.url):
        page.evaluate("footfall.track('message_sent', {text: 'hello'})")
    assert not consent_screen(page)

    page.evaluate("footfall.consent.revoke()")
    # The answer to message_sent may still renew the id cookie (Set-Cookie) after the
    # revoke; the tracker deletes it again as that answer settles: wait for that, bounded.
    page.wait_for_function(
        "!document.cookie.split('; ').some(c => c.startsWith('footfall_id='))", timeout=10_000
    )
    jar = cookies(context)
    assert "footfall_id" not in jar
    assert jar["footfall_consent"]["value"] == "0"
    after = page.evaluate("footfall.getId()")
    assert after != accepted
    page.evaluate("footfall.track('message_like')")

    wait_committed(footfall, "message_like", 1)
    footfall.stop()
    assert [(e["event"], e["token"], e["ephemeral"]) for e in stored_events(footfall)] == [
        ("visitor", before, True),
        ("bot_open", accepted, False),  # held until the choice, then sent with the id
        ("visitor", accepted, False),
        ("message_sent", accepted, False),
        ("message_like", after, True),
    ]


def hold_next_track(page: Page, action: str) -> Route:
    """Run ``action`` in the page and keep the tracking request it makes in flight."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/api/analytics/track*", hold, times=1)
    page.evaluate(action)
    for _ in range(int(WAIT_S * 20)):
        if held:
            break
        page.wait_for_timeout(50)  # lets Playwright deliver the intercepted request
    assert held, f"no tracking request after {action}"
    return held[0]


def answer_late(page: Page, route: Route, cookie: str) -> None:
    """Let a held request reach the server as sent before the page changed its mind (with
    the old id cookie), and check the answer did renew that cookie."""
    url = urlsplit(route.request.url)
    headers = {**route.request.headers, "host": url.netloc, "cookie": f"footfall_id={cookie}"}
    # Playwright's own client does not know Chromium's host mapping: ask 127.0.0.1 by name.
    answer = route.fetch(url=url._replace(netloc=f"127.0.0.1:{url.port}").geturl(), headers=headers)
    assert f"footfall_id={cookie};" in answer.headers.get("set-cookie", "")
    route.fulfill(response=answer)


def test_a_late_renewal_does_not_undo_reset_or_revoke(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    """An answer that renews the id cookie may arrive after reset() or revoke(): the page's
    later choice wins (the cookie holds the new id, or stays deleted)."""
    pages.pages["/late.html"] = tracker_page(footfall)
    page = open_page(context, pages.url("www.shop.test", "/late.html"))
    first = page.evaluate("footfall.getId()")
    assert cookies(context)["footfall_id"]["value"] == first

    in_flight = hold_next_track(page, "footfall.track('bot_open')")
    page.evaluate("footfall.reset()")
    second = page.evaluate("footfall.getId()")
    assert second != first
    answer_late(page, in_flight, first)
    page.wait_for_function(f"() => document.cookie.includes('footfall_id={second}')")
    assert cookies(context)["footfall_id"]["value"] == second

    in_flight = hold_next_track(page, "footfall.track('message_sent', {text: 'hi'})")
    page.evaluate("footfall.consent.revoke()")
    answer_late(page, in_flight, second)
    page.wait_for_function("() => !document.cookie.includes('footfall_id=')")
    assert "footfall_id" not in cookies(context)
    assert cookies(context)["footfall_consent"]["value"] == "0"


def test_consent_reject_stays_ephemeral_across_reloads(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    pages.pages["/consent.html"] = tracker_page(footfall, attrs=CONSENT)
    page = open_page(context, pages.url("www.shop.test", "/consent.html"))
    page.evaluate("footfall.track('bot_open', {open_way: 'popup'})")
    page.get_by_role("button", name="No, thanks").click()
    assert not consent_screen(page)
    assert set(cookies(context)) == {"footfall_consent"}
    assert cookies(context)["footfall_consent"]["value"] == "0"
    first = page.evaluate("footfall.getId()")

    page.reload()
    wait_loaded(page)
    page.evaluate("footfall.track('convo_started')")
    assert not consent_screen(page)  # the rejection was remembered
    second = page.evaluate("footfall.getId()")
    assert second != first
    assert set(cookies(context)) == {"footfall_consent"}

    page.evaluate("footfall.consent.show()")  # the visitor changes their mind
    page.get_by_role("button", name="Yes, allow").click()
    accepted = cookies(context)["footfall_id"]["value"]
    page.evaluate("footfall.track('message_sent', {text: 'now with an id'})")

    wait_committed(footfall, "message_sent", 1)
    footfall.stop()
    assert [(e["event"], e["token"], e["ephemeral"]) for e in stored_events(footfall)] == [
        ("visitor", first, True),
        ("bot_open", first, True),
        ("visitor", second, True),
        ("convo_started", second, True),
        ("message_sent", accepted, False),
    ]


def test_consent_dialog_closes_without_a_choice(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    """The dialog never traps the page: Escape or a click beside it closes it, undecided."""
    pages.pages["/consent.html"] = tracker_page(footfall, attrs=CONSENT)
    page = open_page(context, pages.url("www.shop.test", "/consent.html"))
    token = page.evaluate("footfall.getId()")
    page.evaluate("footfall.track('bot_open', {open_way: 'chat_button'})")
    page.locator("footfall-consent [role=dialog]").wait_for()
    page.keyboard.press("Escape")
    assert not consent_screen(page)
    page.evaluate("footfall.track('convo_started')")
    assert not consent_screen(page)  # not again on this page
    page.evaluate("footfall.consent.show()")
    page.locator("footfall-consent [role=dialog]").wait_for()
    page.mouse.click(5, 5)  # on the backdrop
    assert not consent_screen(page)
    assert context.cookies() == []

    wait_committed(footfall, "convo_started", 1)
    footfall.stop()
    assert [(e["event"], e["token"], e["ephemeral"]) for e in stored_events(footfall)] == [
        ("visitor", token, True),
        ("bot_open", token, True),
        ("convo_started", token, True),
    ]


def test_global_privacy_control_means_reject_unless_turned_off(
    footfall: Server, pages: PageServer, browser: Browser
) -> None:
    pages.pages["/gpc.html"] = tracker_page(footfall)
    pages.pages["/gpc-ignored.html"] = tracker_page(footfall, attrs={"data-respect-gpc": "false"})
    ctx = browser.new_context()
    # Chromium has no GPC switch: the signal is given the way browsers that have it expose it.
    ctx.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    page = open_page(ctx, pages.url("www.shop.test", "/gpc.html"))
    page.evaluate("footfall.track('bot_open', {open_way: 'chat_button'})")
    assert not consent_screen(page)
    assert ctx.cookies() == []
    respected = page.evaluate("footfall.getId()")

    page = open_page(ctx, pages.url("www.shop.test", "/gpc-ignored.html"))
    ignored = page.evaluate("footfall.getId()")
    assert cookies(ctx)["footfall_id"]["value"] == ignored
    ctx.close()

    wait_committed(footfall, "visitor", 2)
    footfall.stop()
    assert [(e["event"], e["token"], e["ephemeral"]) for e in stored_events(footfall)] == [
        ("visitor", respected, True),
        ("bot_open", respected, True),
        ("visitor", ignored, False),
    ]


# --------------------------------------------------------------------------- user data


def test_footfall_settings_user_is_identified_whenever_it_changes(
    keyed_footfall: tuple[Server, str], pages: PageServer, context: BrowserContext
) -> None:
    srv, key = keyed_footfall
    settings = (
        "<script>window.footfallSettings = {user: {uniqueClientId: 'user-123', "
        "metadata: {company_name: 'Acme Corp', first_name: 'Jane'}}};</script>"
    )
    pages.pages["/user.html"] = tracker_page(srv, head=settings)
    page = open_page(context, pages.url("www.shop.test", "/user.html"))
    token = page.evaluate("footfall.getId()")
    wait_until(lambda: same_person(srv, key, token, "user-123"), "token linked to user-123")

    page.evaluate("window.footfallSettings.user.email = 'Jane@Acme.test'")  # a change inside
    wait_until(lambda: same_person(srv, key, token, "jane@acme.test"), "token linked to email")
    profile = httpx.get(
        f"{srv.url}/api/persons/user-123", headers={"authorization": f"Bearer {key}"}
    ).json()
    assert profile["metadata"] == {"company_name": "Acme Corp", "first_name": "Jane"}

    page.evaluate("footfall.identify({metadata: {plan: 'pro'}})")
    page.evaluate("footfall.reset()")  # logout: a new anonymous id, user data forgotten
    new_token = page.evaluate("footfall.getId()")
    assert new_token != token
    assert cookies(context)["footfall_id"]["value"] == new_token
    assert page.evaluate("window.footfallSettings.user") is None
    page.evaluate("footfall.track('bot_open', {open_way: 'chat_button'})")
    wait_committed(srv, "bot_open", 1)
    assert not same_person(srv, key, new_token, "user-123")
    wait_until(
        lambda: (
            httpx.get(
                f"{srv.url}/api/persons/user-123", headers={"authorization": f"Bearer {key}"}
            ).json()["metadata"]
            == {"company_name": "Acme Corp", "first_name": "Jane", "plan": "pro"}
        ),
        "metadata from footfall.identify",
    )


# --------------------------------------------------------------------------- form mode


FORM_ATTRS = {
    "data-form-selector": "#support",
    "data-user-email-query-selector": "#email",
}
FORM = (
    '<form id="support" action="/thanks.html" method="get" '
    'onsubmit="return !window.stayOnPage">'
    '<input id="email" name="email" type="email"><textarea id="q" name="q"></textarea>'
    "<button>Send</button></form>"
)


def test_form_email_links_the_token_and_an_empty_submission_clears_it(
    keyed_footfall: tuple[Server, str], pages: PageServer, context: BrowserContext
) -> None:
    srv, key = keyed_footfall
    pages.pages["/form.html"] = tracker_page(srv, attrs=FORM_ATTRS, body=FORM)
    pages.pages["/thanks.html"] = tracker_page(srv, body="<p>Thanks!</p>")
    page = open_page(context, pages.url("help.shop.test", "/form.html"))
    token = page.evaluate("footfall.getId()")

    page.fill("#email", "  Jane@Example.test ")
    page.fill("#q", "My boots are the wrong size")
    with page.expect_navigation():
        page.click("button")  # a real submission: the page is left at once
    wait_loaded(page)
    wait_until(
        lambda: same_person(srv, key, token, "jane@example.test"), "token linked to the email"
    )

    page.goto(pages.url("help.shop.test", "/form.html"))
    wait_loaded(page)
    assert page.evaluate("footfall.getId()") == token
    page.evaluate("window.stayOnPage = true")
    page.fill("#email", "")
    page.click("button")
    assert page.evaluate("window.footfallSettings.user.email") == ""
    wait_until(lambda: not same_person(srv, key, token, "jane@example.test"), "the email cleared")
    page.evaluate("footfall.track('message_sent', {text: 'after clearing'})")
    wait_committed(srv, "message_sent", 1)

    srv.stop()
    log = srv.rows(
        "SELECT action, b_kind, b_value, rule FROM link_log WHERE a_value = ? AND "
        "b_value = 'jane@example.test' ORDER BY seq",
        [token],
    )
    assert log == [
        ("link", "email", "jane@example.test", "identify"),
        ("unlink", "email", "jane@example.test", "email-cleared"),
    ]
    # What the token did while it was Jane's stays Jane's; what it does now does not.
    persons = srv.rows(
        "SELECT e.event, e.person_id = (SELECT person_id FROM identity_nodes "
        "WHERE kind = 'email' AND value = 'jane@example.test') FROM event_persons e "
        "WHERE e.token = ? ORDER BY e.ts, e.event_id",
        [token],
    )
    assert persons[0] == ("visitor", True)  # the form page, before the first submission
    assert persons[-1] == ("message_sent", False)


def test_email_selector_reads_the_text_of_other_elements(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    attrs = {"data-user-email-query-selector": "#account .email"}
    earlier = "<script>window.footfallSettings = {user: {email: 'old@example.test'}};</script>"
    body = (
        '<div id="account">Signed in as <span class="email"> Lee@Example.test </span></div>'
        '<form id="f" onsubmit="return false"><button>Send</button></form>'
    )
    pages.pages["/text.html"] = tracker_page(footfall, attrs=attrs, head=earlier, body=body)
    page = open_page(context, pages.url("www.shop.test", "/text.html"))
    with page.expect_request(
        lambda r: "/api/identify" in r.url and "Lee@" in (r.post_data or "")
    ) as sent:
        page.click("button")
    assert page.evaluate("window.footfallSettings.user.email") == "Lee@Example.test"  # it wins
    body_sent = json.loads(sent.value.post_data or "{}")
    assert body_sent["user"]["email"] == "Lee@Example.test"
    assert body_sent["token"] == page.evaluate("footfall.getId()")
    assert body_sent["ephemeral"] is False


# --------------------------------------------------------------------------- delivery


def test_event_sent_just_before_leaving_the_page_arrives(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    link = (
        '<a id="go" href="/next.html" '
        "onclick=\"footfall.track('click_through', {target: 'next-page'})\">next</a>"
    )
    pages.pages["/leave.html"] = tracker_page(footfall, body=link)
    pages.pages["/next.html"] = "<!doctype html><title>next</title><p>no tracker here</p>"
    page = open_page(context, pages.url("www.shop.test", "/leave.html"))
    token = page.evaluate("footfall.getId()")
    with page.expect_navigation():
        page.click("#go")
    page.wait_for_selector("text=no tracker here")

    wait_committed(footfall, "click_through", 1)
    footfall.stop()
    clicks = [e for e in stored_events(footfall) if e["event"] == "click_through"]
    assert [(e["token"], e["data"]) for e in clicks] == [(token, {"target": "next-page"})]


def test_events_sent_while_the_server_is_down_arrive_after_it_returns(
    footfall: Server, pages: PageServer, context: BrowserContext
) -> None:
    pages.pages["/retry.html"] = tracker_page(footfall)
    page = open_page(context, pages.url("www.shop.test", "/retry.html"))
    token = page.evaluate("footfall.getId()")
    wait_committed(footfall, "visitor", 1)

    footfall.stop()
    page.evaluate("footfall.track('message_sent', {text: 'sent while you were away'})")
    page.wait_for_function("() => (localStorage.getItem('footfall_queue') || '').includes('away')")

    footfall.start(keep_port=True)
    wait_committed(footfall, "message_sent", 1)  # retried with backoff, no help from the test
    page.wait_for_function("() => localStorage.getItem('footfall_queue') === null")
    footfall.stop()
    sent = [e for e in stored_events(footfall) if e["event"] == "message_sent"]
    assert len(sent) == 1
    assert sent[0]["token"] == token
    assert sent[0]["data"] == {"text": "sent while you were away"}
    assert sent[0]["ts"] < sent[0]["received_at"]  # it keeps the time it happened


# --------------------------------------------------------------------------- demo pages


def test_demo_pages_emit_the_widget_and_form_events(
    tmp_path: Path, browser: Browser, context: BrowserContext
) -> None:
    """The examples/ pages, served by ``footfall serve --demo``, drive a whole session.

    With FOOTFALL_SCREENSHOTS=<dir> set, the screenshots of the docs are written there.
    """
    shots = os.environ.get("FOOTFALL_SCREENSHOTS")
    demo = 'default_site = "default"\nallowed_origins = ["*"]\ndemo = true\n'
    srv = Server(tmp_path / "demo", config=demo).start()
    try:
        base = f"http://www.shop.test:{srv.port}/demo"
        newcomer = browser.new_context(viewport={"width": 1280, "height": 760})
        first_form = open_page(newcomer, f"{base}/support.html")
        # Form mode: the consent card sits above the form from the start.
        card = first_form.locator("footfall-consent [role=dialog]")
        card.wait_for()
        assert card.locator("h2").inner_text() == "Can we remember this browser?"
        if shots:
            first_form.screenshot(path=f"{shots}/consent-form.png")
        newcomer.close()

        page = open_page(context, f"{base}/shop.html")
        page.set_viewport_size({"width": 1280, "height": 760})
        page.click("#launcher")
        page.locator("footfall-consent [role=dialog]").wait_for()
        if shots:
            page.screenshot(path=f"{shots}/consent-widget.png")
        page.get_by_role("button", name="Allow tracking").click()
        token = page.evaluate("footfall.getId()")
        page.fill("#question", "Which boots size should I take?")
        page.press("#question", "Enter")
        page.get_by_role("button", name="Helpful", exact=True).click()
        page.get_by_role("link", name="Add the Scree mid boots to my cart").click()
        page.fill("#question", "How long does delivery take?")
        page.press("#question", "Enter")
        if shots:
            page.screenshot(path=f"{shots}/demo-shop.png")
        page.click("#close")
        page.get_by_role("button", name="Buy now").click()
        page.get_by_text("is on its way").wait_for()

        form = open_page(context, f"{base}/support.html")
        form.set_viewport_size({"width": 1280, "height": 760})
        assert not consent_screen(form)  # decided on the shop: the site shares the choice
        assert form.evaluate("footfall.getId()") == token
        form.fill("#email", "jane@example.test")
        form.fill("#question", "My boots arrived in the wrong size")
        if shots:
            form.screenshot(path=f"{shots}/demo-support.png")
        form.click("text=Send request")
        form.get_by_text("we got your request").wait_for()

        wait_committed(srv, "message_sent", 3)
        wait_identified(srv, 1)
        srv.stop()
        events = [e for e in stored_events(srv) if e["token"] == token]
        kinds = {e["event"] for e in events}
        assert {
            "bot_open",
            "convo_started",
            "message_sent",
            "message_like",
            "click_through",
            "added_to_cart",
            "purchase",
        } <= kinds
        texts = [e["data"].get("text") for e in events if e["event"] == "message_sent"]
        assert "Which boots size should I take?" in texts
        assert all(not e["ephemeral"] for e in events)
        linked = srv.rows(
            "SELECT count(DISTINCT person_id) FROM identity_nodes "
            "WHERE (kind = 'token' AND value = ?) OR (kind = 'email' AND value = ?)",
            [token, "jane@example.test"],
        )
        assert linked == [(1,)]
    finally:
        if srv.process is not None:
            srv.stop()
