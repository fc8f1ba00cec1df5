"""What screenshots of the dashboard showed wrong (issue 25, item 10): times on a one-day
axis, an empty revenue chart with no words, "1 messages", "12.287k" beside "12,287",
"p = < 0.0001", two date formats on one page, retention columns past the range, a funnel
step field without its choices, a CLI table cut short in silence, and a reload that made
another key. Unit tests of the figures and words, then a real server with one day of
events (httpx and headless Chromium), then the CLI on a ``footfall demo`` database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from conftest import SHOP, Server, loopback_context
from footfall.analytics.reports import period_start, retention_columns, step_name
from footfall.ingest.validate import EVENT_TYPES
from footfall.web import charts
from footfall.words import counted, noun

WAIT_MS = 30_000
TRACK = "/api/analytics/track"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FOOTFALL = (sys.executable, "-m", "footfall")


# --------------------------------------------------------------------------- unit


def test_counts_are_singular_for_one() -> None:
    assert counted(1, "message") == "1 message"
    assert counted(2, "message") == "2 messages"
    assert counted(0, "order") == "0 orders"
    assert counted(12_287, "event") == "12,287 events"
    assert counted(1, "person") == "1 person"
    assert counted(3, "person") == "3 people"
    assert noun(1, "event") == "event"
    assert noun(None, "event") == "events"


def test_daily_figures_label_dates_not_times() -> None:
    """One day of data: one tick per day, written as a date, and a range of that day (Plotly's
    own range around one point is a millisecond wide, ticked ``23:59:59.999``)."""
    day = [{"day": "2026-11-06", "people": 3, "conversations": 1, "revenue_eur": 0.0}]
    figures = [
        charts.overview_trend(day),
        charts.overview_revenue(day),
        charts.people_series([{"period": "2026-11-06", "people": 3}], "day"),
        charts.revenue_chart([{"period": "2026-11-06", "revenue_eur": 9.5, "orders": 1}], "day"),
        charts.errors_chart([{"day": "2026-11-06", "errors": 2}]),
        charts.custom_events_chart([{"day": "2026-11-06", "events": 2}]),
    ]
    for figure in figures:
        for trace in figure["data"]:
            if trace["type"] == "bar":  # alone, a bar needs its width: Plotly's is 1 ms
                assert trace["width"] == 0.75 * 86_400_000
        axis = figure["layout"]["xaxis"]
        assert axis["type"] == "date"
        assert axis["tickformat"] == "%Y-%m-%d"
        assert axis["dtick"] == 86_400_000
        assert axis["range"] == ["2026-11-05 12:00", "2026-11-06 12:00"]
    # Three people: a tick per whole person, none at 1.5.
    assert figures[0]["layout"]["yaxis"] == {"dtick": 1}
    orders = charts.revenue_chart([{"period": "2026-11-06", "revenue_eur": 9.5, "orders": 40}])
    assert orders["layout"]["yaxis2"]["tickmode"] == "auto"  # whole orders, not 3.7
    weekly = charts.people_series([{"period": "2026-11-02", "people": 3}], "week")
    assert weekly["layout"]["xaxis"]["dtick"] == 7 * 86_400_000
    monthly = charts.people_series([{"period": "2026-11-01", "people": 3}], "month")
    assert (monthly["layout"]["xaxis"]["dtick"], monthly["layout"]["xaxis"]["tickformat"]) == (
        "M1",
        "%Y-%m",
    )
    # Many days: Plotly spaces the ticks itself, still as dates.
    many = charts.overview_trend(
        [{"day": f"2026-10-{d:02d}", "people": d, "conversations": 0} for d in range(1, 31)]
    )
    assert "dtick" not in many["layout"]["xaxis"]
    assert many["layout"]["yaxis"] == {}  # up to 30 people: Plotly picks the ticks
    assert many["layout"]["xaxis"]["tickformat"] == "%Y-%m-%d"


def test_the_funnel_chart_writes_numbers_as_its_table_does() -> None:
    steps = [
        {"event": "visitor", "people": 12_287, "conversion": 1.0},
        {"event": "purchase", "people": 1_024, "conversion": 1_024 / 12_287},
    ]
    report = {"steps": ["visitor", "purchase"], "overall": {"steps": steps}, "groups": []}
    [trace] = charts.funnel_chart(report)["data"]
    assert "textinfo" not in trace  # Plotly's "value" text is SI: 12.287k
    assert trace["texttemplate"] == "%{value:,}<br>%{text}"
    assert trace["text"] == ["100.0%", "8.3%"]  # the table's percentages, to the digit
    grouped = charts.funnel_chart({**report, "groups": [{"group": "a", "steps": steps}]})
    assert grouped["layout"]["yaxis"]["exponentformat"] == "none"
    script = (Path(charts.__file__).parent / "static" / "dashboard.js").read_text()
    assert 'exponentformat: "none"' in script  # every axis: 12,000, not 12k


def test_the_support_form_charts_write_numbers_and_dates_as_the_other_pages() -> None:
    steps = [
        {"step": "form_viewed", "sessions": 16_759, "of_sessions": 1.0},
        {"step": "ticket_submitted", "sessions": 5_974, "of_sessions": 5_974 / 16_759},
    ]
    [trace] = charts.deflection_funnel(steps)["data"]
    assert "textinfo" not in trace  # Plotly's "value" text is SI: 16.759k
    assert trace["texttemplate"] == "%{value:,}<br>%{text}"
    assert trace["text"] == ["100.0%", "35.6%"]
    day = {"day": "2026-12-05", "deflected": 1, "deferred": 1, "tickets": 2}
    figure = charts.deflection_chart([day])
    assert figure["layout"]["xaxis"]["tickformat"] == "%Y-%m-%d"  # one day shows its date
    assert figure["layout"]["yaxis"]["dtick"] == 1  # whole sessions, not 1.5
    assert all(bar.get("width") for bar in figure["data"][:2])  # a lone bar is visible


@pytest.mark.parametrize(
    ("p_value", "clause"), [(0.00001, "p < 0.0001"), (0.0123, "p = 0.0123"), (0.5, "p = 0.5000")]
)
def test_p_values_read_as_sentences(p_value: float, clause: str) -> None:
    for significant in (True, False):
        comparison = {
            "difference": 0.02,
            "ci95": [0.01, 0.03],
            "significant": significant,
            "p_value": p_value,
        }
        verdict = charts.ab_verdict(comparison, "purchase")
        assert clause in verdict
        assert "= <" not in verdict


def test_retention_shows_only_periods_that_begin_in_the_range() -> None:
    """30 days from a Monday, by week: weeks 0 to 4 begin in the range, 5 to 7 cannot."""
    report = {
        "filters": {"sites": None, "start": "2026-11-02T00:00:00Z", "end": "2026-12-02T00:00:00Z"},
        "interval": "week",
        "periods": 8,
        "cohorts": [
            {"cohort": "2026-11-02", "size": 10, "rates": [1.0, 0.5, 0.2, 0.1, 0.1, 0, 0, 0]},
            {"cohort": "2026-11-09", "size": 4, "rates": [1.0, 0.25, 0, 0, 0, 0, 0, 0]},
        ],
    }
    assert retention_columns(report) == 5
    [trace] = charts.retention_heatmap(report)["data"]
    assert trace["x"] == [f"Week {k}" for k in range(5)]
    assert [len(row) for row in trace["z"]] == [5, 5]
    assert trace["z"][1][4] is None  # the second cohort's week 4 starts after the range
    assert retention_columns({**report, "cohorts": []}) == 0


def test_an_unknown_step_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown event type 'teleport'") as raised:
        step_name("teleport")
    for event in EVENT_TYPES:
        assert event in str(raised.value)
    assert "custom:NAME" in str(raised.value)


# --------------------------------------------------------------------------- one day served


class OneDay:
    def __init__(self, server: Server, key: str) -> None:
        self.server = server
        self.key = key

    @contextmanager
    def session(self) -> Iterator[tuple[httpx.Client, str]]:
        """A client signed in with the key through the form, and its CSRF token."""
        with self.server.client(follow_redirects=False) as client:
            form = client.get("/dashboard/login")
            token = CSRF.search(form.text)
            assert token is not None
            answer = client.post(
                "/dashboard/login",
                data={"csrf": token.group(1), "method": "key", "key": self.key},
            )
            assert answer.status_code == 303, answer.text[:300]
            page = client.get("/dashboard/sites")
            csrf = CSRF.search(page.text)
            assert csrf is not None
            yield client, csrf.group(1)


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneDay]:
    """A server whose events are all of today: two visitors, one message, no order."""
    server = Server(tmp_path_factory.mktemp("one-day"))
    key = server.start_with_key("default")
    events: list[dict[str, Any]] = [
        {"event": "visitor", "token": "polish-visitor-1"},
        {"event": "visitor", "token": "polish-visitor-2"},
        {"event": "bot_open", "token": "polish-visitor-1"},
        {"event": "convo_started", "token": "polish-visitor-1"},
        {"event": "message_sent", "token": "polish-visitor-1", "data": {"text": "Hello?"}},
    ]
    with server.client("10.250.0.1", headers={"origin": SHOP}) as tracker:
        for event in events:
            answer = tracker.post(TRACK, json=event)
            assert answer.status_code == 200, answer.text
    yield OneDay(server, key)
    server.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile in en-US (the locale that writes dates mm/dd/yyyy), loopback only."""
    viewport = {"width": 1280, "height": 800}
    with loopback_context(browser, WAIT_MS, viewport=viewport, locale="en-US") as ctx:
        yield ctx


def signed_in(context: BrowserContext, one_day: OneDay, path: str) -> Page:
    page = context.new_page()
    page.goto(one_day.server.url + "/dashboard" + path)
    page.get_by_test_id("key").fill(one_day.key)
    page.get_by_test_id("key-submit").click()
    page.wait_for_load_state()
    expect(page.locator("[data-chart]:not([data-drawn=true])")).to_have_count(0)
    return page


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_one_day_of_data_shows_its_date_on_the_time_axis(
    one_day: OneDay, context: BrowserContext, tmp_path: Path
) -> None:
    page = signed_in(context, one_day, "/?days=7")
    ticks = page.locator("[data-testid=chart-trend] .xtick text")
    expect(ticks).not_to_have_count(0)
    labels = ticks.all_text_contents()
    # The range of a week holds one day of events: one tick, today's date, and no times.
    assert labels == [today()], labels
    page.screenshot(path=str(tmp_path / "overview-one-day.png"), full_page=True)
    # A lone bar is as wide as most of its day, not a millisecond (invisible).
    page.goto(one_day.server.url + "/dashboard/people?days=7")
    expect(page.locator("[data-chart]:not([data-drawn=true])")).to_have_count(0)
    bar = page.locator("[data-testid=chart-people] .bars path").first.bounding_box()
    plot = page.locator("[data-testid=chart-people] .nsewdrag").first.bounding_box()
    assert bar is not None
    assert plot is not None
    assert bar["width"] > plot["width"] / 2
    assert page.locator("[data-testid=chart-people] .xtick text").all_text_contents() == [today()]


def test_an_empty_revenue_chart_says_so(one_day: OneDay) -> None:
    with one_day.session() as (client, _):
        overview = client.get("/dashboard/?days=7")
        assert overview.status_code == 200
        assert 'data-testid="chart-revenue"' not in overview.text
        assert "No orders yet in this range." in overview.text
        assert 'data-testid="chart-trend"' in overview.text  # the visits still have their chart
        revenue = client.get("/dashboard/revenue?days=7")
        assert 'data-testid="chart-revenue"' not in revenue.text
        assert "No orders yet in this range." in revenue.text


def test_one_message_is_one_message(one_day: OneDay) -> None:
    with one_day.session() as (client, _):
        overview = client.get("/dashboard/?days=7").text
    notes = re.findall(r'<div class="kpi-note">([^<]*)</div>', overview)
    assert "1 message" in notes, notes
    assert "0 orders" in notes, notes
    assert not [n for n in notes if re.match(r"1 \w+s$", n)], notes


def test_dates_read_the_same_in_the_heading_and_the_date_fields(
    one_day: OneDay, context: BrowserContext
) -> None:
    """ISO dates throughout: the heading and the fields say 2026-11-06 in any browser locale
    (a type=date field would write 11/06/2026 in en-US)."""
    page = signed_in(context, one_day, "/?from=2026-11-06&to=2026-11-20")
    expect(page.get_by_test_id("range-label")).to_have_text("2026-11-06 \u2013 2026-11-20")
    for testid, value in (("date-from", "2026-11-06"), ("date-to", "2026-11-20")):
        field = page.get_by_test_id(testid)
        assert field.get_attribute("type") == "text"
        assert field.get_attribute("placeholder") == "yyyy-mm-dd"
        assert field.input_value() == value
    page.get_by_test_id("date-from").fill("2026-11-10")
    page.get_by_test_id("apply-range").click()
    expect(page.get_by_test_id("range-label")).to_have_text("2026-11-10 \u2013 2026-11-20")


def test_funnel_steps_are_offered_by_name_and_a_wrong_one_lists_them(
    one_day: OneDay, context: BrowserContext
) -> None:
    page = signed_in(context, one_day, "/funnel?days=7&steps=visitor,bot_open")
    fields = page.get_by_test_id("step")
    expect(fields).to_have_count(3)  # two steps and one to add
    labels = fields.first.locator("option").all_inner_texts()
    assert labels == ["—", *charts.EVENT_LABELS.values()]
    fields.nth(2).select_option(label="Conversation")
    expect(page.get_by_test_id("funnel-step")).to_have_count(3)
    expect(page.get_by_test_id("funnel-step").nth(2)).to_contain_text("3. Conversation")
    # A step nobody offers: the page and the API name the valid ones.
    with one_day.session() as (client, _):
        wrong = client.get("/dashboard/funnel?steps=visitor,teleport")
        assert wrong.status_code == 422
        assert all(event in wrong.text for event in EVENT_TYPES)
    with one_day.server.client(headers={"authorization": f"Bearer {one_day.key}"}) as api:
        answer = api.get("/api/reports/funnel", params={"steps": "visitor,teleport"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("VALIDATION_ERROR", "steps")
    assert all(event in error["message"] for event in EVENT_TYPES)


def test_reloading_the_key_created_page_makes_no_second_key(one_day: OneDay) -> None:
    """Post, redirect, get: the secret is shown once, by the session that made it, and is
    never in the address."""
    with one_day.session() as (client, csrf):
        before = client.get("/dashboard/site/default").text.count('data-testid="key-row"')
        made = client.post("/dashboard/site/default/keys", data={"csrf": csrf, "label": "prg"})
        assert made.status_code == 303
        location = made.headers["location"]
        assert location == "/dashboard/site/default?done=key-created#keys"
        shown = client.get(location)
        [secret] = re.findall(r'value="(ff_[0-9a-f]{12}_[^"]+)"', shown.text)
        assert secret not in location
        assert "set-cookie" not in made.headers or secret not in made.headers["set-cookie"]
        again = client.get(location)  # the reload
        assert secret not in again.text
        assert "Its secret is shown once only" in again.text
        assert again.text.count('data-testid="key-row"') == before + 1
        with one_day.server.client(headers={"authorization": f"Bearer {secret}"}) as api:
            assert api.get("/api/reports/overview").status_code == 200
        # Another session of the same site never sees another's new key.
        other = client.post("/dashboard/site/default/keys", data={"csrf": csrf, "label": "x"})
        with one_day.session() as (stranger, _):
            assert 'data-testid="new-key"' not in stranger.get(other.headers["location"]).text
        assert 'data-testid="new-key"' in client.get(other.headers["location"]).text


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 days of ``footfall demo`` traffic in a DuckDB file."""
    database = tmp_path_factory.mktemp("cli-demo") / "demo.duckdb"
    subprocess.run(
        [*FOOTFALL, "demo", "--events", "6000", "--days", "60", "--database", str(database)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return database


def report(database: Path, *args: str) -> str:
    """``footfall report`` in a wide terminal, from a folder with no footfall.toml."""
    answer = subprocess.run(
        [*FOOTFALL, "report", *args, "--site", "all", "--database", str(database)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")},
            "COLUMNS": "200",
        },
        cwd=database.parent,
    )
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def test_the_cli_overview_shows_every_day_it_was_asked_for(demo_database: Path) -> None:
    daily = json.loads(report(demo_database, "overview", "--days", "60", "--json"))["daily"]
    assert len(daily) > 14
    table = report(demo_database, "overview", "--days", "60")
    shown = re.findall(r"^\W*(\d{4}-\d{2}-\d{2})\W", table, re.MULTILINE)
    assert shown == [d["day"] for d in daily]
    assert f"every day with events: {len(daily)} days" in table


def test_the_cli_retention_table_stops_at_the_range(demo_database: Path) -> None:
    end = datetime.now(UTC).date() + timedelta(days=1)
    start = end - timedelta(days=21)
    text = report(demo_database, "retention", "--interval", "week", "--from", start.isoformat())
    header = next(line for line in text.splitlines() if "cohort" in line and "size" in line)
    columns = re.findall(r"\+(\d+)", header)
    assert columns, header
    assert int(columns[-1]) <= 3, header  # 8 periods asked, 3 weeks in the range
    asked = ("--interval", "week", "--from", start.isoformat())
    data = json.loads(report(demo_database, "retention", *asked, "--json"))
    range_end = datetime.fromisoformat(str(data["filters"]["end"]).rstrip("Z"))
    rows = {
        line.split()[1]: line
        for line in text.splitlines()
        if re.match(r"\W*\d{4}-\d{2}-\d{2}", line)
    }
    assert len(rows) == len(data["cohorts"]) > 1, text
    blanks = 0
    for cohort in data["cohorts"]:
        cells = [cell.strip() for cell in rows[cohort["cohort"]].split("│")[3:-1]]
        for k, cell in enumerate(cells):
            # A week that begins after the range is "-", not "0.0%": nobody could come back
            # yet; a week that has begun shows its share, whatever the weekday today is.
            if period_start(cohort["cohort"], "week", k) >= range_end:
                assert cell == "-", (cohort["cohort"], k, rows[cohort["cohort"]])
                blanks += 1
            else:
                assert cell.endswith("%"), (cohort["cohort"], k, rows[cohort["cohort"]])
    assert blanks > 0, text  # the newest cohort's later weeks have not begun
