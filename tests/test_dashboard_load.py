"""How long the dashboard's pages take on 1,000,000 demo events (measured, not asserted).

``footfall demo`` writes a million events into the server's DuckDB file, then every page
is fetched over HTTP (the server's whole work: session, report queries in a worker thread,
rendering) and opened in headless Chromium (until every chart is drawn, Plotly's bundle
already cached, as for a site owner moving between pages). The figures are printed (run
with ``-s`` to see them) and written to bench/results/dashboard.json. The target is under
one second per page; timing depends on the machine, so the test only checks that every
page answers correctly.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from conftest import Server, launch_chromium

EVENTS = 1_000_000
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "dashboard.json"
PAGES = (
    "/dashboard/",
    "/dashboard/people",
    "/dashboard/people?interval=week",
    "/dashboard/retention",
    "/dashboard/funnel",
    "/dashboard/funnel?breakdown=ab_group",
    "/dashboard/ab",
    "/dashboard/revenue",
    "/dashboard/widget",
    "/dashboard/questions",
    "/dashboard/errors",
    "/dashboard/?days=90&site=default,help",
    "/dashboard/persons?q=example.test",
)
REPEAT = 3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, float]]:
    workdir = tmp_path_factory.mktemp("dashboard-1m")
    srv = Server(workdir, config='default_site = "default"\nallowed_origins = ["*"]\n')
    started = time.perf_counter()
    srv.load_demo(EVENTS, timeout=600)
    built = time.perf_counter() - started
    key = srv.new_key("default")
    srv.start()
    yield srv, key, built
    srv.stop()


def _login(page: Page, srv: Server, key: str) -> None:
    page.goto(srv.url + "/dashboard/login")
    page.get_by_test_id("key").fill(key)
    page.get_by_test_id("key-submit").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))


def test_page_load_times_on_a_million_events(big: tuple[Server, str, float]) -> None:
    srv, key, built = big
    rows: list[dict[str, Any]] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(60_000)
            page = context.new_page()
            _login(page, srv, key)
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            page.goto(srv.url + "/dashboard/retention")  # Plotly's bundle into the cache
            with srv.client(cookies=cookies) as client:
                for path in PAGES:
                    http: list[float] = []
                    for _ in range(REPEAT):
                        begun = time.perf_counter()
                        answer = client.get(path)
                        http.append(time.perf_counter() - begun)
                        assert answer.status_code == 200, (path, answer.text[:500])
                    begun = time.perf_counter()
                    shown = page.goto(srv.url + path)
                    assert shown is not None
                    assert shown.status == 200
                    expect(page.locator("[data-chart]:not([data-drawn=true])")).to_have_count(0)
                    drawn = time.perf_counter() - begun
                    rows.append(
                        {
                            "page": path,
                            "http_first_s": round(http[0], 3),
                            "http_median_s": round(statistics.median(http), 3),
                            "browser_until_charts_drawn_s": round(drawn, 3),
                        }
                    )
        finally:
            browser.close()
    report = {
        "events": EVENTS,
        "demo_build_seconds": round(built, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "pages": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ndashboard on {EVENTS:,} demo events (built in {built:.1f} s):")
    print(f"{'page':44} {'HTTP first':>10} {'median':>8} {'browser':>8}")
    for row in rows:
        print(
            f"{row['page']:44} {row['http_first_s']:>9.3f}s {row['http_median_s']:>7.3f}s "
            f"{row['browser_until_charts_drawn_s']:>7.3f}s"
        )
    assert len(rows) == len(PAGES)
