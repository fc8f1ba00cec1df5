"""Who may administer a server: the admin password (from the config, else set once through
the setup page), the one-time setup links that let the first administrator in, and the admin
API's bearer token.

There is never a default password. A server whose store has no admin password (and none in
the config) issues a setup link at each start: 256 random bits, valid for an hour, good for
one use, remembered only as its SHA-256. Using it sets the password, which closes every
link at once. The dashboard, the admin API and the CLI share these rules.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from footfall.config import Settings
from footfall.passwords import hash_password, password_problem, verify_password
from footfall.store.base import Store

SETUP_TOKEN_PREFIX = "ffsetup_"  # noqa: S105 - a prefix, not a secret
"""Setup tokens carry a prefix of their own, so the log filter can recognise them."""
SETUP_PATH = "/dashboard/setup"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordRefused(ValueError):
    """A new password breaks a rule, or the current one given was wrong; the message says
    which, for the form to show."""


def admin_password_hash(store: Store, settings: Settings) -> str | None:
    """The admin password in force: the config's wins, else the one set on the setup page."""
    return settings.admin_password_hash or store.admin_password_hash()


def needs_setup(store: Store, settings: Settings) -> bool:
    return admin_password_hash(store, settings) is None


def issue_setup_token(store: Store, settings: Settings, now: datetime | None = None) -> str:
    """A new one-time token for the setup link; only its hash is stored."""
    created = now or _utcnow()
    token = SETUP_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = created + timedelta(minutes=settings.setup_link_minutes)
    store.add_setup_token(_digest(token), created, expires)
    return token


def setup_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{SETUP_PATH}?token={token}"


def setup_token_usable(store: Store, settings: Settings, token: str) -> bool:
    """Whether the setup page may ask for a password. Unknown, used and expired tokens get
    the same answer, so a wrong guess learns nothing."""
    if settings.admin_password_hash or not _plausible(token):
        return False
    return store.setup_token_usable(_digest(token), _utcnow())


def complete_setup(store: Store, settings: Settings, token: str, password: str) -> str | None:
    """Set the first admin password with a setup token; the stored hash, or None when the
    token is not (or no longer) usable. Raises PasswordRefused for a password that breaks
    the rules (the token is then left unused)."""
    problem = password_problem(password)
    if problem:
        raise PasswordRefused(problem)
    if settings.admin_password_hash or not _plausible(token):
        return None
    encoded = hash_password(password)
    if not store.claim_setup_token(_digest(token), encoded, _utcnow()):
        return None
    return encoded


def change_admin_password(store: Store, settings: Settings, current: str, new: str) -> str:
    """Replace the stored admin password after checking the current one; returns the new hash
    (sessions remember the hash they signed in with, so every other session ends)."""
    if settings.admin_password_hash:
        raise PasswordRefused(
            "the admin password is set in the configuration (admin_password_hash); change it there"
        )
    stored = store.admin_password_hash()
    if stored is None or not verify_password(current, stored):
        raise PasswordRefused("the current password is not right")
    problem = password_problem(new)
    if problem:
        raise PasswordRefused(problem)
    encoded = hash_password(new)
    store.set_admin_password(encoded)
    return encoded


def admin_token_matches(settings: Settings, presented: str | None) -> bool:
    """The admin API's bearer token, compared as SHA-256 digests in constant time (the config
    may hold either the token or ``sha256:<hex>`` of it)."""
    configured = settings.admin_token
    if not configured or not presented:
        return False
    expected = configured[7:] if configured.startswith("sha256:") else _digest(configured)
    return hmac.compare_digest(_digest(presented), expected)


def _plausible(token: str) -> bool:
    """Only what a real token looks like reaches the store (bounded, prefixed)."""
    return token.startswith(SETUP_TOKEN_PREFIX) and len(token) <= 128


def _session_digest(session_secret: str) -> str:
    return hashlib.sha256(b"footfall-session\0" + session_secret.encode()).hexdigest()


def revoke_session(store: Store, session_secret: str, until: datetime) -> None:
    """Logout: the session (known by its random CSRF token, kept only as a hash) is refused
    by every process from now until it would have expired anyway; expired entries go."""
    now = _utcnow()
    store.query("DELETE FROM revoked_sessions WHERE until_at < ?", [now])
    store.query(
        "INSERT INTO revoked_sessions VALUES (?, ?) ON CONFLICT (session_digest) DO NOTHING",
        [_session_digest(session_secret), max(until, now)],
    )


def session_revoked(store: Store, session_secret: str) -> bool:
    rows = store.query(
        "SELECT 1 FROM revoked_sessions WHERE session_digest = ?", [_session_digest(session_secret)]
    )
    return bool(rows)
