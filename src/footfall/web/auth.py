"""Dashboard logins: signed session cookies, CSRF tokens, and who is signed in.

A session is a small JSON object signed with HMAC-SHA256 and kept in an HttpOnly,
SameSite=Lax cookie scoped to /dashboard; it carries an expiry, a CSRF token and who logged
in (``admin``, or the id of the API key, never the key itself), so revoking the key or
changing the admin password (``footfall.passwords``) ends the session at its next request.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request

from footfall.errors import ApiError
from footfall.passwords import b64url, unb64url
from footfall.sites import Authority
from footfall.store.base import Site

log = logging.getLogger("footfall.web")

SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 16_384


class SessionCodec:
    """Signs and checks session cookies (HMAC-SHA256 over base64url JSON, with an expiry)."""

    def __init__(self, secret: bytes, max_age: int = SESSION_SECONDS) -> None:
        # A key of its own for this purpose, whatever else the secret is used for.
        self._key = hashlib.sha256(b"footfall-dashboard-session\0" + secret).digest()
        self.max_age = max_age

    def _sign(self, payload: str) -> str:
        return b64url(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def encode(self, data: dict[str, Any]) -> str:
        payload = b64url(msgspec.json.encode({**data, "exp": int(time.time()) + self.max_age}))
        return f"{payload}.{self._sign(payload)}"

    def decode(self, value: str | None) -> dict[str, Any] | None:
        """The session, or None when the cookie is missing, forged, garbled or expired."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data = msgspec.json.decode(unb64url(payload))
        except (msgspec.DecodeError, binascii.Error, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            return None
        if data["exp"] < time.time():
            return None
        return data


class LoginRequired(Exception):
    """No valid session: pages answer 303 to the login page."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is logged in: the admin (every site) or an API key (its tenant's sites)."""

    admin: bool
    csrf: str
    site: Site | None = None

    @property
    def actor(self) -> str:
        return "dashboard:admin" if self.site is None else f"dashboard:{self.site.id}"

    @property
    def label(self) -> str:
        if self.site is None:
            return "Administrator"
        return f"API key of {self.site.name or self.site.id}"

    @property
    def authority(self) -> Authority:
        """What this login may administer: every site, or its key's tenant's sites."""
        if self.site is None:
            return Authority.admin(self.actor)
        return Authority.of_key(self.site, self.actor)

    def sites(self, known: Mapping[str, Site]) -> list[Site]:
        visible = [s for s in known.values() if self.site is None or s.scope == self.site.scope]
        return sorted(visible, key=lambda s: (self.site is not None and s.id != self.site.id, s.id))

    def tenants(self, known: Mapping[str, Site]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for site in self.sites(known):
            out.setdefault(site.scope, []).append(site.id)
        return out


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(session: dict[str, Any] | None, presented: str | None) -> bool:
    expected = session.get(CSRF_FIELD) if session else None
    if not isinstance(expected, str) or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def secret_file(database: str) -> Path | None:
    """Where a generated session secret is kept: beside the DuckDB file, or (PostgreSQL)
    ``footfall.secret`` in the working directory. None for an in-memory database."""
    if database.startswith(("postgresql://", "postgres://")):
        return Path("footfall.secret")
    if database in ("", ":memory:"):
        return None
    return Path(f"{database}.secret")


def load_session_secret(configured: str | None, database: str) -> bytes:
    """The configured ``session_secret``, else one generated once per install and kept in a
    file only its owner can read; if that file cannot be written, one per process (sessions
    then end when the server restarts)."""
    if configured:
        return configured.encode()
    path = secret_file(database)
    if path is None:
        return secrets.token_bytes(32)
    try:
        try:
            existing = path.read_bytes().strip()
        except FileNotFoundError:
            return _create_secret(path)
        if existing:
            return existing
        raise OSError("the session secret file is empty")
    except FileExistsError:  # another process created it meanwhile: use theirs
        time.sleep(0.1)
        return path.read_bytes().strip() or secrets.token_bytes(32)
    except OSError as exc:
        log.warning(
            "no usable session secret file; dashboard sessions end when the server restarts",
            extra={"error": str(exc)[:200]},
        )
        return secrets.token_bytes(32)


def _create_secret(path: Path) -> bytes:
    secret = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret + b"\n")
    return secret


async def read_form(request: Request) -> dict[str, str]:
    """A small URL-encoded form (the dashboard sends nothing else); bounded in size."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "forms must be URL-encoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, "TOO_LARGE", "the form is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "MALFORMED", "the form could not be read") from None
    return dict(pairs)
