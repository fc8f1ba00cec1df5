"""The browser tracker: ``footfall.js`` served minified, the HTTP renewal of its id cookie,
and the demo pages of ``footfall serve --demo``.

The readable source is ``static/footfall.js`` in the package; it is minified once when the
app is built (rjsmin: whitespace and comments only, names stay readable) and gzipped once, so
a request costs a dictionary lookup.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import rjsmin
from publicsuffixlist import PublicSuffixList
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from footfall.store.base import EventRow

TRACKER_PATH = "/footfall.js"
SIZE_BUDGET_BYTES = 6 * 1024
"""SPEC: footfall.js is at most 6 KB minified and gzipped, consent screen included."""
COOKIE_MAX_AGE = 399 * 86_400
"""Browsers cap cookie lifetimes at 400 days; 399 leaves a day of slack."""
CACHE_SECONDS = 3_600
"""The URL carries no version, so caches hold the script for an hour, then revalidate."""
COOKIE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")


@dataclass(frozen=True, slots=True)
class TrackerAsset:
    source: bytes
    minified: bytes
    gzipped: bytes
    etag: str


def build_tracker() -> TrackerAsset:
    """Read, minify and gzip the tracker (done once per app)."""
    source = (files("footfall") / "static" / "footfall.js").read_bytes()
    minified = rjsmin.jsmin(source.decode("utf-8"), keep_bang_comments=True).encode("utf-8")
    gzipped = gzip.compress(minified, compresslevel=9, mtime=0)
    etag = '"' + hashlib.sha256(minified).hexdigest()[:20] + '"'
    return TrackerAsset(source, minified, gzipped, etag)


def tracker_route() -> Route:
    asset = build_tracker()
    common = {
        "cache-control": f"public, max-age={CACHE_SECONDS}",
        "etag": asset.etag,
        "vary": "Accept-Encoding",
        "x-content-type-options": "nosniff",
        # Pages that isolate themselves (COEP) may still load it from the Footfall host.
        "cross-origin-resource-policy": "cross-origin",
    }
    media_type = "text/javascript; charset=utf-8"

    async def serve(request: Request) -> Response:
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=common)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers = {**common, "content-encoding": "gzip"}
            return Response(asset.gzipped, media_type=media_type, headers=headers)
        return Response(asset.minified, media_type=media_type, headers=common)

    return Route(TRACKER_PATH, serve, methods=["GET", "HEAD"])


# --------------------------------------------------------------------------- cookie renewal


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped in the pinned package; no download


def registrable_domain(host: str | None) -> str | None:
    """``www.shop.co.uk`` → ``shop.co.uk``; None for IPs, public suffixes and bare names."""
    if not host:
        return None
    host = host.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if "." not in host:
        return None
    found: str | None = _suffixes().privatesuffix(host)
    return found


def _hostname(authority: str | None) -> str | None:
    if not authority:
        return None
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:
        return None


def renew_id_cookie(
    request: Request, origin: str | None, row: EventRow, response: Response
) -> None:
    """Renew the tracker's id cookie over HTTP when Footfall runs on the site's own domain.

    Safari keeps cookies written by scripts for 7 days; one set by an HTTP response of the
    site's own domain keeps its full 399 days. The tracker names its cookie in the
    ``cookie`` query parameter (cookie mode only). The cookie is renewed only if the request
    carries it with the event's token as value, the event is not ephemeral, and the page and
    this server share a registrable domain: the server never creates an id the browser did
    not already hold, so consent stays with the tracker.
    """
    name = request.query_params.get("cookie")
    if not name or row.ephemeral or COOKIE_NAME.fullmatch(name) is None:
        return
    if _TOKEN.fullmatch(row.token) is None or request.cookies.get(name) != row.token:
        return
    if origin is None:
        return
    page = urlsplit(origin)
    domain = registrable_domain(page.hostname)
    if domain is None or domain != registrable_domain(_hostname(request.headers.get("host"))):
        return
    response.set_cookie(
        name,
        row.token,
        max_age=COOKIE_MAX_AGE,
        path="/",
        domain=domain,
        secure=page.scheme == "https",
        httponly=False,  # the tracker reads it
        samesite="lax",
    )


# --------------------------------------------------------------------------- demo pages


def examples_dir() -> Path:
    """The repository's ``examples/`` (the demo pages), next to ``src/`` in a checkout."""
    return Path(__file__).resolve().parents[3] / "examples"


def mount_demo(app: Starlette) -> None:
    """``/demo/``: the shop with its chat widget and the support form, tracked by this server."""
    directory = examples_dir()
    if not (directory / "shop.html").is_file():
        raise FileNotFoundError(
            f"demo pages not found in {directory}: --demo serves examples/ of a source checkout"
        )

    async def home(request: Request) -> Response:
        return RedirectResponse("/demo/")

    app.add_route("/", home, methods=["GET"])
    app.mount("/demo", StaticFiles(directory=directory, html=True), name="demo")
