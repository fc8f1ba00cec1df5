"""The dashboard's static files, served from installed packages: never from a CDN.

Plotly's browser bundle comes from the installed ``plotly`` Python package
(``plotly/package_data/plotly.min.js``), the dashboard's own CSS and JS from this package.
Each file is read and gzipped once, on first request, and served with a long cache
lifetime: its URL carries a version, so a new release is a new URL.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import Response

from footfall.errors import NOT_FOUND, ApiError

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class _Loaded:
    raw: bytes
    gzipped: bytes
    etag: str
    media_type: str


class Assets:
    def __init__(self) -> None:
        static = resources.files("footfall.web") / "static"
        self._sources = {
            "plotly.min.js": resources.files("plotly") / "package_data" / "plotly.min.js",
            "dashboard.css": static / "dashboard.css",
            "dashboard.js": static / "dashboard.js",
        }
        self._versions: dict[str, str] = {}
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def url(self, name: str) -> str:
        """The versioned URL templates link to (an unknown name is a programming error)."""
        if name not in self._sources:
            raise KeyError(name)
        stamp = self._versions.get(name)
        if stamp is None:
            if name == "plotly.min.js":
                stamp = version("plotly")
            else:  # small files: their content hash, so an edit is a new URL
                stamp = hashlib.sha256(self._sources[name].read_bytes()).hexdigest()[:12]
            self._versions[name] = stamp
        return f"/dashboard/assets/{name}?v={stamp}"

    def _load(self, name: str) -> _Loaded:
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is None:
                raw = self._sources[name].read_bytes()
                loaded = _Loaded(
                    raw,
                    gzip.compress(raw, compresslevel=6, mtime=0),
                    '"' + hashlib.sha256(raw).hexdigest()[:20] + '"',
                    _TYPES[name[name.rindex(".") :]],
                )
                self._loaded[name] = loaded
            return loaded

    async def response(self, request: Request, name: str) -> Response:
        if name not in self._sources:
            raise ApiError(404, NOT_FOUND, "no such file")
        loaded = self._loaded.get(name)
        if loaded is None:  # first request: read and gzip once, off the event loop
            loaded = await asyncio.to_thread(self._load, name)
        headers = {
            "etag": loaded.etag,
            "cache-control": "public, max-age=31536000, immutable",
            "vary": "Accept-Encoding",
            "x-content-type-options": "nosniff",
        }
        if request.headers.get("if-none-match") == loaded.etag:
            return Response(status_code=304, headers=headers)
        body = loaded.raw
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = loaded.gzipped
            headers["content-encoding"] = "gzip"
        if request.method == "HEAD":
            headers["content-length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=loaded.media_type)
        return Response(body, headers=headers, media_type=loaded.media_type)
