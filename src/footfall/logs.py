"""JSON logs on stderr, with email addresses, API keys and setup tokens masked before they are
written."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_API_KEY = re.compile(r"\bff_[0-9a-f]{12}_[A-Za-z0-9_-]+")
_SETUP_TOKEN = re.compile(r"\bffsetup_[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    masked = _API_KEY.sub("ff_[redacted]", _EMAIL.sub("[email]", text))
    return _SETUP_TOKEN.sub("ffsetup_[redacted]", masked)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """Last line of defence: whatever a message or its extras hold, no raw email or key."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                record.__dict__[key] = _scrub(value)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        datefmt="%Y-%m-%dT%H:%M:%SZ",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Access logs would write client IPs; request counts go to /metrics instead.
    logging.getLogger("uvicorn.access").disabled = True
