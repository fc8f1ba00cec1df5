"""Commands that write data in bulk: ``footfall demo`` (synthetic traffic) and
``footfall retention apply`` (delete old events once)."""

from __future__ import annotations

from typing import Annotated

import typer

from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    SiteOpt,
    console,
    err,
    open_store_or_exit,
    settings_or_exit,
)
from footfall.words import counted

retention_app = typer.Typer(help="Data retention: delete old events.", no_args_is_help=True)


def demo_command(
    events: Annotated[
        int, typer.Option(help="Events to generate (up to 10,000,000).", min=1, max=10_000_000)
    ] = 100_000,
    tokens: Annotated[
        int | None, typer.Option(help="Distinct visitors' tokens (events / 10).")
    ] = None,
    merged: Annotated[
        float, typer.Option(help="Share of tokens merged into persons.", min=0.0, max=1.0)
    ] = 0.2,
    days: Annotated[int, typer.Option(help="Spread over the last N days.", min=1, max=3650)] = 60,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same traffic).")] = 7,
    site: SiteOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Generate realistic synthetic traffic: visits, chats, carts, orders, merging identities."""
    # Imported when used (NumPy, Arrow): other commands start faster without them.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from footfall.analytics import form_events, funnel_steps
    from footfall.analytics.reports import refresh_presence
    from footfall.demo import HELP_SITE, DemoPlan, generate

    settings = settings_or_exit(config, database=database)
    store = open_store_or_exit(settings)
    plan = DemoPlan(
        events=events,
        tokens=tokens,
        merged_share=merged,
        days=days,
        seed=seed,
        site=site or settings.default_site,
    )
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("generating events", total=events)
            result = generate(store, plan, lambda n: progress.advance(task, n))
        with err.status(
            "building the daily rollup, funnel step and form event tables the reports read"
        ):
            refresh_presence(store)
            funnel_steps.refresh(store)
            form_events.refresh(store)
    finally:
        store.close()
    console.print(
        f"wrote {result.events:,} events from {result.tokens:,} visitors "
        f"({result.persons:,} persons merged across sites '{plan.site}' and '{HELP_SITE}'), "
        f"{result.orders:,} orders, {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}"
    )
    console.print("try: footfall report overview --days 60 --site all")


@retention_app.command("apply")
def retention_apply(
    days: Annotated[
        int | None,
        typer.Option(help="Keep this many days (default: the retention_days setting).", min=1),
    ] = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Delete events from before midnight (UTC) N days ago, with the orders and daily rollups
    derived from them, once (a running server does it every retention_interval_minutes)."""
    from footfall.retention import apply_retention

    settings = settings_or_exit(config, database=database)
    keep = days or settings.retention_days
    if not keep:
        console.print("retention_days is 0 (keep every event) and no --days given: nothing to do")
        return
    # Loads what a crashed server left in the journal first; a missing file has nothing to
    # delete, so it is refused rather than created.
    store = open_store_or_exit(settings, existing=True)
    try:
        result = apply_retention(store, keep)
    finally:
        store.close()
    console.print(
        f"deleted {counted(result.events, 'event')} from before {result.cutoff:%Y-%m-%d} (UTC), "
        f"{counted(result.orders, 'order')} and {counted(result.rollup_rows, 'rollup row')} "
        "derived from them"
    )
