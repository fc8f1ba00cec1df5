"""``footfall report NAME``: an analytics report as tables in the terminal (or its JSON),
from the database file or a running server's reports API."""

from __future__ import annotations

import json
import sys
from typing import Annotated
from urllib.parse import urlencode

import typer

from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    KeyOpt,
    Remote,
    ServerOpt,
    console,
    fail,
    open_store_or_exit,
    settings_or_exit,
)
from footfall.errors import ApiError


def report_command(
    name: Annotated[
        str,
        typer.Argument(
            help="overview, people, retention, power-users, "
            "funnel, ab, revenue, feedback, popups, errors, custom-events, deflection"
        ),
    ],
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            help="Site id(s), comma-separated, or 'all' (default: the "
            "default site; with --server: the key's site; 'all' with --server: every "
            "site of the key's tenant).",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="Start date (UTC), e.g. 2026-03-01.")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="End date, included.")] = None,
    days: Annotated[int | None, typer.Option(help="Without --from: the last N days (30).")] = None,
    interval: Annotated[str | None, typer.Option(help="day, week or month.")] = None,
    steps: Annotated[
        str | None,
        typer.Option(help="Funnel steps, comma-separated; a custom event as custom:NAME."),
    ] = None,
    window: Annotated[str | None, typer.Option(help="Funnel window: 3600, 12h, 7d, 2w.")] = None,
    breakdown: Annotated[
        str | None,
        typer.Option(help="Funnel breakdown: popup_version, open_way, chatbot_id, ab_group."),
    ] = None,
    goal: Annotated[str | None, typer.Option(help="A/B goal event (purchase).")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Rows to show (power-users, errors, custom-events).")
    ] = None,
    event_name: Annotated[
        str | None, typer.Option("--name", help="custom-events: only this custom event.")
    ] = None,
    periods: Annotated[int | None, typer.Option(help="Retention periods (8).")] = None,
    session_minutes: Annotated[
        int | None,
        typer.Option(help="deflection: minutes without events that end a form session."),
    ] = None,
    window_days: Annotated[
        int | None,
        typer.Option(help="deflection: days after a session in which a ticket defers it."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the JSON the API returns.")
    ] = False,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Print an analytics report as tables (the same numbers as the API and dashboard)."""
    from footfall.analytics.params import deflection_defaults, report_filters, report_options
    from footfall.analytics.reports import REPORTS
    from footfall.cli.terminal import show_report

    report = REPORTS.get(name)
    if report is None:
        raise fail(f"no report '{name}'; choose from {', '.join(REPORTS)}", 2)
    given = {
        "from": since,
        "to": until,
        "days": days,
        "interval": interval,
        "steps": steps,
        "window": window,
        "breakdown": breakdown,
        "goal": goal,
        "limit": limit,
        "periods": periods,
        "name": event_name,
        "session_minutes": session_minutes,
        "window_days": window_days,
    }
    params = {k: str(v) for k, v in given.items() if v is not None}
    if server:
        if site:
            params["site"] = site  # 'all' too: the server reads every site of the key's tenant
        result = Remote(server, key).call("GET", f"/api/reports/{name}?{urlencode(params)}")
    else:
        settings = settings_or_exit(config, database=database)
        sites = (
            None if site == "all" else [s for s in (site or settings.default_site).split(",") if s]
        )
        try:
            filters = report_filters(params, sites)
            defaults = deflection_defaults(
                settings.deflection_session_minutes, settings.deflection_window_days
            )
            options = report_options(report, params, defaults)
        except ApiError as exc:
            raise fail(exc.message, 2) from None
        store = open_store_or_exit(settings, existing=True)
        try:
            result = report.run(store, filters, **options)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        finally:
            store.close()
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        show_report(console, name, report.title, result)
