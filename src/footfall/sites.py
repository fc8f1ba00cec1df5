"""Sites (tenants): which site a call belongs to, which origins it accepts, its API keys, and
their administration while the server runs (shared by the admin API, the dashboard and the
CLI, so each applies the same rules)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from footfall.config import Settings
from footfall.errors import NOT_FOUND, ORIGIN_NOT_ALLOWED, ApiError, invalid
from footfall.store.base import ApiKey, Site, Store

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
            raise OriginRefused(site.id, origin)
        return site

    def _owner(self, origin: str | None) -> Site | None:
        if origin is None:
            return None
        for site in self.sites.values():
            if any(p != "*" and _matches(p, origin) for p in site.allowed_origins):
                return site
        return None


class OriginRefused(ApiError):
    """403 for a call whose origin its site does not allow; names the site (the install
    check counts these per site and origin)."""

    def __init__(self, site_id: str, origin: str | None) -> None:
        if origin == NULL_ORIGIN:
            message = (
                f"origin null (a sandboxed frame or file: page) is not allowed for site "
                f"'{site_id}'; it is accepted only where 'null' is listed among the allowed "
                "origins"
            )
        else:
            message = (
                f"origin {origin or '(none)'} is not allowed for site '{site_id}'; "
                "add it to the site's allowed origins"
            )
        super().__init__(403, ORIGIN_NOT_ALLOWED, message)
        self.site_id = site_id
        self.origin = origin


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


KEY_CACHE_SECONDS = 30.0
"""How long a verified key is remembered: a key revoked by another process (PostgreSQL)
stops working here within this time; one revoked by this process stops at once."""


class KeyVerifier:
    """Checks presented API keys; verified ones are remembered briefly (one hash per call)."""

    def __init__(self, ttl_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.ttl = ttl_seconds
        self._verified: dict[str, tuple[str, float, str]] = {}
        self._writers: dict[str, tuple[str, float]] = {}

    def write_site_id(self, store: Store, presented: str) -> str | None:
        """The site of a write key, or None; remembered for ``ttl`` like API keys, so the
        hot Segment path costs no query per call (at most 1,000 keys remembered)."""
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
        digest = hash_key(presented)
        cached = self._verified.get(digest)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        site_id = verify_api_key(store, presented)
        if site_id is not None:
            key_id = presented.split("_", 2)[1]
            self._verified[digest] = (site_id, time.monotonic() + self.ttl, key_id)
        elif cached:
            del self._verified[digest]
        return site_id

    def forget(self, key_id: str) -> None:
        """A key revoked here stops at its next call, not when its cache entry expires."""
        for digest, (_, _, cached_id) in list(self._verified.items()):
            if cached_id == key_id:
                self._verified.pop(digest, None)

    def forget_write_keys(self, site_id: str) -> None:
        """A write key rotated or revoked here stops at its next call."""
        for presented, (cached_site, _) in list(self._writers.items()):
            if cached_site == site_id:
                self._writers.pop(presented, None)


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


def active_write_keys(store: Store) -> dict[str, str]:
    """Site id -> its active write key, for every site that has one."""
    rows = store.query("SELECT site_id, write_key FROM write_keys WHERE revoked_at IS NULL")
    return {str(site_id): str(key) for site_id, key in rows}


def give_write_keys(store: Store) -> None:
    """A write key for every site that never had one (sites made before write keys existed,
    or through ``upsert_site``); a site whose key was revoked stays without."""
    rows = store.query(
        "SELECT site_id FROM sites WHERE site_id NOT IN (SELECT site_id FROM write_keys) "
        "ORDER BY site_id"
    )
    for (site_id,) in rows:
        rotate_write_key(store, str(site_id))


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
    give_write_keys(store)


# --------------------------------------------------------------------------- administration

FORBIDDEN = "FORBIDDEN"
CONFLICT = "CONFLICT"
MAX_ORIGINS = 100
MAX_ORIGIN_CHARS = 300
MAX_SITE_NAME_CHARS = 100
MAX_KEY_LABEL_CHARS = 100
_DOMAIN_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
RECENT_EVENTS_WINDOW = timedelta(hours=24)
"""The install check lists events received within this window (a cheap range read)."""


@cache
def public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped in the pinned package; no download


def parse_origin(value: object) -> str:
    """An allowed origin as an operator types it, checked strictly and normalised: ``*``,
    ``null`` (the opaque origin, by name only), an origin (``https://shop.com``,
    ``http://127.0.0.1:8080``; a trailing ``/`` is dropped), or every subdomain of a
    registrable domain (``https://*.shop.com``). ValueError says what is wrong (a path, a
    user name, a wildcard over a public suffix such as ``*.co.uk``)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > MAX_ORIGIN_CHARS:
        raise ValueError(f"at most {MAX_ORIGIN_CHARS} characters")
    text = value.strip()
    if text == "*":
        return "*"
    if text.lower() == NULL_ORIGIN:
        return NULL_ORIGIN
    if not text:
        raise ValueError("must not be empty")
    example = "write scheme://host[:port], e.g. https://shop.com"
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{text[:80]!r} holds spaces or control characters; {example}")
    scheme, separator, rest = text.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in ("http", "https"):
        raise ValueError(f"{text[:80]!r} is not an origin: {example} (http or https)")
    authority, _, path = rest.partition("/")
    if path or any(c in authority for c in "?#@\\"):
        raise ValueError(f"{text[:80]!r}: an origin has no path, query or user name; {example}")
    wildcard = authority.startswith("*.")
    if wildcard:
        authority = authority[2:]
    if "*" in authority:
        raise ValueError(f"{text[:80]!r}: a wildcard may only start the host (https://*.shop.com)")
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        port, host = parts.port, parts.hostname
    except ValueError:
        raise ValueError(f"{text[:80]!r} has an invalid host or port; {example}") from None
    if not host:
        raise ValueError(f"{text[:80]!r} has no host; {example}")
    host = _host(host, text)
    if wildcard:
        if host.startswith("[") or _is_ip(host):
            raise ValueError(f"{text[:80]!r}: a wildcard needs a domain name, not an address")
        if public_suffixes().is_public(host):
            raise ValueError(
                f"{text[:80]!r} would match every site under the public suffix '{host}'"
            )
        host = "*." + host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host(host: str, text: str) -> str:
    """A domain in its ASCII (punycode) form, as browsers send it in ``Origin``."""
    if ":" in host:  # urlsplit took it from brackets: an IPv6 literal
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(f"{text[:80]!r} has an invalid IPv6 address") from None
    if _is_ip(host):
        return host
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{text[:80]!r} has an invalid host name") from None
    if len(ascii_host) > 253 or not all(
        _DOMAIN_LABEL.fullmatch(label) for label in ascii_host.split(".")
    ):
        raise ValueError(f"{text[:80]!r} has an invalid host name")
    return ascii_host


def clean_origins(values: object, field: str = "allowed_origins") -> list[str]:
    """A list of allowed origins, each parsed (422 naming the bad one), repeats dropped."""
    if not isinstance(values, list):
        raise invalid(field, "must be a list of origins")
    if len(values) > MAX_ORIGINS:
        raise invalid(field, f"at most {MAX_ORIGINS} origins")
    cleaned: list[str] = []
    for index, value in enumerate(values):
        try:
            origin = parse_origin(value)
        except ValueError as exc:
            raise invalid(f"{field}[{index}]", str(exc)) from None
        if origin not in cleaned:
            cleaned.append(origin)
    return cleaned


def split_origins(text: str) -> list[str]:
    """Origins typed into one box: one per line (commas and spaces separate too)."""
    return [part for part in re.split(r"[\s,]+", text) if part]


def origin_warnings(origins: Sequence[str]) -> list[str]:
    """What an operator should know about a site's origins before saving them."""
    warnings = []
    if "*" in origins:
        warnings.append(
            "'*' lets any web page send events to this site: fine for trying Footfall out, "
            "not for production. List your site's origins instead."
        )
    if NULL_ORIGIN in origins:
        warnings.append(
            "'null' lets sandboxed frames and file: pages send events to this site, and any "
            "web page can make such a frame: list it only if your pages need it."
        )
    if not origins:
        warnings.append(
            "No allowed origins: web pages cannot send events to this site "
            "(server-side calls without an Origin header still can)."
        )
    return warnings


def _text(value: object, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if len(value) > limit:
        raise invalid(field, f"at most {limit} characters")
    text = value.strip()
    if any(not c.isprintable() for c in text):
        raise invalid(field, "must not hold control characters")
    return text


def clean_site_name(value: object) -> str:
    return _text(value, "name", MAX_SITE_NAME_CHARS)


def clean_key_label(value: object) -> str:
    return _text(value, "label", MAX_KEY_LABEL_CHARS)


def clean_site_id(value: object, field: str = "id") -> str:
    if not isinstance(value, str) or SITE_ID_PATTERN.fullmatch(value) is None:
        raise invalid(field, "1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit")
    return value


def clean_tenant(value: object) -> str | None:
    """A tenant name (the site id's rules), or None for "the site's own"."""
    if value is None or value == "":
        return None
    return clean_site_id(value, "tenant")


@dataclass(frozen=True, slots=True)
class Authority:
    """Who administers sites: the administrator (every site) or a site API key, which
    manages the sites of its own tenant and nothing else."""

    tenant: str | None
    """None: the administrator."""
    actor: str

    @classmethod
    def admin(cls, actor: str = "admin") -> Authority:
        return cls(None, actor)

    @classmethod
    def of_key(cls, site: Site, actor: str | None = None) -> Authority:
        return cls(site.scope, actor or f"api-key:{site.id}")

    @property
    def is_admin(self) -> bool:
        return self.tenant is None

    def may_manage(self, site: Site) -> bool:
        return self.tenant is None or site.scope == self.tenant

    def visible(self, sites: Iterable[Site]) -> list[Site]:
        return sorted((s for s in sites if self.may_manage(s)), key=lambda s: s.id)

    def tenant_for(self, requested: str | None, current: Site | None = None) -> str | None:
        """The tenant a created or edited site gets; a key cannot name another tenant."""
        if self.tenant is None:
            return requested
        wanted = requested or (current.scope if current else self.tenant)
        if wanted != self.tenant:
            raise ApiError(403, FORBIDDEN, "this key manages the sites of its own tenant only")
        return wanted


def managed_site(store: Store, authority: Authority, site_id: str) -> Site:
    """The site, or 404 when it does not exist or belongs to another tenant (the answer is
    the same, so a key learns nothing about other tenants' sites)."""
    site = store.get_site(site_id) if SITE_ID_PATTERN.fullmatch(site_id) else None
    if site is None or not authority.may_manage(site):
        raise ApiError(404, NOT_FOUND, f"no site '{site_id[:64]}'")
    return site


def create_site(
    store: Store,
    authority: Authority,
    site_id: object,
    name: object = None,
    origins: object = None,
    tenant: object = None,
) -> Site:
    """A new site (409 if the id is taken, whoever owns it); origins validated."""
    checked_id = clean_site_id(site_id)
    checked_name = clean_site_name(name) or checked_id
    checked_origins = clean_origins([] if origins is None else origins)
    chosen = authority.tenant_for(clean_tenant(tenant))
    if store.get_site(checked_id) is not None:
        raise ApiError(409, CONFLICT, f"a site '{checked_id}' exists already", "id")
    site = store.upsert_site(checked_id, checked_name, checked_origins, chosen)
    rotate_write_key(store, site.id)
    return site


_UNCHANGED: Any = object()


def update_site(
    store: Store,
    authority: Authority,
    site_id: str,
    name: object = _UNCHANGED,
    origins: object = _UNCHANGED,
    tenant: object = _UNCHANGED,
) -> Site:
    """Change a site's name, allowed origins or tenant (what is not given stays)."""
    site = managed_site(store, authority, site_id)
    new_name = site.name if name is _UNCHANGED else (clean_site_name(name) or site.id)
    new_origins = list(site.allowed_origins) if origins is _UNCHANGED else clean_origins(origins)
    if tenant is _UNCHANGED:
        new_tenant: str | None = None if site.tenant == site.id else site.tenant
    else:
        new_tenant = authority.tenant_for(clean_tenant(tenant), site)
    if new_tenant == site.id:
        new_tenant = None  # a site's own id is its default tenant
    return store.upsert_site(site.id, new_name, new_origins, new_tenant)


def site_write_key(
    store: Store, authority: Authority, site_id: str, *, rotate: bool = False
) -> WriteKey:
    """The site's write key (made if it has none), or a new one replacing it."""
    site = managed_site(store, authority, site_id)
    return rotate_write_key(store, site.id) if rotate else ensure_write_key(store, site.id)


def drop_write_key(store: Store, authority: Authority, site_id: str) -> str:
    """Revoke the site's write key (404 if it has none); the site id, for the cache."""
    site = managed_site(store, authority, site_id)
    if not revoke_write_key(store, site.id):
        raise ApiError(404, NOT_FOUND, f"site '{site.id}' has no write key")
    return site.id


def write_key_document(key: WriteKey) -> dict[str, Any]:
    """A site's write key as the admin API and the CLI show it (public: shown whole)."""
    return {"write_key": key.key, "site_id": key.site_id, "created_at": _iso(key.created_at)}


def site_keys(store: Store, authority: Authority, site_id: str) -> list[ApiKey]:
    return store.list_api_keys(managed_site(store, authority, site_id).id)


def create_key(
    store: Store, authority: Authority, site_id: str, label: object = None
) -> tuple[ApiKey, str]:
    """A new secret API key for the site: its record and the key itself (shown once)."""
    site = managed_site(store, authority, site_id)
    secret = new_api_key(store, site.id, clean_key_label(label))
    record = store.get_api_key(secret.split("_", 2)[1])
    assert record is not None
    return record, secret


def revoke_key(
    store: Store, authority: Authority, key_id: str, site_id: str | None = None
) -> ApiKey:
    """Revoke a key of a site the authority manages (of ``site_id`` when given; 404
    otherwise); revoking a revoked key changes nothing and answers the same."""
    record = store.get_api_key(key_id) if len(key_id) <= 64 else None
    site = store.get_site(record.site_id) if record else None
    if (
        record is None
        or site is None
        or not authority.may_manage(site)
        or (site_id is not None and site.id != site_id)
    ):
        raise ApiError(404, NOT_FOUND, f"no key '{key_id[:64]}'")
    store.revoke_api_key(record.key_id)
    revoked = store.get_api_key(record.key_id)
    assert revoked is not None
    return revoked


def configured_in_file(settings: Settings, site_id: str) -> bool:
    """Sites written in the config are reset to it at every start: changes made while the
    server runs last until then (the dashboard says so)."""
    if site_id == settings.default_site and "allowed_origins" in settings.model_fields_set:
        return True
    return any(seed.id == site_id for seed in settings.sites)


def active_key_counts(store: Store) -> dict[str, int]:
    rows = store.query(
        "SELECT site_id, count(*) FROM api_keys WHERE revoked_at IS NULL GROUP BY site_id"
    )
    return {row[0]: int(row[1]) for row in rows}


@dataclass(frozen=True, slots=True)
class Activity:
    last_event_at: datetime | None
    events_today: int


def site_activity(store: Store) -> dict[str, Activity]:
    """Per site with events: when its last event arrived, and its events since midnight
    (UTC). DuckDB: one grouped scan of three columns; PostgreSQL: per site, reads of its
    index on (site_id, received_at) instead of a scan of the whole table."""
    midnight = _midnight()
    if store.backend == "postgresql":
        rows = store.query(
            "SELECT site_id, last_event, today FROM (SELECT s.site_id, "
            "(SELECT max(e.received_at) FROM events e WHERE e.site_id = s.site_id) AS last_event, "
            "(SELECT count(*) FROM events e WHERE e.site_id = s.site_id AND e.received_at >= ? "
            "AND e.ts >= ?) AS today FROM sites s) AS seen WHERE last_event IS NOT NULL",
            [midnight, midnight],
        )
    else:
        rows = store.query(
            "SELECT site_id, max(received_at), count(*) FILTER (WHERE ts >= ?) FROM events "
            "GROUP BY site_id",
            [midnight],
        )
    return {row[0]: Activity(row[1], int(row[2])) for row in rows}


def _midnight() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)


def events_today(store: Store, site_id: str) -> int:
    """A site's events since midnight (UTC), as site_activity counts them, read as a range
    on received_at: an event's time is never after its arrival (ingest caps it there)."""
    midnight = _midnight()
    rows = store.query(
        "SELECT count(*) FROM events WHERE site_id = ? AND received_at >= ? AND ts >= ?",
        [site_id, midnight, midnight],
    )
    return int(rows[0][0]) if rows else 0


def recent_events(store: Store, site_id: str, limit: int = 5) -> list[dict[str, Any]]:
    """The newest events a site received within RECENT_EVENTS_WINDOW, for its install check
    (a range read on received_at: an index on PostgreSQL, zone maps on DuckDB)."""
    since = datetime.now(UTC).replace(tzinfo=None) - RECENT_EVENTS_WINDOW
    rows = store.query(
        "SELECT received_at, event, token, ephemeral, url FROM events "
        "WHERE site_id = ? AND received_at >= ? ORDER BY received_at DESC LIMIT ?",
        [site_id, since, limit],
    )
    return [
        {
            "received_at": _iso(received),
            "event": event,
            "token": token[:8] + ("\u2026" if len(token) > 8 else ""),
            "ephemeral": bool(ephemeral),
            "page": _page(url),
        }
        for received, event, token, ephemeral, url in rows
    ]


def _page(url: str | None) -> str:
    """The page an event came from, without its query string (it may carry anything)."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.netloc}{parts.path}"[:120]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def site_document(
    site: Site,
    settings: Settings,
    activity: Activity | None = None,
    write_key: str | None = None,
) -> dict[str, Any]:
    """A site as the admin API and ``footfall sites`` show it."""
    return {
        "id": site.id,
        "name": site.name,
        "tenant": site.scope,
        "allowed_origins": list(site.allowed_origins),
        "write_key": write_key,
        "warnings": origin_warnings(site.allowed_origins),
        "configured_in_file": configured_in_file(settings, site.id),
        "last_event_at": _iso(activity.last_event_at if activity else None),
        "events_today": activity.events_today if activity else 0,
    }


def key_document(key: ApiKey) -> dict[str, Any]:
    """A key's record (never the key): ``kind`` leaves room for other kinds of key."""
    return {
        "key_id": key.key_id,
        "site_id": key.site_id,
        "kind": "secret",
        "label": key.label,
        "created_at": _iso(key.created_at),
        "revoked": key.revoked,
        "revoked_at": _iso(key.revoked_at),
    }


MAX_TICKET_COST = 1_000_000.0
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class TicketCost:
    """What one support ticket costs a site (the deflection report's savings)."""

    amount: float
    currency: str


def clean_ticket_cost(amount: object, currency: object) -> TicketCost | None:
    """A cost per ticket (0 to a million, in a three-letter currency such as EUR), or None
    to clear it (amount None or empty); 422 naming the field otherwise."""
    if amount is None or amount == "":
        return None
    if isinstance(amount, str):
        try:
            amount = float(amount.strip())
        except ValueError:
            raise invalid("cost_per_ticket", "must be a number such as 12.50") from None
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise invalid("cost_per_ticket", "must be a number such as 12.50")
    value = float(amount)
    if not 0 <= value <= MAX_TICKET_COST:  # NaN fails this too
        raise invalid("cost_per_ticket", f"must be from 0 to {MAX_TICKET_COST:,.0f}")
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if CURRENCY_PATTERN.fullmatch(code) is None:
        raise invalid("ticket_currency", "must be a three-letter currency code such as EUR")
    return TicketCost(round(value, 4), code)


def ticket_cost(store: Store, site_id: str) -> TicketCost | None:
    rows = store.query(
        "SELECT cost_per_ticket, ticket_currency FROM sites WHERE site_id = ?", [site_id]
    )
    if not rows or rows[0][0] is None:
        return None
    return TicketCost(float(rows[0][0]), str(rows[0][1]))


def set_ticket_cost(store: Store, site_id: str, amount: object, currency: object = "EUR") -> None:
    """Set (or, with amount None, clear) a site's cost per ticket; checked first."""
    cost = clean_ticket_cost(amount, currency)
    store.query(
        "UPDATE sites SET cost_per_ticket = ?, ticket_currency = ? WHERE site_id = ?",
        [cost.amount if cost else None, cost.currency if cost else None, site_id],
    )


def manage_ticket_cost(
    store: Store, authority: Authority, site_id: str, amount: object, currency: object = "EUR"
) -> TicketCost | None:
    """``set_ticket_cost`` for someone who may manage the site (the admin API, the CLI)."""
    site = managed_site(store, authority, site_id)
    set_ticket_cost(store, site.id, amount, currency)
    return ticket_cost(store, site.id)


def ticket_cost_document(site_id: str, cost: TicketCost | None) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "cost_per_ticket": cost.amount if cost else None,
        "ticket_currency": cost.currency if cost else None,
    }
