"""Sites (tenants): which site a call belongs to, which origins it accepts, its API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from footfall.config import Settings
from footfall.errors import ORIGIN_NOT_ALLOWED, ApiError, invalid
from footfall.store.base import Site, Store

SITE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_DEFAULT_PORTS = {"http": 80, "https": 443}
KEY_PREFIX = "ff"
NULL_ORIGIN = "null"
"""The opaque origin browsers send from sandboxed frames, ``file:`` pages and some redirects:
any page can produce it, so a site accepts it only when it lists ``null`` by name (``*``
means any web origin, not this one)."""


def normalise_origin(value: str) -> str | None:
    """``HTTPS://Shop.com:443/`` and ``https://shop.com`` are the same origin."""
    value = value.strip()
    if value == "*":
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def validate_origin_pattern(value: str) -> str:
    """Accept ``*``, ``null``, an origin, or ``scheme://*.domain`` for every subdomain of a
    domain."""
    if value.strip() == "*":
        return "*"
    if value.strip().lower() == NULL_ORIGIN:
        return NULL_ORIGIN
    wildcard = "://*." in value
    normalised = normalise_origin(value.replace("://*.", "://wildcard.") if wildcard else value)
    if normalised is None:
        raise ValueError(f"not an origin (scheme://host[:port]): {value!r}")
    return normalised.replace("://wildcard.", "://*.") if wildcard else normalised


def _matches(pattern: str, origin: str) -> bool:
    if pattern == origin:
        return True
    if pattern == "*":
        return origin != NULL_ORIGIN
    if "://*." in pattern:
        scheme, rest = pattern.split("://*.", 1)
        prefix = f"{scheme}://"
        return origin.startswith(prefix) and origin[len(prefix) :].endswith("." + rest)
    return False


@dataclass(slots=True)
class SiteRegistry:
    """An in-memory view of the sites, consulted on every tracking call."""

    sites: dict[str, Site]
    default_site: str
    allow_missing_origin: bool = True

    @classmethod
    def load(cls, store: Store, default_site: str, allow_missing_origin: bool) -> SiteRegistry:
        return cls({s.id: s for s in store.list_sites()}, default_site, allow_missing_origin)

    def allows(self, site: Site, origin: str | None) -> bool:
        if origin is None:
            return self.allow_missing_origin
        return any(_matches(pattern, origin) for pattern in site.allowed_origins)

    def resolve(self, explicit: str | None, origin: str | None) -> Site:
        """The site a call is for, or 403/422: an explicit id wins, then the Origin's owner."""
        if explicit:
            site = self.sites.get(explicit)
            if site is None:
                raise invalid("site", f"unknown site '{explicit[:64]}'")
        else:
            site = self._owner(origin) or self.sites.get(self.default_site)
            if site is None:
                raise invalid("site", "no site given and no default site configured")
        if not self.allows(site, origin):
            if origin == NULL_ORIGIN:
                message = (
                    "origin null (a sandboxed frame or file: page) is not allowed for site; "
                    "it is accepted only where 'null' is listed among the allowed origins"
                )
            else:
                message = f"origin {origin or '(none)'} is not allowed for site"
            raise ApiError(403, ORIGIN_NOT_ALLOWED, message)
        return site

    def _owner(self, origin: str | None) -> Site | None:
        if origin is None:
            return None
        for site in self.sites.values():
            if any(p != "*" and _matches(p, origin) for p in site.allowed_origins):
                return site
        return None


def hash_key(key: str) -> str:
    """Keys carry 256 random bits, so a plain SHA-256 is as strong as a slow password hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(store: Store, site_id: str, label: str = "") -> str:
    """Create a key, store only its hash, and return the key (shown once)."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    store.add_api_key(key_id, site_id, hash_key(key), label)
    return key


def verify_api_key(store: Store, presented: str) -> str | None:
    """The site id the key belongs to, or None; the hash comparison is constant-time."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    record = store.get_api_key(parts[1])
    if record is None or record.revoked:
        return None
    if not hmac.compare_digest(record.key_hash, hash_key(presented)):
        return None
    return record.site_id


class KeyVerifier:
    """Checks presented API keys; verified ones are remembered briefly (one hash per call)."""

    def __init__(self, ttl_seconds: float = 30.0) -> None:
        self.ttl = ttl_seconds
        self._verified: dict[str, tuple[str, float]] = {}
        self._writers: dict[str, tuple[str, float]] = {}

    def write_site_id(self, store: Store, presented: str) -> str | None:
        """The site of a write key, or None; remembered for ``ttl`` like API keys, so the
        hot Segment path costs no query per call (at most 1,000 keys remembered)."""
        import time

        cached = self._writers.get(presented)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        site_id = write_key_site(store, presented)
        if site_id is not None:
            if len(self._writers) >= 1000:
                self._writers.clear()
            self._writers[presented] = (site_id, time.monotonic() + self.ttl)
        return site_id

    def site_id(self, store: Store, presented: str) -> str | None:
        import time

        digest = hash_key(presented)
        cached = self._verified.get(digest)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        site_id = verify_api_key(store, presented)
        if site_id is not None:
            self._verified[digest] = (site_id, time.monotonic() + self.ttl)
        return site_id


WRITE_KEY_PREFIX = "fw"
_WRITE_KEY_PATTERN = re.compile(r"fw_[A-Za-z0-9_-]{32}")


@dataclass(frozen=True, slots=True)
class WriteKey:
    """A site's public write key: it may only send events to its site (the Segment-spec
    API), never read or administer anything. Public by design (it sits in every page),
    so it is stored as it is and can be shown again; rotating it revokes the old one."""

    key: str
    site_id: str
    created_at: datetime
    revoked: bool


def write_key(store: Store, site_id: str) -> WriteKey | None:
    """The site's active write key, if it has one."""
    rows = store.query(
        "SELECT write_key, site_id, created_at, revoked_at IS NOT NULL FROM write_keys "
        "WHERE site_id = ? AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
        [site_id],
    )
    return WriteKey(*rows[0]) if rows else None


def ensure_write_key(store: Store, site_id: str) -> WriteKey:
    """The site's active write key, created on first use."""
    return write_key(store, site_id) or rotate_write_key(store, site_id)


def rotate_write_key(store: Store, site_id: str) -> WriteKey:
    """A new write key for the site; any earlier one stops working (within the 30 s a
    running server remembers a verified key)."""
    if store.get_site(site_id) is None:
        raise ValueError(f"no site '{site_id}'")
    key = f"{WRITE_KEY_PREFIX}_{secrets.token_urlsafe(24)}"
    now = _utcnow()
    with store.transaction() as tx:
        tx.query(
            "UPDATE write_keys SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL",
            [now, site_id],
        )
        tx.query("INSERT INTO write_keys VALUES (?, ?, ?, NULL)", [key, site_id, now])
    return WriteKey(key, site_id, now, False)


def revoke_write_key(store: Store, site_id: str) -> bool:
    """Revoke the site's write key; False if it had none."""
    rows = store.query(
        "UPDATE write_keys SET revoked_at = ? WHERE site_id = ? AND revoked_at IS NULL "
        "RETURNING write_key",
        [_utcnow(), site_id],
    )
    return bool(rows)


def write_key_site(store: Store, presented: str) -> str | None:
    """The site an active write key sends to, or None."""
    if _WRITE_KEY_PATTERN.fullmatch(presented) is None:
        return None
    rows = store.query(
        "SELECT site_id FROM write_keys WHERE write_key = ? AND revoked_at IS NULL", [presented]
    )
    return str(rows[0][0]) if rows else None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def seed_sites(store: Store, settings: Settings) -> None:
    """Create the default site once; origins and sites written in the config win when given."""
    explicit = "allowed_origins" in settings.model_fields_set
    existing = store.get_site(settings.default_site)
    if existing is None or explicit:
        origins = [validate_origin_pattern(o) for o in settings.allowed_origins]
        name = existing.name if existing else "Default site"
        tenant = existing.tenant if existing else None
        store.upsert_site(settings.default_site, name, origins, tenant)
    for seed in settings.sites:
        origins = [validate_origin_pattern(o) for o in seed.allowed_origins]
        store.upsert_site(seed.id, seed.name or seed.id, origins, seed.tenant)
