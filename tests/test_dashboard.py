"""The dashboard against a real ``footfall serve`` on demo data, in headless Chromium.

One server and one browser for the module: ``footfall demo`` writes 30,000 events into the
server's DuckDB file before it starts. Every number a page shows is read from the page
and compared with ``GET /api/reports/...`` (same parameters, an API key), so the pages
cannot drift from the API. The browser may reach 127.0.0.1 only: any other request is
aborted and fails the test. With FOOTFALL_SCREENSHOTS=<dir> set, the screenshots of the
docs (dashboard-*.png) are written there; otherwise into the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
)

from conftest import Server, loopback_context
from footfall.passwords import hash_password, verify_password

PASSWORD = "admin password for the tests"
EVENTS = 30_000
WAIT_MS = 30_000
CONFIG = """
default_site = "default"
allowed_origins = ["*"]
admin_password_hash = "{hash}"

[[sites]]
id = "other"
name = "Other shop"
allowed_origins = ["https://other.test"]
"""
PAGES = (
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
    "/person?name=x",
    "/person/export?name=x",
    "/person/erase?name=x",
)


@dataclass
class Dashboard:
    srv: Server
    key: str
    """An API key of the demo's default site (its tenant also holds the help site)."""
    other_key: str
    """An API key of the other site, another tenant."""
    shots: Path

    def api(self, path: str, key: str | None = None, **params: str) -> Any:
        with self.srv.client(headers={"authorization": f"Bearer {key or self.key}"}) as c:
            answer = c.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def report(self, name: str, **params: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api(f"/api/reports/{name}", **params)
        return result


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    workdir = tmp_path_factory.mktemp("dashboard")
    # A cheaper scrypt cost than the default keeps the tests quick; the format is the same.
    srv = Server(workdir, config=CONFIG.format(hash=hash_password(PASSWORD, n=2**12)))
    srv.load_demo(EVENTS, timeout=300)
    key, other_key = srv.new_key("default"), srv.new_key("other")
    srv.start()
    shots = Path(os.environ.get("FOOTFALL_SCREENSHOTS") or workdir / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    yield Dashboard(srv, key, other_key, shots)
    srv.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile at 1280x800 that may only talk to 127.0.0.1."""
    viewport = {"width": 1280, "height": 800}
    with loopback_context(browser, WAIT_MS, viewport=viewport, accept_downloads=True) as ctx:
        yield ctx


# --------------------------------------------------------------------------- helpers


def number(text: str) -> float:
    """What a page shows (``12,345.67 EUR``, ``15.7%``, ``+4.58 pp``) as a number."""
    cleaned = re.sub(r"(EUR|pp|%|,|\s|\+)", "", text.replace("\u2212", "-"))
    return float(cleaned)


def shown(page: Page, testid: str) -> float:
    return number(page.get_by_test_id(testid).inner_text())


def cells(page: Page, row: str, testid: str) -> list[float]:
    return [number(t) for t in page.get_by_test_id(row).get_by_test_id(testid).all_inner_texts()]


def pct(ratio: float | None, digits: int = 1) -> float | None:
    return None if ratio is None else round(ratio * 100, digits)


def figure(page: Page, chart: str) -> dict[str, Any]:
    """The figure a chart was drawn from (after checking Plotly really drew it)."""
    page.wait_for_selector(f"[data-testid={chart}][data-drawn=true] .main-svg")
    data: dict[str, Any] = json.loads(page.locator(f"#{chart}-data").inner_text())
    return data


def login(
    page: Page,
    dash: Dashboard,
    *,
    key: str | None = None,
    password: str | None = None,
    path: str = "/dashboard/",
) -> None:
    page.goto(dash.srv.url + path)
    assert urlsplit(page.url).path == "/dashboard/login"
    if password is not None:
        page.get_by_test_id("password").fill(password)
        page.get_by_test_id("password-submit").click()
    else:
        page.get_by_test_id("key").fill(key or dash.key)
        page.get_by_test_id("key-submit").click()
    page.wait_for_load_state()


def open_page(page: Page, dash: Dashboard, path: str) -> None:
    answer = page.goto(dash.srv.url + path)
    assert answer is not None, path
    assert answer.status == 200, path
    wait_for_charts(page)


def wait_for_charts(page: Page) -> None:
    """Every chart drawn by Plotly (no JS string evaluation: the pages' CSP forbids it)."""
    expect(page.locator("[data-chart]:not([data-drawn=true])")).to_have_count(0)


def params_of(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


@contextmanager
def session_client(dash: Dashboard, key: str | None = None) -> Iterator[tuple[httpx.Client, str]]:
    """An HTTP client logged in with a key through the form, and its CSRF token."""
    with dash.srv.client(follow_redirects=False) as client:
        form = client.get("/dashboard/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = client.post(
            "/dashboard/login",
            data={"csrf": csrf.group(1), "method": "key", "key": key or dash.key},
        )
        assert answer.status_code == 303, answer.text
        page = client.get("/dashboard/persons")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        yield client, token.group(1)


# --------------------------------------------------------------------------- access


def test_pages_redirect_to_login_and_the_api_answers_401(dash: Dashboard) -> None:
    with dash.srv.client(follow_redirects=False) as client:
        for path in PAGES:
            answer = client.get("/dashboard" + path)
            assert answer.status_code == 303, path
            location = answer.headers["location"]
            assert location.startswith("/dashboard/login?next=%2Fdashboard"), location
        # A forged or tampered session cookie is no session.
        client.cookies.set("footfall_dashboard", "eyJ3aG8iOiJhZG1pbiJ9.forged", path="/dashboard")
        assert client.get("/dashboard/").status_code == 303
        for action in ("/dashboard/person/erase", "/dashboard/person/split"):
            answer = client.post(action, data={"name": "x", "csrf": "x"})
            assert answer.status_code == 303
        assert client.get("/").headers["location"] == "/dashboard/"
        assert client.get("/api/reports/overview").status_code == 401
        assert client.get("/api/persons/anyone").status_code == 401
    with dash.srv.client(headers={"authorization": "Bearer ff_000000000000_nope"}) as client:
        assert client.get("/api/reports/overview").status_code == 401


def test_wrong_key_password_and_missing_csrf_are_refused(dash: Dashboard) -> None:
    with dash.srv.client(follow_redirects=False) as client:
        form = client.get("/dashboard/login")
        assert form.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        cookie = form.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "path=/dashboard" in cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        token = csrf.group(1)
        bad_key = client.post("/dashboard/login", data={"csrf": token, "key": "ff_abc_def"})
        assert bad_key.status_code == 401
        assert "unknown or revoked" in bad_key.text
        bad_password = client.post(
            "/dashboard/login", data={"csrf": token, "method": "password", "password": "guess"}
        )
        assert bad_password.status_code == 401
        no_csrf = client.post("/dashboard/login", data={"key": dash.key})
        assert no_csrf.status_code == 403
        assert client.get("/dashboard/").status_code == 303
    with session_client(dash) as (client, csrf_token):
        assert client.get("/dashboard/").status_code == 200
        users = dash.report("power-users")["users"]
        someone = next(u["identifiers"][0] for u in users if u["person_id"] is not None)
        refused = client.post("/dashboard/person/erase", data={"name": someone})
        assert refused.status_code == 403
        forged = client.post("/dashboard/person/erase", data={"name": someone, "csrf": "x" * 43})
        assert forged.status_code == 403
        assert dash.api(f"/api/persons/{someone}")["person_id"]  # still there
        assert client.post("/dashboard/logout", data={}).status_code == 403
        copied = dict(client.cookies)  # what a stolen copy of the cookie would hold
        out = client.post("/dashboard/logout", data={"csrf": csrf_token})
        assert (out.status_code, out.headers["location"]) == (303, "/dashboard/login")
        assert client.get("/dashboard/").status_code == 303
    # Logout ends the session on the server: the copied cookie no longer signs anyone in.
    with dash.srv.client(follow_redirects=False, cookies=copied) as replay:
        assert replay.get("/dashboard/").status_code == 303


def test_secrets_are_stored_hashed_or_private(dash: Dashboard, tmp_path: Path) -> None:
    """The admin password only as an scrypt hash (a plain one is refused at start-up);
    the generated session secret readable by its owner only."""
    made = subprocess.run(
        [sys.executable, "-m", "footfall", "hash-password"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        check=True,
        env=dash.srv.env,
    )
    line = made.stdout.strip()
    assert line.startswith('admin_password_hash = "scrypt$')
    encoded = line.split('"')[1]
    assert verify_password("a long enough password", encoded)
    assert not verify_password("a long enough passwore", encoded)
    refused = subprocess.run(
        [sys.executable, "-m", "footfall", "migrate", "--database", str(tmp_path / "x.duckdb")],
        capture_output=True,
        text=True,
        env={**dash.srv.env, "FOOTFALL_ADMIN_PASSWORD_HASH": "hunter2hunter2"},
    )
    assert refused.returncode == 2
    assert "admin_password_hash" in refused.stderr
    secret = Path(f"{dash.srv.database}.secret")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert PASSWORD not in (dash.srv.workdir / "footfall.toml").read_text()


def test_a_key_sees_only_its_own_tenant(dash: Dashboard) -> None:
    with session_client(dash) as (client, _):
        assert client.get("/dashboard/?site=other").status_code == 403
        assert client.get("/dashboard/persons?tenant=other&q=a").status_code == 403
        own = client.get("/dashboard/?site=default,help")
        assert own.status_code == 200
        assert 'value="other"' not in own.text
    with session_client(dash, dash.other_key) as (client, _):
        page = client.get("/dashboard/")
        assert 'value="other"' in page.text
        assert 'value="default"' not in page.text
        assert client.get("/dashboard/?site=default").status_code == 403
        name = dash.api("/api/reports/power-users")["users"][0]["identifiers"][0]
        assert client.get("/dashboard/person", params={"name": name}).status_code == 404


# --------------------------------------------------------------------------- analytics pages


def test_every_analytics_page_shows_the_api_numbers(
    dash: Dashboard, context: BrowserContext
) -> None:
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(dash.srv.url + "/dashboard/")
    page.screenshot(path=str(dash.shots / "dashboard-login.png"))
    login(page, dash)
    assert page.get_by_test_id("viewer").inner_text().startswith("API key of")

    # Overview: the key's own site and the last 30 days, like the API without parameters.
    open_page(page, dash, "/dashboard/")
    api = dash.report("overview")
    assert api["people"] > 0
    assert api["orders"] > 0
    assert shown(page, "kpi-people") == api["people"]
    assert shown(page, "kpi-conversations") == api["conversations"]
    assert shown(page, "kpi-revenue") == api["revenue_eur"]
    assert shown(page, "kpi-conversion") == pct(api["conversion_rate"])
    for testid, field in (
        ("kpi-visits", "visits"),
        ("kpi-messages", "messages"),
        ("kpi-orders", "orders"),
        ("kpi-events", "events"),
    ):
        assert shown(page, testid) == api[field]
    trend = figure(page, "chart-trend")["data"]
    assert trend[0]["y"] == [d["people"] for d in api["daily"]]
    assert trend[1]["y"] == [d["conversations"] for d in api["daily"]]
    assert figure(page, "chart-revenue")["data"][0]["y"] == [d["revenue_eur"] for d in api["daily"]]
    page.screenshot(path=str(dash.shots / "dashboard-overview.png"), full_page=True)

    # Quick range, custom dates and the site picker travel in the query string.
    page.get_by_test_id("range-7").click()
    wait_for_charts(page)
    assert params_of(page)["days"] == "7"
    assert shown(page, "kpi-people") == dash.report("overview", days="7")["people"]
    page.get_by_test_id("date-from").fill(api["filters"]["start"][:10])
    page.get_by_test_id("date-to").fill(api["daily"][-3]["day"])
    page.get_by_test_id("apply-range").click()
    wait_for_charts(page)
    chosen = params_of(page)
    assert "days" not in chosen
    custom = dash.report("overview", **{"from": chosen["from"], "to": chosen["to"]})
    assert chosen["to"] == api["daily"][-3]["day"]
    assert shown(page, "kpi-people") == custom["people"]
    assert shown(page, "kpi-revenue") == custom["revenue_eur"]
    page.get_by_test_id("site-picker").select_option("default,help")
    page.wait_for_url(re.compile(r"site=default%2Chelp"))
    wait_for_charts(page)
    both = dash.report(
        "overview", site="default,help", **{"from": chosen["from"], "to": chosen["to"]}
    )
    assert shown(page, "kpi-people") == both["people"] > custom["people"]
    # The chosen site and range stay when moving to another page.
    page.get_by_role("link", name="Unique people").click()
    assert params_of(page) == {"site": "default,help", "from": chosen["from"], "to": chosen["to"]}

    # Unique people per week.
    open_page(page, dash, "/dashboard/people")
    page.get_by_test_id("interval").select_option("week")
    page.wait_for_url(re.compile(r"interval=week"))
    wait_for_charts(page)
    people = dash.report("people", interval="week")
    assert shown(page, "kpi-people") == people["people"]
    assert figure(page, "chart-people")["data"][0]["y"] == [s["people"] for s in people["series"]]
    page.screenshot(path=str(dash.shots / "dashboard-people.png"), full_page=True)

    # Retention heatmap: each cell that has begun is the API's rate.
    open_page(page, dash, "/dashboard/retention")
    retention = dash.report("retention")
    heat = figure(page, "chart-retention")["data"][0]
    assert heat["y"] == [f"{c['cohort']} · {c['size']:,}" for c in retention["cohorts"]]
    # Only the periods that begin within the range (issue 25): the later ones are left out.
    columns = len(heat["x"])
    assert 0 < columns <= retention["periods"]
    for row, cohort in zip(heat["z"], retention["cohorts"], strict=True):
        assert row[0] == 100.0
        assert not any(r for r in cohort["rates"][columns:])
        for value, rate in zip(row, cohort["rates"][:columns], strict=True):
            assert value is None or value == pct(rate)
    assert any(v is not None and 0 < v < 100 for row in heat["z"] for v in row)
    page.screenshot(path=str(dash.shots / "dashboard-retention.png"), full_page=True)

    # Funnel, then broken down by A/B group with the selector.
    open_page(page, dash, "/dashboard/funnel")
    funnel = dash.report("funnel")
    steps = funnel["overall"]["steps"]
    assert cells(page, "funnel-step", "step-people") == [s["people"] for s in steps]
    assert cells(page, "funnel-step", "step-conversion") == [pct(s["conversion"]) for s in steps]
    assert figure(page, "chart-funnel")["data"][0]["x"] == [s["people"] for s in steps]
    page.get_by_test_id("breakdown").select_option("ab_group")
    page.wait_for_url(re.compile(r"breakdown=ab_group"))
    wait_for_charts(page)
    by_group = dash.report("funnel", breakdown="ab_group")
    for group in by_group["groups"]:
        row = page.locator(f"[data-testid=funnel-group][data-group='{group['group']}']")
        assert [number(t) for t in row.get_by_test_id("group-step-people").all_inner_texts()] == [
            s["people"] for s in group["steps"]
        ]
    assert {g["group"] for g in by_group["groups"]} >= {"control", "test"}
    page.screenshot(path=str(dash.shots / "dashboard-funnel.png"), full_page=True)

    # A/B test: groups, p-value, interval and the verdict in words.
    open_page(page, dash, "/dashboard/ab")
    ab = dash.report("ab")
    comparison = ab["comparison"]
    assert comparison is not None
    assert cells(page, "ab-group", "ab-people") == [g["people"] for g in ab["groups"]]
    assert cells(page, "ab-group", "ab-conversion") == [
        pct(g["conversion"], 2) for g in ab["groups"]
    ]
    assert cells(page, "ab-group", "ab-revenue") == [g["revenue_eur"] for g in ab["groups"]]
    assert shown(page, "ab-p") == round(comparison["p_value"], 4)
    assert shown(page, "ab-difference") == round(comparison["difference"] * 100, 2)
    low, high = page.get_by_test_id("ab-ci").inner_text().split(" to ")
    assert [number(low), number(high)] == [round(x * 100, 2) for x in comparison["ci95"]]
    verdict = page.get_by_test_id("ab-verdict").inner_text()
    assert ("statistically significant" in verdict) == comparison["significant"]
    assert "95% interval" in verdict
    page.screenshot(path=str(dash.shots / "dashboard-ab.png"), full_page=True)

    # Revenue and top items.
    open_page(page, dash, "/dashboard/revenue")
    revenue = dash.report("revenue")
    assert shown(page, "kpi-revenue") == revenue["revenue_eur"]
    assert shown(page, "kpi-orders") == revenue["orders"]
    assert shown(page, "kpi-aov") == revenue["average_order_eur"]
    assert cells(page, "top-item", "item-revenue") == [
        i["revenue_eur"] for i in revenue["top_items"]
    ]
    page.screenshot(path=str(dash.shots / "dashboard-revenue.png"), full_page=True)

    # Popups (display -> open per version) and answer feedback per chatbot.
    open_page(page, dash, "/dashboard/widget")
    popups, feedback = dash.report("popups"), dash.report("feedback")
    versions = popups["versions"]
    assert versions
    assert feedback["chatbots"]
    assert cells(page, "popup-row", "popup-displays") == [v["displays"] for v in versions]
    assert cells(page, "popup-row", "popup-opens") == [v["opens"] for v in versions]
    assert cells(page, "popup-row", "popup-rate") == [pct(v["open_rate"]) for v in versions]
    bots = feedback["chatbots"]
    assert cells(page, "feedback-row", "feedback-likes") == [c["likes"] for c in bots]
    assert cells(page, "feedback-row", "feedback-dislikes") == [c["dislikes"] for c in bots]
    page.screenshot(path=str(dash.shots / "dashboard-widget.png"), full_page=True)

    # Questions and power users.
    open_page(page, dash, "/dashboard/questions")
    power = dash.report("power-users")
    assert cells(page, "question-row", "question-count") == [
        q["count"] for q in power["common_questions"]
    ]
    assert cells(page, "power-user", "user-conversations") == [
        u["conversations"] for u in power["users"]
    ]
    page.screenshot(path=str(dash.shots / "dashboard-questions.png"))

    # Client errors.
    open_page(page, dash, "/dashboard/errors")
    errors = dash.report("errors")
    assert shown(page, "kpi-errors") == errors["total"] > 0
    assert cells(page, "error-row", "error-count") == [e["count"] for e in errors["errors"]]
    page.screenshot(path=str(dash.shots / "dashboard-errors.png"), full_page=True)
    assert problems == []


def test_admin_sees_every_site(dash: Dashboard, context: BrowserContext) -> None:
    page = context.new_page()
    login(page, dash, password=PASSWORD, path="/dashboard/revenue?days=60")
    assert urlsplit(page.url).path == "/dashboard/revenue"
    assert page.get_by_test_id("viewer").inner_text() == "Administrator"
    wait_for_charts(page)
    options = page.get_by_test_id("site-picker").locator("option").all_inner_texts()
    assert options[0] == "All sites"
    assert "Other shop" in options
    # "All sites" is every site: the demo's two sites of one tenant hold every event.
    api = dash.report("revenue", days="60", site="default,help")
    assert shown(page, "kpi-revenue") == api["revenue_eur"]
    assert shown(page, "kpi-orders") == api["orders"]
    page.get_by_test_id("site-picker").select_option("other")
    page.wait_for_url(re.compile(r"site=other"))
    assert (
        shown(page, "kpi-orders") == dash.report("revenue", key=dash.other_key, days="60")["orders"]
    )


def test_texts_from_visitors_are_escaped(dash: Dashboard, context: BrowserContext) -> None:
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    with dash.srv.client() as client:
        for event, data in (("error", {"message": hostile}), ("message_sent", {"text": hostile})):
            answer = client.post(
                "/api/analytics/track",
                json={"event": event, "token": "hostile_visitor_1", "data": data},
            )
            assert answer.status_code == 200
    page = context.new_page()
    login(page, dash)
    open_page(page, dash, "/dashboard/errors")
    assert hostile in page.get_by_test_id("errors").inner_text()
    page.goto(dash.srv.url + "/dashboard/persons?q=hostile_visitor")
    assert page.get_by_test_id("search-hit").count() == 1
    page.get_by_test_id("search-hit").get_by_role("link").click()
    wait_for_charts(page)
    assert page.get_by_test_id("journey").inner_text().count(hostile) == 2
    assert page.evaluate("window.pwned") is None


# --------------------------------------------------------------------------- persons


def test_person_search_profile_explain_split_export_and_erase(
    dash: Dashboard, context: BrowserContext
) -> None:
    page = context.new_page()
    login(page, dash, path="/dashboard/persons")
    page.get_by_test_id("search-input").fill("@example.test")
    page.get_by_test_id("search-submit").click()
    hits = page.get_by_test_id("search-hit")
    assert hits.count() >= 2
    names = [hits.nth(i).get_attribute("data-name") for i in range(2)]
    assert all(n and n.startswith("email:") for n in names)
    first, second = str(names[0]), str(names[1])
    page.screenshot(path=str(dash.shots / "dashboard-search.png"))

    # Profile and journey: the API's person.
    hits.nth(0).get_by_role("link").click()
    wait_for_charts(page)
    profile = dash.api(f"/api/persons/{first}")
    assert page.get_by_test_id("person-id").inner_text() == f"#{profile['person_id']}"
    assert shown(page, "kpi-events") == profile["events"] > 0
    assert page.get_by_test_id("journey-event").count() == min(profile["events"], 1000)
    tokens = [f"{i['kind']}:{i['value']}" for i in profile["identifiers"] if i["kind"] == "token"]
    assert len(tokens) == 2  # the demo joins two tokens through an email

    # Explain: the chain token - email - token, as the API has it.
    page.get_by_test_id("explain-a").fill(tokens[0])
    page.get_by_test_id("explain-b").fill(tokens[1])
    page.get_by_test_id("explain-submit").click()
    chain = dash.api("/api/identity/explain", a=tokens[0], b=tokens[1])["chain"]
    steps = page.get_by_test_id("chain-step")
    assert steps.count() == len(chain) == 2
    wait_for_charts(page)
    page.screenshot(path=str(dash.shots / "dashboard-person.png"), full_page=True)

    # Export: the download is the API's export of the same person.
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["person_id"] == profile["person_id"]
    assert len(exported["event_list"]) == profile["events"]

    # Split: removing one link of the chain separates the two tokens.
    page.once("dialog", lambda dialog: dialog.accept())
    steps.nth(0).get_by_test_id("split").click()
    page.get_by_test_id("done-message").wait_for()
    assert page.get_by_test_id("not-linked").is_visible()
    assert dash.api("/api/identity/explain", a=tokens[0], b=tokens[1])["same_person"] is False

    # Erase, with a confirmation page: gone from the search and from the API.
    page.goto(dash.srv.url + "/dashboard/persons?q=" + second.split(":", 1)[1])
    page.get_by_test_id("search-hit").get_by_role("link").click()
    events = dash.api(f"/api/persons/{second}")["events"]
    page.get_by_test_id("erase").click()
    assert shown(page, "erase-events") == events
    page.screenshot(path=str(dash.shots / "dashboard-erase.png"))
    page.get_by_test_id("erase-confirm").click()
    assert f"{events:,} events deleted" in page.get_by_test_id("done-message").inner_text()
    page.get_by_test_id("search-input").fill(second.split(":", 1)[1])
    page.get_by_test_id("search-submit").click()
    assert page.get_by_test_id("no-hits").is_visible()
    with dash.srv.client(headers={"authorization": f"Bearer {dash.key}"}) as client:
        assert client.get(f"/api/persons/{second}").status_code == 404


def test_a_token_seen_only_on_events_is_a_person_too(
    dash: Dashboard, context: BrowserContext
) -> None:
    """A visitor who never identified has no graph node; the dashboard still shows them."""
    power = dash.report("power-users")["users"]
    token = next(u["token"] for u in power if u["person_id"] is None)
    page = context.new_page()
    login(page, dash, path=f"/dashboard/persons?q={token}")
    hit = page.get_by_test_id("search-hit")
    assert hit.get_attribute("data-name") == f"token:{token}"
    hit.get_by_role("link").click()
    wait_for_charts(page)
    assert page.get_by_test_id("identifier").get_attribute("data-name") == f"token:{token}"
    assert shown(page, "kpi-events") == dash.api(f"/api/persons/token:{token}")["events"] > 0


def test_no_password_or_key_in_the_server_log(dash: Dashboard) -> None:
    """Last in the module: every login above, good and bad, has been logged by now."""
    log = dash.srv.log.read_text()
    assert "dashboard login" in log
    for secret in (PASSWORD, "guess", dash.key, dash.other_key):
        assert secret not in log
