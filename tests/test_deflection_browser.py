"""The issue's acceptance: a support form using footfall.js's attributes only, driven in
headless Chromium by the four visitors and one who refuses consent, against a real
``footfall serve`` on DuckDB and on PostgreSQL; the deflection totals read through the
API, the CLI (remote and on the database itself) and the dashboard are the hand-computed
ones.

Hand-computed (one form ``support`` on the default site):
- V1 sees an answer and leaves: 1 session, answered, deflected;
- V2 sees an answer and submits: 1 session, answered, a ticket;
- V3 gets no answer and submits: 1 session, a ticket;
- V4 (logged in as client-d) sees an answer and leaves; from another browser as client-d
  V4 files the ticket: 2 sessions, the first answered and deferred, the second a ticket;
- V5 rejects consent and sees an answer: 1 ephemeral session, counted apart.
Totals: sessions 5, answered 3, tickets 3, deflected 1, deferred 1, deflection rate 1/3;
ephemeral: 1 session, 1 answered, no ticket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from conftest import Server, launch_chromium
from test_tracker import SITE_ARGS, PageServer, metric, tracker_page, wait_loaded, wait_until

WAIT_S = 30.0
ATTRS = {
    "data-form-selector": "#support",
    "data-question-selector": "#q",
    "data-answer-selector": "#answer",
    "data-user-email-query-selector": "#email",
    "data-consent-required": "true",
}
FORM = (
    '<form id="support" action="/thanks.html" method="get">'
    '<input id="email" name="email" type="email"><textarea id="q" name="q"></textarea>'
    '<button type="button" id="ask" onclick="document.getElementById(\'answer\').hidden = false">'
    'Ask</button><button type="submit" id="send">Send request</button></form>'
    '<div id="answer" hidden data-answer-id="kb-12" data-chatbot-id="bot-a">'
    'Track your parcel here. <button id="helpful" onclick="footfall.track(\'message_like\')">'
    "Helpful</button></div>"
)
LOGGED_IN = "<script>window.footfallSettings = {user: {uniqueClientId: 'client-d'}};</script>"
TOTALS = {
    "sessions": 5,
    "answered": 3,
    "tickets": 3,
    "deflected": 1,
    "deferred": 1,
    "deflection_rate": 0.333333,
}
EPHEMERAL = {"sessions": 1, "answered": 1, "tickets": 0, "answered_without_ticket": 1}


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


@pytest.fixture(params=["duckdb", "postgresql"])
def footfall(
    request: pytest.FixtureRequest, tmp_path: Path, pages: PageServer
) -> Iterator[tuple[Server, str]]:
    config = (
        'default_site = "default"\n'
        f'allowed_origins = ["http://*.shop.test:{pages.port}"]\n'
        "deflection_window_days = 7\n"
    )
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    srv = Server(tmp_path / "footfall", config=config, database_url=url)
    key = srv.start_with_key()
    yield srv, key
    if srv.process is not None:
        srv.stop()


def visit(
    browser: Browser, url: str, consent: str = "Allow tracking"
) -> tuple[BrowserContext, Page]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_S * 1000)
    page = context.new_page()
    page.goto(url)
    wait_loaded(page)
    page.locator("footfall-consent [role=dialog]").wait_for()
    page.get_by_role("button", name=consent).click()
    return context, page


def ask(page: Page, question: str) -> None:
    page.fill("#q", question)
    page.click("#ask")


def submit(page: Page, email: str) -> None:
    page.fill("#email", email)
    with page.expect_navigation():
        page.click("#send")


def committed(srv: Server, event: str) -> float:
    return metric(srv, "footfall_events_committed_total", event=event)


def report_via_api(srv: Server, key: str) -> dict[str, Any]:
    answer = httpx.get(
        srv.url + "/api/reports/deflection",
        headers={"authorization": f"Bearer {key}"},
        params={"days": "2"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def put_cost(srv: Server, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(
        srv.url + "/api/admin/sites/default/ticket-cost",
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )


def cli_report(srv: Server, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "footfall", "report", "deflection", "--days", "2", "--json", *args],
        env=srv.env,
        cwd=srv.workdir,
        capture_output=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def totals_of(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result["totals"][k] for k in TOTALS}


def test_four_visitors_of_a_support_form_give_the_hand_computed_totals(
    footfall: tuple[Server, str], pages: PageServer, browser: Browser
) -> None:
    srv, key = footfall
    pages.pages["/support.html"] = tracker_page(srv, attrs=ATTRS, body=FORM)
    pages.pages["/account/support.html"] = tracker_page(srv, attrs=ATTRS, head=LOGGED_IN, body=FORM)
    pages.pages["/thanks.html"] = tracker_page(srv, body="<p>We got your request.</p>")
    form = pages.url("help.shop.test", "/support.html")
    logged = pages.url("help.shop.test", "/account/support.html")

    v1, page = visit(browser, form)
    assert page.evaluate("footfall.group()") is None  # no data-ab-test on this page
    ask(page, "Where is my order?")
    page.click("#helpful")
    wait_until(lambda: committed(srv, "message_like") >= 1, "V1's like")
    v1.close()

    v2, page = visit(browser, form)
    ask(page, "Can I return my boots?")
    wait_until(lambda: committed(srv, "answer_shown") >= 2, "V2's answer")
    submit(page, "v2@example.test")
    v2.close()

    v3, page = visit(browser, form)
    page.fill("#q", "Invoice for order 7")
    submit(page, "v3@example.test")
    v3.close()

    v4, page = visit(browser, logged)
    ask(page, "where is my order")
    wait_until(lambda: committed(srv, "answer_shown") >= 3, "V4's answer")
    v4.close()
    v4b, page = visit(browser, logged)
    page.fill("#q", "Where is my order??")
    submit(page, "")
    v4b.close()

    v5, page = visit(browser, form, consent="No, thanks")
    ask(page, "Where is my order?")
    wait_until(lambda: committed(srv, "answer_shown") >= 4, "V5's answer")
    v5.close()
    wait_until(lambda: committed(srv, "ticket_submitted") >= 3, "three tickets")
    wait_until(lambda: committed(srv, "form_viewed") >= 6, "six form views")

    api = report_via_api(srv, key)
    assert totals_of(api) == TOTALS
    assert api["ephemeral"] == EPHEMERAL
    assert [(f["site_id"], f["form"], f["sessions"]) for f in api["forms"]] == [
        ("default", "support", 5)
    ]
    # The answer element's data-* attributes went along: its chatbot became the column.
    assert [(c["chatbot_id"], c["sessions"], c["answered"]) for c in api["chatbots"]] == [
        ("bot-a", 3, 3),
        (None, 2, 0),
    ]
    gaps = {q["question"]: q for q in api["questions"]}
    assert (gaps["where is my order"]["sessions"], gaps["where is my order"]["deferred"]) == (3, 1)
    assert [s["sessions"] for s in api["funnel"]] == [5, 5, 3, 1, 3]

    # The site's cost per ticket through the admin API (a site key manages its own site).
    assert api["savings"] == []
    assert api["sites_without_cost"] == [{"site_id": "default", "deflected": 1}]
    for bad, field in (
        ({"cost_per_ticket": -1}, "cost_per_ticket"),
        ({"cost_per_ticket": 5, "ticket_currency": "EURO"}, "ticket_currency"),
    ):
        refused = put_cost(srv, key, bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == field
    saved = put_cost(srv, key, {"cost_per_ticket": 10, "ticket_currency": "eur"})
    assert saved.json() == {
        "success": True,
        "site_id": "default",
        "cost_per_ticket": 10.0,
        "ticket_currency": "EUR",
    }
    assert report_via_api(srv, key)["savings"] == [
        {"currency": "EUR", "amount": 10.0, "deflected": 1}
    ]

    remote = cli_report(srv, "--server", srv.url, "--key", key)
    assert totals_of(remote) == TOTALS
    assert remote["ephemeral"] == EPHEMERAL

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_S * 1000)
    dash = context.new_page()
    dash.goto(srv.url + "/dashboard/support-form?days=2")
    dash.get_by_test_id("key").fill(key)
    dash.get_by_test_id("key-submit").click()
    dash.wait_for_load_state()
    dash.goto(srv.url + "/dashboard/support-form?days=2")
    shown = {
        name: dash.get_by_test_id(f"kpi-deflection-{name}").inner_text()
        for name in ("sessions", "answered", "tickets", "deflected", "deferred", "rate")
    }
    assert shown == {
        "sessions": "5",
        "answered": "3",
        "tickets": "3",
        "deflected": "1",
        "deferred": "1",
        "rate": "33.3%",
    }
    assert dash.get_by_test_id("deflection-ephemeral").inner_text() == "1"
    assert dash.get_by_test_id("deflection-saved").inner_text() == "10.00 EUR"
    # The site's page sets the cost too; the Support form page shows the new savings.
    dash.goto(srv.url + "/dashboard/site/default")
    dash.get_by_test_id("ticket-cost").fill("12.50")
    dash.get_by_test_id("ticket-currency").fill("usd")
    dash.get_by_test_id("ticket-cost-save").click()
    dash.wait_for_load_state()
    assert dash.get_by_test_id("ticket-cost").input_value() == "12.5"
    dash.goto(srv.url + "/dashboard/support-form?days=2")
    assert dash.get_by_test_id("deflection-saved").inner_text() == "12.50 USD"
    shots = os.environ.get("FOOTFALL_SCREENSHOTS")
    if shots:
        dash.screenshot(
            path=f"{shots}/support-form-{'pg' if srv.database_url else 'duckdb'}.png",
            full_page=True,
        )
    context.close()

    srv.stop()
    local = cli_report(srv, "--database", srv.target, "--site", "default")
    assert totals_of(local) == TOTALS
    assert local["ephemeral"] == EPHEMERAL
    assert local["savings"] == [{"currency": "USD", "amount": 12.5, "deflected": 1}]
    assert srv.sites_command("ticket-cost", "default", "none") == "site default: no cost per ticket"
    assert cli_report(srv, "--database", srv.target, "--site", "default")["savings"] == []
    assert (
        srv.sites_command("ticket-cost", "default", "7", "--currency", "gbp")
        == "site default: a ticket costs 7.00 GBP"
    )


MULTI_STEP = (
    '<form id="support" onsubmit="event.preventDefault(); '
    "document.getElementById('step2').hidden = false\">"
    '<textarea id="q"></textarea><button type="submit" id="next">Next</button></form>'
    '<div id="step2" hidden><button type="button" id="file">File the ticket</button></div>'
    '<div id="answer" hidden></div>'
)


@pytest.fixture
def duckdb_footfall(tmp_path: Path, pages: PageServer) -> Iterator[Server]:
    config = f'default_site = "default"\nallowed_origins = ["http://*.shop.test:{pages.port}"]\n'
    srv = Server(tmp_path / "footfall", config=config).start()
    yield srv
    if srv.process is not None:
        srv.stop()


def test_ticket_selector_code_and_holdout_group(
    duckdb_footfall: Server, pages: PageServer, browser: Browser
) -> None:
    """A multi-step form: its submit is not the ticket, the ticket element's click is; an
    integrator's own ``footfall.track('answer_shown')`` gets the form and question filled
    in; ``footfall.group()`` is the group the server gives the events."""
    srv = duckdb_footfall
    attrs = {
        "data-form-selector": "#support",
        "data-ticket-selector": "#file",
        "data-question-selector": "#q",
        "data-answer-selector": "#answer",
        "data-ab-test": "true",
    }
    pages.pages["/multi.html"] = tracker_page(srv, attrs=attrs, body=MULTI_STEP)
    context = browser.new_context()
    context.set_default_timeout(WAIT_S * 1000)
    page = context.new_page()
    page.goto(pages.url("help.shop.test", "/multi.html"))
    wait_loaded(page)
    group = page.evaluate("footfall.group()")
    assert group in ("control", "test")
    page.fill("#q", "  Can I change my address?  ")
    page.evaluate("footfall.track('answer_shown', {answer_id: 'kb-7'})")
    page.click("#next")
    page.click("#file")
    wait_until(lambda: committed(srv, "ticket_submitted") >= 1, "the ticket")
    wait_until(lambda: committed(srv, "answer_shown") >= 1, "the answer")
    context.close()
    srv.stop()
    rows = srv.rows(
        "SELECT event, ab_group, data FROM events WHERE event <> 'visitor' ORDER BY ts, event_id"
    )
    assert [(event, grp) for event, grp, _ in rows] == [
        ("form_viewed", group),
        ("answer_shown", group),
        ("ticket_submitted", group),
    ]
    data = [json.loads(text) for _, _, text in rows]
    assert data[1] == {
        "answer_id": "kb-7",
        "form": "support",
        "question": "Can I change my address?",
    }
    assert data[2] == {"form": "support", "question": "Can I change my address?"}
