"""First run to first insight, in headless Chromium, on DuckDB and on PostgreSQL.

From an empty directory: start ``footfall serve``, read the setup link it prints, set the
admin password, add a site with an origin, copy its snippet into a page served on that
origin (a second HTTP server on 127.0.0.1, another port: another origin), load the page, see
"Receiving events" and the event on the site's page and in its overview, create a key and
revoke it (a call with it gets 401 at once), all without stopping the server. The browser
may reach 127.0.0.1 only. With FOOTFALL_SCREENSHOTS=<dir>, the README's first-run
screenshots are written there (from the DuckDB run).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from conftest import CLEAN_EXIT, free_port, setup_links
from pgserver import PostgresServer

PASSWORD = "first run password"
WAIT_MS = 30_000


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(WAIT_MS)
    escaped: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            escaped.append(route.request.url)
            route.abort()

    ctx.route("**/*", loopback_only)
    yield ctx
    ctx.close()
    assert escaped == [], f"the browser tried to leave the loopback interface: {escaped}"


@contextlib.contextmanager
def page_server(root: Path) -> Iterator[str]:
    """The site's own web server: static files from ``root`` on 127.0.0.1, another port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve(workdir: Path, *database: str) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``footfall serve`` in ``workdir`` with no config at all; its output, and the URL."""
    port = free_port()
    output = workdir / "serve.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "footfall", "serve", "--port", str(port), *database],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in CLEAN_EXIT


def printed_link(process: subprocess.Popen[bytes], output: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        links = setup_links(output.read_text())
        if links:
            return links[0][0]
        assert process.poll() is None, output.read_text()
        time.sleep(0.05)
    raise AssertionError(f"no setup link printed:\n{output.read_text()}")


def shots_dir(backend: str) -> Path | None:
    wanted = os.environ.get("FOOTFALL_SCREENSHOTS")
    return Path(wanted) if wanted and backend == "duckdb" else None


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, tuple[str, ...]]]:
    """The ``--database`` arguments: none (./footfall.duckdb), or an empty PostgreSQL
    database that the server migrates."""
    if request.param == "duckdb":
        yield "duckdb", ()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    name = f"footfall_first_run_{os.getpid()}_{random.randrange(10**6)}"
    url = postgres.create_database(name)
    yield "postgresql", ("--database", url)
    postgres.drop_database(name)


def test_first_run_to_first_insight_without_a_restart(
    tmp_path: Path, context: BrowserContext, backend: tuple[str, tuple[str, ...]]
) -> None:
    name, database = backend
    shots = shots_dir(name)
    empty = tmp_path / "empty"
    empty.mkdir()
    site_root = tmp_path / "site"
    site_root.mkdir()
    with serve(empty, *database) as (process, base, output), page_server(site_root) as origin:
        link = printed_link(process, output)
        port = urlsplit(base).port
        assert link.startswith(f"http://localhost:{port}/dashboard/setup?token=")
        admin = context.new_page()

        # 1. The link from the terminal: choose the admin password, land signed in.
        parts = urlsplit(link)
        admin.goto(f"{base}{parts.path}?{parts.query}")
        expect(admin.get_by_test_id("setup-form")).to_be_visible()
        if shots:
            admin.screenshot(path=str(shots / "first-run-setup.png"))
        admin.get_by_test_id("setup-password").fill(PASSWORD)
        admin.get_by_test_id("setup-repeat").fill(PASSWORD)
        admin.get_by_test_id("setup-submit").click()
        expect(admin.get_by_test_id("done-message")).to_contain_text("admin password is set")
        expect(admin.get_by_test_id("viewer")).to_have_text("Administrator")

        # 2. Add a site whose origin is the page server's.
        admin.get_by_test_id("add-site").click()
        admin.get_by_test_id("site-id").fill("shop")
        admin.get_by_test_id("site-name").fill("My shop")
        admin.get_by_test_id("site-origins").fill(origin)
        admin.get_by_test_id("site-submit").click()
        expect(admin.get_by_test_id("site-title")).to_have_text("My shop")
        expect(admin.get_by_test_id("install-status")).to_have_text("Waiting for the first event")

        # 3. The snippet, with an option ticked, copied into a page on that origin.
        snippet = admin.get_by_test_id("snippet")
        expect(snippet).to_contain_text(f'src="{base}/footfall.js"')
        expect(snippet).to_contain_text('data-site-id="shop"')
        expect(snippet).not_to_contain_text("data-ab-test")
        admin.get_by_test_id("option-ab-test").check()
        expect(snippet).to_contain_text('data-ab-test="true"')
        admin.get_by_test_id("copy-snippet").click()
        expect(admin.get_by_test_id("copy-snippet")).to_have_text("Copied")
        copied = snippet.inner_text()
        (site_root / "index.html").write_text(
            "<!doctype html><html><head><title>Shop</title></head>"
            f"<body><h1>Welcome to the shop</h1>\n{copied}\n</body></html>"
        )
        visitor = context.new_page()
        visitor.goto(f"{origin}/index.html")
        expect(visitor.locator("h1")).to_have_text("Welcome to the shop")

        # 4. The install check turns to "Receiving events" and lists the visit.
        expect(admin.get_by_test_id("install-status")).to_have_text("Receiving events")
        row = admin.get_by_test_id("recent-event").first
        expect(row).to_contain_text("Visit")
        expect(row).to_contain_text(f"{urlsplit(origin).netloc}/index.html")
        expect(admin.get_by_test_id("site-events-today")).to_have_text("1")
        if shots:
            admin.screenshot(path=str(shots / "first-run-site.png"), full_page=True)
        admin.get_by_test_id("site-analytics").click()
        expect(admin.get_by_test_id("kpi-visits")).to_have_text("1")
        admin.go_back()

        # 5. A key: shown once, works; revoked, refused at once.
        admin.reload()
        admin.get_by_test_id("key-label").fill("reports")
        admin.get_by_test_id("create-key").click()
        key = admin.get_by_test_id("new-key").input_value()
        assert key.startswith("ff_")
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}) as api:
            overview = api.get("/api/reports/overview")
            assert overview.status_code == 200
            assert overview.json()["visits"] == 1
            admin.once("dialog", lambda dialog: dialog.accept())
            admin.get_by_test_id("revoke-key").click()
            expect(admin.get_by_test_id("done-message")).to_contain_text("revoked")
            expect(admin.get_by_test_id("key-revoked")).to_be_visible()
            refused = api.get("/api/reports/overview")
            assert refused.status_code == 401
        if shots:
            sites_page(admin, base, shots)
        assert process.poll() is None  # the same server all along
    log = output.read_text()
    assert log.count('"message": "footfall started"') == 1
    assert log.count(link.split("token=")[1]) == 1  # the printed line, nowhere else


def sites_page(page: Page, base: str, shots: Path) -> None:
    page.goto(f"{base}/dashboard/sites")
    expect(page.get_by_test_id("site-row")).to_have_count(2)
    page.screenshot(path=str(shots / "first-run-sites.png"))
