"""The public API's error vocabulary: every rejection has a status, a code and a message."""

from __future__ import annotations

import msgspec

MALFORMED = "ANALYTICS_001"
TOO_LARGE = "ANALYTICS_002"
VALIDATION = "VALIDATION_ERROR"
RATE_LIMITED = "RATE_LIMITED"
ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
UNAVAILABLE = "SERVICE_UNAVAILABLE"
FORBIDDEN = "FORBIDDEN"
# Refused by the HTTP connection itself, before any route (footfall.http.connection).
BAD_REQUEST = "BAD_REQUEST"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
URI_TOO_LONG = "URI_TOO_LONG"
HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"


class ApiError(Exception):
    """A client-facing failure; raised anywhere, rendered once by the API layer."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self, flat: bool = False) -> dict[str, object]:
        """``{"success": false, "error": {...}}``; ``flat`` adds ``code`` and ``message`` at
        the top level too, where Segment's and RudderStack's server libraries read them."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if flat:
            return {"success": False, "code": self.code, "message": self.message, "error": error}
        return {"success": False, "error": error}

    def encode(self, flat: bool = False) -> bytes:
        return msgspec.json.encode(self.body(flat))


SEGMENT_PREFIX = "/v1/"
"""The Segment-spec API's paths: its error answers are ``flat`` (``ApiError.body``)."""


def flat_errors(path: str | bytes) -> bool:
    """Whether an error on ``path`` (a request target) carries Segment's top-level
    ``code`` and ``message``."""
    if isinstance(path, bytes):
        return path.startswith(SEGMENT_PREFIX.encode())
    return path.startswith(SEGMENT_PREFIX)


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the offending field, e.g. ``data.items[2].quantity``."""
    return ApiError(422, VALIDATION, f"{field}: {message}", field)


def malformed(message: str) -> ApiError:
    return ApiError(400, MALFORMED, message)


def too_large(limit: int) -> ApiError:
    return ApiError(400, TOO_LARGE, f"payload is larger than {limit} bytes")
