"""Stored strings in the dashboard's charts stay text: Plotly reads its own tags (``<a
href>``, ``<span style>``, ``<br>``...) in every label, legend name and hover text, so a
chatbot id, popup version or question could otherwise put a link or big text into the
admin's charts. Unit tests of the figures, then the pages in headless Chromium."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, expect

from conftest import Server, eventually
from footfall.web import charts

LINK = '<a href="https://evil.example/">link</a>'
BIG = '<span style="font-size:90px">big</span>'
HOSTILE = (LINK, BIG)
WAIT_MS = 30_000


def _dumped(figure: dict[str, Any]) -> str:
    return json.dumps(figure, ensure_ascii=False)


# --------------------------------------------------------------------------- unit


def test_chart_text_escapes_what_plotly_reads_as_markup() -> None:
    assert charts.chart_text(LINK) == '&lt;a href="https://evil.example/"&gt;link&lt;/a&gt;'
    assert charts.chart_text("a & b") == "a &amp; b"
    # An entity in the data is text too: Plotly would otherwise decode it to "<".
    assert charts.chart_text("&lt;b&gt;") == "&amp;lt;b&amp;gt;"
    assert charts.chart_text("Popup v2 · 10%") == "Popup v2 · 10%"
    assert html.unescape(charts.chart_text(BIG)) == BIG


def test_every_figure_escapes_stored_strings() -> None:
    steps = [{"people": 1, "conversion": 1.0}] * 2
    figures = [
        charts.funnel_chart(
            {
                "steps": ["visitor", f"custom:{LINK}"],
                "overall": {"steps": steps},
                "groups": [{"group": g, "steps": steps} for g in HOSTILE],
            }
        ),
        charts.funnel_chart(
            {"steps": ["visitor", f"custom:{BIG}"], "overall": {"steps": steps}, "groups": []}
        ),
        charts.ab_chart([{"group": g, "conversion": 0.5} for g in HOSTILE]),
        charts.popups_chart([{"popup_version": v, "displays": 2, "opens": 1} for v in HOSTILE]),
        charts.feedback_chart([{"chatbot_id": c, "likes": 2, "dislikes": 1} for c in HOSTILE]),
        charts.questions_chart([{"text": q, "count": 3} for q in HOSTILE]),
        charts.journey_chart(
            [
                {"site_id": LINK, "event": f"custom:{BIG}", "ts": "2026-01-02T03:04:05Z"},
                {"site_id": BIG, "event": "visitor", "ts": "2026-01-02T03:04:06Z"},
            ]
        ),
    ]
    for figure in figures:
        text = _dumped(figure)
        assert "<a" not in text
        assert "<span" not in text
        assert "evil.example" in text or "font-size:90px" in text
        # No stored string inside a hover template, where "%{...}" would be a placeholder.
        for trace in figure["data"]:
            template = trace.get("hovertemplate", "")
            assert "evil" not in template
            assert "90px" not in template
    journey = figures[-1]
    assert journey["layout"]["yaxis"]["categoryarray"] == [
        charts.chart_text(f"{BIG} (custom)"),
        "Visit",
    ]


def test_a_clipped_question_never_cuts_an_entity() -> None:
    question = "x" * 46 + "<&>" + "y" * 10
    (label,) = charts.questions_chart([{"text": question, "count": 1}])["data"][0]["y"]
    assert label == "x" * 46 + "&lt;…"
    assert html.unescape(label) == question[:47] + "…"


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server whose only events carry markup in chatbot_id, popup_version and text."""
    srv = Server(tmp_path_factory.mktemp("charts"))
    key = srv.start_with_key("default")
    with srv.client() as client:
        for n, value in enumerate(HOSTILE):
            token = f"hostile_token_{n}"
            for event, data in (
                ("visitor", {"chatbot_id": value}),
                ("bot_open", {"chatbot_id": value}),
                ("message_sent", {"chatbot_id": value, "text": f"{value} why"}),
                ("message_like", {"chatbot_id": value}),
                ("popup_displayed", {"popup_version": value}),
                ("popup_opened", {"popup_version": value}),
            ):
                answer = client.post(
                    "/api/analytics/track", json={"event": event, "token": token, "data": data}
                )
                assert answer.status_code == 200, answer.text

    def stored() -> bool:
        with srv.client(headers={"authorization": f"Bearer {key}"}) as client:
            versions = client.get("/api/reports/popups").json()["versions"]
        return {v["popup_version"] for v in versions} == set(HOSTILE)

    assert eventually(stored)
    yield srv, key
    srv.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile that may reach 127.0.0.1 only (no click may leave for evil.example)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(WAIT_MS)

    def loopback_only(route: Route) -> None:
        url = route.request.url
        if url.startswith("data:") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    ctx.route("**/*", loopback_only)
    yield ctx
    ctx.close()


def _open(page: Page, srv: Server, path: str) -> None:
    answer = page.goto(srv.url + path)
    assert answer is not None
    assert answer.status == 200, path
    expect(page.locator("[data-chart]:not([data-drawn=true])")).to_have_count(0)


def _assert_literal(chart: Locator, *texts: str) -> None:
    """No link and no styled span from the data in a chart's SVG; the data as text."""
    # Plotly writes xlink:href, which a[href*=...] (no namespace) would never match.
    expect(chart.locator('a[*|href*="evil.example"]')).to_have_count(0)
    expect(chart.locator("a")).to_have_count(0)  # a chart has no links of its own
    expect(chart.locator('[style*="90px"]')).to_have_count(0)
    shown = "".join(chart.locator("text").all_text_contents())
    for text in texts:
        assert text in shown
    assert "&lt;" not in shown  # escaped once, not twice


def test_stored_markup_is_text_in_the_charts(
    hostile_server: tuple[Server, str], context: BrowserContext
) -> None:
    srv, key = hostile_server
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(srv.url + "/dashboard/login")
    page.get_by_test_id("key").fill(key)
    page.get_by_test_id("key-submit").click()
    page.wait_for_load_state()

    # Funnel by chatbot: the groups are the legend's names and the hover's first line.
    steps = quote(f"visitor,bot_open,message_sent,custom:{LINK}")
    _open(page, srv, f"/dashboard/funnel?breakdown=chatbot_id&steps={steps}")
    funnel = page.get_by_test_id("chart-funnel")
    _assert_literal(funnel, *HOSTILE, f"{LINK} (custom)")
    bar = funnel.locator(".point path").first.bounding_box()
    assert bar is not None
    page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)
    hover = funnel.locator(".hoverlayer")
    expect(hover.locator("text").first).to_be_visible()
    _assert_literal(hover, "Visit")
    assert any(h in "".join(hover.locator("text").all_text_contents()) for h in HOSTILE)
    assert {
        page.get_by_test_id("funnel-group").nth(i).get_attribute("data-group") for i in range(2)
    } == set(HOSTILE)

    # Questions: the bars' labels; the table shows them as written, escaped once.
    _open(page, srv, "/dashboard/questions")
    questions = [f"{h} why" for h in HOSTILE]
    _assert_literal(page.get_by_test_id("chart-questions"), *questions)
    table = " ".join(page.get_by_test_id("question-row").all_inner_texts())
    assert all(q in table for q in questions)

    # Popups per version and feedback per chatbot: category tick labels.
    _open(page, srv, "/dashboard/widget")
    _assert_literal(page.get_by_test_id("chart-popups"), *HOSTILE)
    _assert_literal(page.get_by_test_id("chart-feedback"), *HOSTILE)
    rows = page.get_by_test_id("popup-row")
    assert {rows.nth(i).get_attribute("data-version") for i in range(2)} == set(HOSTILE)
    assert problems == []
