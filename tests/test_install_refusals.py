"""The install check explains refusals: a page on an origin its site does not allow gets 403;
the site's page says how many calls were refused from which origin and allows it in one
click (CSRF and the settings' origin rules), the 403 names the site, and the server logs one
warning, not one per call. Headless Chromium; the browser reaches 127.0.0.1 only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import BrowserContext, expect

from test_first_run import PASSWORD, context, page_server, printed_link, serve

__all__ = ["context"]  # the fixture, used by name below


def test_refused_origins_are_shown_and_allowed_in_one_click(
    tmp_path: Path, context: BrowserContext
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    site_root = tmp_path / "site"
    site_root.mkdir()
    with serve(empty) as (process, base, output), page_server(site_root) as origin:
        link = printed_link(process, output)
        admin = context.new_page()
        parts = urlsplit(link)
        admin.goto(f"{base}{parts.path}?{parts.query}")
        admin.get_by_test_id("setup-password").fill(PASSWORD)
        admin.get_by_test_id("setup-repeat").fill(PASSWORD)
        admin.get_by_test_id("setup-submit").click()
        admin.get_by_test_id("add-site").click()
        admin.get_by_test_id("site-id").fill("shop")
        admin.get_by_test_id("site-origins").fill("https://www.shop.test")  # not the page's
        admin.get_by_test_id("site-submit").click()
        expect(admin.get_by_test_id("install-status")).to_have_text("Waiting for the first event")
        expect(admin.get_by_test_id("refusals")).to_be_hidden()
        (site_root / "index.html").write_text(
            "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>\n"
            + admin.get_by_test_id("snippet").inner_text()
            + "\n</body></html>"
        )
        visitor = context.new_page()
        visitor.goto(f"{origin}/index.html")
        expect(visitor.locator("h1")).to_have_text("Shop")

        # The page's own call was refused, and the 403 names the site.
        refused = httpx.post(
            f"{base}/api/analytics/track?site=shop",
            headers={"origin": origin},
            json={"event": "visitor", "token": "refused-token-01"},
        )
        assert refused.status_code == 403
        assert "site 'shop'" in refused.json()["error"]["message"]
        for n in range(12):
            httpx.post(
                f"{base}/api/analytics/track?site=shop",
                headers={"origin": origin},
                json={"event": "visitor", "token": f"refused-token-{n:02d}"},
            )

        # The install check, polling, shows the refusals without a reload.
        refusal = admin.get_by_test_id("refusal")
        expect(refusal).to_contain_text(f"from {origin}")
        expect(refusal).to_contain_text("allow this origin?")
        shown = refusal.inner_text()
        count = int(shown.split("Refused ", 1)[1].split(" ", 1)[0].replace(",", ""))
        assert count >= 14, shown  # the 13 sent here and the page's own
        admin.screenshot(path=str(tmp_path / "refusals.png"), full_page=True)
        admin.get_by_test_id("allow-origin").click()
        expect(admin.get_by_test_id("done-message")).to_contain_text("origin was added")
        expect(admin.get_by_test_id("refusals")).to_be_hidden()

        # Allowed now: the page's next visit arrives.
        visitor.reload()
        expect(admin.get_by_test_id("install-status")).to_have_text("Receiving events")
        log = output.read_text()
    warnings = [line for line in log.splitlines() if "calls refused" in line]
    assert len(warnings) == 1, warnings  # rate-limited: one per site and origin
    assert '"site": "shop"' in warnings[0]
