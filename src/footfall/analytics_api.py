"""The authenticated reports API: one route per analytics report, same numbers as the CLI.

Parameters are read by ``report_request`` for the HTTP API and the terminal alike, so both
accept the same names, defaults and errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.analytics import (
    BREAKDOWNS,
    DEFAULT_DAYS,
    INTERVALS,
    MAX_FUNNEL_STEPS,
    REPORTS,
    Filters,
    Report,
    utcnow,
)
from footfall.api import JSON, PublicApi
from footfall.errors import ApiError, invalid
from footfall.ingest import EVENT_TYPES
from footfall.store.base import Site

FORBIDDEN = "FORBIDDEN"
_encoder = msgspec.json.Encoder()
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


def report_options(report: Report, params: Mapping[str, str]) -> dict[str, Any]:
    """The report's own options, validated; unknown values answer 422 naming the field."""
    options: dict[str, Any] = {}
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
            for step in steps:
                if step not in EVENT_TYPES:
                    raise invalid("steps", f"unknown event type '{step[:50]}'")
            options[name] = steps
        elif name == "window_seconds" and params.get("window"):
            options[name] = _duration(params["window"], "window")
        elif name == "breakdown" and params.get("breakdown"):
            options[name] = _choice(params, "breakdown", "", BREAKDOWNS)
        elif name == "goal" and params.get("goal"):
            options[name] = _choice(params, "goal", "purchase", sorted(EVENT_TYPES))
    return options


def site_scope(key_site: Site, requested: str | None, known: Mapping[str, Site]) -> list[str]:
    """Sites a key may read: its own by default, or others of the same tenant by name."""
    if not requested:
        return [key_site.id]
    names = [s.strip() for s in requested.split(",") if s.strip()]
    for name in names:
        site = known.get(name)
        if site is None or site.scope != key_site.scope:
            raise ApiError(403, FORBIDDEN, f"this key cannot read site '{name[:64]}'")
    return names


class AnalyticsApi:
    def __init__(self, public: PublicApi) -> None:
        self.public = public

    async def index(self, request: Request) -> Response:
        self.public.authenticated(request)
        payload = {
            "reports": [
                {"name": r.name, "title": r.title, "options": list(r.options)}
                for r in REPORTS.values()
            ]
        }
        return Response(_encoder.encode(payload), media_type=JSON)

    async def report(self, request: Request) -> Response:
        key_site = self.public.authenticated(request)
        name = request.path_params["name"]
        report = REPORTS.get(name)
        if report is None:
            raise ApiError(404, "NOT_FOUND", f"no report '{name[:64]}'; see /api/reports")
        services = self.public._svc()
        params = request.query_params
        sites = site_scope(key_site, params.get("site"), services.sites.sites)
        filters = report_filters(params, sites)
        options = report_options(report, params)
        for other in REPORTS.values():  # a bad value is a 422 even where this report ignores it
            report_options(other, params)
        await services.committer.settled()
        try:
            result = await asyncio.to_thread(report.run, services.store, filters, **options)
        except ValueError as exc:  # a rule the options parser did not know about
            raise invalid("options", str(exc)) from None
        return Response(_encoder.encode({"report": name, **result}), media_type=JSON)


def routes(public: PublicApi) -> list[Route]:
    api = AnalyticsApi(public)
    return [
        Route("/api/reports", api.index, methods=["GET"]),
        Route("/api/reports/{name}", api.report, methods=["GET"]),
    ]
