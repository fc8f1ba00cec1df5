"""A new key's secret, carried from the form to the page after its redirect.

The form answers with a redirect, so a reload does not make another key. The secret has to
reach the next page view somehow, and that view may be served by another server process
(several processes share a PostgreSQL store). So it goes in a short-lived cookie, sealed
(AES-GCM) with a key derived from the session's own random CSRF token: the cookie is of no
use without the session that made the key, the server keeps nothing, and the page that
shows the secret deletes the cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NEW_KEY_COOKIE = "footfall_new_key"
NEW_KEY_SECONDS = 300
"""How long a new key's secret waits for its page (the redirect after the form)."""
_NONCE_BYTES = 12


def _cipher(session_secret: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"footfall new key\x00" + session_secret.encode()).digest())


def seal_new_key(
    session_secret: str, site_id: str, key_id: str, secret: str, now: float | None = None
) -> str:
    """The cookie value for ``key_id``'s secret, readable by ``session_secret`` for this site."""
    until = (time.time() if now is None else now) + NEW_KEY_SECONDS
    payload = json.dumps({"key": key_id, "secret": secret, "until": until}).encode()
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(session_secret).encrypt(nonce, payload, site_id.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def open_new_key(
    session_secret: str, site_id: str, cookie: str | None, now: float | None = None
) -> tuple[str, str] | None:
    """(key id, secret) from the cookie, or None: absent, another session's or site's,
    tampered with or expired."""
    if not cookie:
        return None
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        payload = _cipher(session_secret).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], site_id.encode()
        )
        held = json.loads(payload)
        key_id, secret, until = held["key"], held["secret"], float(held["until"])
    except (binascii.Error, ValueError, InvalidTag, KeyError, TypeError):
        return None
    if not isinstance(key_id, str) or not isinstance(secret, str):
        return None
    return (key_id, secret) if until > (time.time() if now is None else now) else None
