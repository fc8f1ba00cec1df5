"""A report's parameters (sites, time range, per-report options) read from text, for the
reports API, the dashboard and the terminal alike: all three accept the same names, defaults
and errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from footfall.analytics.reports import (
    BREAKDOWNS,
    DEFAULT_DAYS,
    DEFLECTION_SESSION_MINUTES,
    DEFLECTION_WINDOW_DAYS,
    INTERVALS,
    MAX_FUNNEL_STEPS,
    Filters,
    Report,
    step_name,
    utcnow,
)
from footfall.errors import FORBIDDEN, ApiError, invalid
from footfall.ingest.validate import EVENT_TYPES, custom_event_name
from footfall.store.base import Site

_MAX_DAYS = 3660


def _time(value: str, field: str, end: bool) -> datetime:
    """A date (``to`` dates include the whole day) or an ISO date-time in UTC."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text if len(text) == 10 else text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, "must be a date (2026-03-01) or an ISO date-time") from None
    # Far from year 1 and 9999, so the range arithmetic below cannot overflow (a 500).
    if not 1900 <= parsed.year <= 9000:
        raise invalid(field, "must lie between the years 1900 and 9000")
    if len(text) == 10:
        return parsed + timedelta(days=1) if end else parsed
    if parsed.tzinfo is not None:
        parsed = (parsed - parsed.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
    return parsed


def _int(params: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    raw = params.get(field)
    if raw is None or raw == "":
        return default
    digits = raw.lstrip("-")  # ASCII and short: '²' and 5,000 digits break int()
    short = digits.isascii() and digits.isdigit() and len(digits) <= 9
    if not short or not low <= int(raw) <= high:
        raise invalid(field, f"must be a whole number from {low} to {high}")
    return int(raw)


def _choice(params: Mapping[str, str], field: str, default: str, allowed: Sequence[str]) -> str:
    value = params.get(field) or default
    if value not in allowed:
        raise invalid(field, f"must be one of {', '.join(allowed)}")
    return value


def _duration(raw: str, field: str) -> int:
    """``3600``, ``90m``, ``12h``, ``7d`` or ``2w`` to seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = raw.strip().lower()
    unit = units.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    if not (number.isascii() and number.isdigit() and len(number) <= 12) or int(number) <= 0:
        raise invalid(field, "must be a positive duration such as 3600, 90m, 12h, 7d or 2w")
    seconds = int(number) * (unit or 1)
    if seconds > 366 * 86400:
        raise invalid(field, "at most one year")
    return seconds


def report_filters(params: Mapping[str, str], sites: Sequence[str] | None) -> Filters:
    """The time range from ``from``/``to`` (dates or date-times) or ``days`` (default 30)."""
    days = _int(params, "days", DEFAULT_DAYS, 1, _MAX_DAYS)
    end = _time(params["to"], "to", end=True) if params.get("to") else None
    start = _time(params["from"], "from", end=False) if params.get("from") else None
    if end is None:
        end = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time())
        if start is not None and start >= end:
            end = start + timedelta(days=days)
    if start is None:
        start = end - timedelta(days=days)
    if start >= end:
        raise invalid("from", "must be before 'to'")
    if end - start > timedelta(days=_MAX_DAYS):
        raise invalid("from", f"the range is at most {_MAX_DAYS} days")
    return Filters(tuple(sites) if sites else None, start, end)


def report_options(
    report: Report, params: Mapping[str, str], defaults: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The report's own options, validated; unknown values answer 422 naming the field.
    ``defaults`` are the operator's settings for options that have one (the deflection
    report's session and window)."""
    options: dict[str, Any] = {}
    given = defaults or {}
    for name in report.options:
        if name == "interval":
            default = "week" if report.name == "retention" else "day"
            options[name] = _choice(params, "interval", default, INTERVALS)
        elif name == "periods":
            options[name] = _int(params, "periods", 8, 1, 52)
        elif name in ("limit", "top"):
            options[name] = _int(params, name, 20 if name == "limit" else 10, 1, 1000)
        elif name == "steps" and params.get("steps"):
            steps = [s.strip() for s in params["steps"].split(",") if s.strip()]
            if not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
                raise invalid("steps", f"a funnel has 2 to {MAX_FUNNEL_STEPS} steps")
            try:
                options[name] = [step_name(step) for step in steps]
            except ValueError as exc:
                raise invalid("steps", str(exc)) from None
            except ApiError as exc:
                raise invalid("steps", exc.message.removeprefix("steps: ")) from None
        elif name == "window_seconds" and params.get("window"):
            options[name] = _duration(params["window"], "window")
        elif name == "breakdown" and params.get("breakdown"):
            options[name] = _choice(params, "breakdown", "", BREAKDOWNS)
        elif name == "name" and params.get("name"):
            options[name] = custom_event_name(params["name"], "name")
        elif name == "session_minutes":
            minutes = given.get(name, DEFLECTION_SESSION_MINUTES)
            options[name] = _int(params, name, minutes, 1, 1440)
        elif name == "window_days":
            options[name] = _int(params, name, given.get(name, DEFLECTION_WINDOW_DAYS), 1, 90)
        elif name == "goal" and params.get("goal"):
            options[name] = _choice(params, "goal", "purchase", sorted(EVENT_TYPES))
    return options


def deflection_defaults(session_minutes: int, window_days: int) -> dict[str, int]:
    """The deflection report's defaults from the operator's settings."""
    return {"session_minutes": session_minutes, "window_days": window_days}


def site_scope(key_site: Site, requested: str | None, known: Mapping[str, Site]) -> list[str]:
    """Sites a key may read: its own by default, others of the same tenant by name, or
    ``all``: every site of its tenant (what the dashboard's "All sites" means to an
    administrator, within what the key may read)."""
    if not requested:
        return [key_site.id]
    if requested.strip() == "all":
        return sorted(s.id for s in known.values() if s.scope == key_site.scope)
    names = [s.strip() for s in requested.split(",") if s.strip()]
    for name in names:
        site = known.get(name)
        if site is None or site.scope != key_site.scope:
            raise ApiError(403, FORBIDDEN, f"this key cannot read site '{name[:64]}'")
    return names
