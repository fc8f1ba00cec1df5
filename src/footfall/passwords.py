"""The admin password: stored only as an scrypt hash, checked in constant time.

Used by the config (a hash is checked when loaded), the dashboard's login and the CLI's
``hash-password``, so it sits below all of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_N = 2**20
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
"""Bounds the scrypt work one form submission can ask for."""


def b64url(raw: bytes) -> str:
    """base64url without padding: hashes and session cookies carry no '=' or '+'."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash``: a memory-hard hash, so a leaked config is slow to crack."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p, 32)
    return f"scrypt${n}${r}${p}${b64url(salt)}${b64url(digest)}"


def parse_password_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """The parameters, salt and digest of a hash; ValueError names what is wrong."""
    parts = encoded.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("admin_password_hash must look like scrypt$N$r$p$salt$hash")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = unb64url(parts[4]), unb64url(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError("admin_password_hash is not a valid scrypt hash") from None
    if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("admin_password_hash has out-of-range scrypt parameters")
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("admin_password_hash has a too short salt or digest")
    return n, r, p, salt, digest


def password_problem(password: str) -> str | None:
    """Why a new admin password is refused, or None: the setup page, the password form and
    ``footfall hash-password`` apply the same rule."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"use at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"use at most {MAX_PASSWORD_CHARS} characters"
    if not password.strip():
        return "the password must not be only spaces"
    return None


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time comparison of the password's scrypt digest with the configured one."""
    n, r, p, salt, expected = parse_password_hash(encoded)
    digest = _scrypt(password, salt, n, r, p, len(expected))
    return hmac.compare_digest(digest, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    memory = 128 * r * n * p + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=length)


def password_fingerprint(encoded: str) -> str:
    """Sessions of an admin remember which hash they logged in with: a new password ends them."""
    return hashlib.sha256(encoded.strip().encode()).hexdigest()[:16]
