"""The authenticated reports API: one route per analytics report, the same numbers as the
CLI and the dashboard (parameters are read by ``footfall.analytics.params``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from footfall.analytics.params import (
    deflection_defaults,
    report_filters,
    report_options,
    site_scope,
)
from footfall.analytics.reports import REPORTS
from footfall.errors import ApiError, invalid
from footfall.http.shared import Gate, json_response, run_blocking


class AnalyticsApi:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def index(self, request: Request) -> Response:
        self.gate.authenticated(request)
        payload = {
            "reports": [
                {"name": r.name, "title": r.title, "options": list(r.options)}
                for r in REPORTS.values()
            ]
        }
        return json_response(payload)

    async def report(self, request: Request) -> Response:
        key_site = self.gate.authenticated(request)
        name = request.path_params["name"]
        report = REPORTS.get(name)
        if report is None:
            raise ApiError(404, "NOT_FOUND", f"no report '{name[:64]}'; see /api/reports")
        services = self.gate.running()
        params = request.query_params
        sites = site_scope(key_site, params.get("site"), services.sites.sites)
        filters = report_filters(params, sites)
        settings = services.settings
        defaults = deflection_defaults(
            settings.deflection_session_minutes, settings.deflection_window_days
        )
        options = report_options(report, params, defaults)
        for other in REPORTS.values():  # a bad value is a 422 even where this report ignores it
            report_options(other, params)
        await services.committer.settled()
        try:
            result = await run_blocking(report.run, services.store, filters, **options)
        except ValueError as exc:  # a rule the options parser did not know about
            raise invalid("options", str(exc)) from None
        return json_response({"report": name, **result})


def routes(gate: Gate) -> list[Route]:
    api = AnalyticsApi(gate)
    return [
        Route("/api/reports", api.index, methods=["GET"]),
        Route("/api/reports/{name}", api.report, methods=["GET"]),
    ]
