"""Counts in words ("1 message", "2 messages"), shared by the dashboard and the CLI, so no
screen says "1 messages"."""

from __future__ import annotations

from typing import Any

IRREGULAR = {"person": "people", "identity": "identities", "currency": "currencies"}


def noun(count: Any, singular: str, plural: str | None = None) -> str:
    """The word for ``count`` things: singular for exactly one, else the plural."""
    if count is not None and int(count) == 1:
        return singular
    return plural or IRREGULAR.get(singular) or f"{singular}s"


def counted(count: Any, singular: str, plural: str | None = None) -> str:
    """``count`` with thousands separators and its noun: ``12,287 events``, ``1 order``."""
    number = 0 if count is None else int(count)
    return f"{number:,} {noun(number, singular, plural)}"
