"""Segment's browser library (``@segment/analytics-next`` from npm, its UMD bundle served
by the test's page server) in headless Chromium, configured with local settings so it
fetches nothing from a CDN: page, identify and track reach a real Footfall server, and
the persons API and reports show exactly that. npm installs it into tests/js on first use
(node_modules is not committed)."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import CONFIG, Server, free_port, launch_chromium

JS = Path(__file__).resolve().parent / "js"
BUNDLE = JS / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"


def ensure_bundle() -> Path:
    if not (BUNDLE / "index.js").is_file():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=JS,
            check=True,
            timeout=300,
        )
    return BUNDLE


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>shop</title>
<script src="/analytics-next/bundles/index.js"></script></head><body><h1>Shop</h1>
<script>
window.done = (async () => {
  const settings = {
    integrations: {"Segment.io": {apiKey: %(key)s, apiHost: %(host)s, protocol: "http"}},
    plan: {}, metrics: {sampleRate: 0}
  };
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    {writeKey: %(key)s, cdnSettings: settings, cdnURL: %(cdn)s});
  await analytics.page("Shop", "Home");
  await analytics.identify("user-b", {email: "b@shop.test", plan: "pro"});
  await analytics.track("Order Completed", {order_id: "ORD-B", currency: "EUR", revenue: 25,
    products: [{product_id: "SKU-9", price: 12.5, quantity: 2}]});
  await analytics.track("Signed Up", {via: "browser"});
  return analytics.user().anonymousId();
})();
</script></body></html>"""


class PageServer:
    """The shop's own web server: its page and the library's bundle, on another port."""

    def __init__(self, port: int, html: str) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        bundle = ensure_bundle()
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                if self.path in ("/", "/shop.html"):
                    body = html.encode()
                    self.send_response(200)
                    self.send_header("content-type", "text/html")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.path = self.path.removeprefix("/analytics-next/bundles")
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        handler = functools.partial(Handler, directory=str(bundle))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Server, str, str, int]]:
    """A Footfall server whose default site allows the shop's origin; its keys; the port
    the shop's page server is to use."""
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    server = Server(tmp_path / "srv", CONFIG.replace('"http://127.0.0.1"', f'"{origin}"'))
    server.start()
    server.stop()
    api_key = server.new_key("default")
    write_key = server.write_key("default")
    server.start()
    yield server, api_key, write_key, page_port
    if server.process is not None:
        server.stop()


def test_analytics_next_in_chromium_sends_page_identify_and_track(
    shop: tuple[Server, str, str, int],
) -> None:
    from playwright.sync_api import Route, sync_playwright

    server, api_key, write_key, page_port = shop
    shop_origin = f"http://127.0.0.1:{page_port}"
    html = PAGE % {
        "key": json.dumps(write_key),
        "host": json.dumps(f"127.0.0.1:{server.port}/v1"),
        "cdn": json.dumps(shop_origin),
    }
    outside: list[str] = []

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as playwright, PageServer(page_port, html):
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            context.route("**/*", guard)
            page = context.new_page()
            page.goto(f"{shop_origin}/shop.html")
            anonymous_id = page.evaluate("window.done")
            _wait_for_events(server, api_key, 3)
            context.close()
        finally:
            browser.close()
    assert outside == []  # nothing from a CDN or anywhere else
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {api_key}"}) as api:
        profile = api.get("/api/persons/client_id:user-b").json()
        # The client id holds the traits, the token the events.
        assert sorted(profile["customer_ids"]) == ["client_id:user-b", f"token:{anonymous_id}"]
        names = {f"{i['kind']}:{i['value']}" for i in profile["identifiers"]}
        assert names == {"client_id:user-b", "email:b@shop.test", f"token:{anonymous_id}"}
        assert profile["metadata"] == {"plan": "pro"}
        journey = api.get("/api/persons/client_id:user-b/journey").json()["events"]
        assert sorted((e["event"], e["custom_event"]) for e in journey) == [
            ("custom", "Signed Up"),
            ("purchase", None),
            ("visitor", None),
        ]
        visit = next(e for e in journey if e["event"] == "visitor")
        assert visit["url"] == f"{shop_origin}/shop.html"
        revenue = api.get("/api/reports/revenue", params={"days": 2}).json()
        assert (revenue["orders"], revenue["revenue_eur"], revenue["buyers"]) == (1, 25.0, 1)
        overview = api.get("/api/reports/overview", params={"days": 2}).json()
        assert (overview["people"], overview["visits"], overview["events"]) == (1, 1, 3)


def _wait_for_events(server: Server, api_key: str, count: int) -> None:
    """The library sends in the background: wait (10 s at most) until the events are in."""
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {api_key}"}) as api:
        while time.monotonic() < deadline:
            overview = api.get("/api/reports/overview", params={"days": 2}).json()
            if overview["events"] >= count:
                return
            time.sleep(0.2)
    raise AssertionError("the browser's events did not arrive within 10 s")
