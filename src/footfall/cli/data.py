"""Commands that write data in bulk: ``footfall demo`` (synthetic traffic) and
``footfall retention apply`` (delete old events once)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    KeyOpt,
    Remote,
    ServerOpt,
    SiteOpt,
    console,
    err,
    fail,
    open_store_or_exit,
    settings_or_exit,
)
from footfall.cli.terminal import shown
from footfall.words import counted

if TYPE_CHECKING:
    from footfall.demo import DemoPlan
    from footfall.ingest.imports import Reject

SERVER_DAYS = 6
"""``--server``: the tracking API keeps a client's time only within the last seven days
(``CLIENT_TIME_PAST_US``), so the demo spans six, with room for the sending."""
SERVER_EVENTS = 20_000
"""``--server``'s default: every event and identify goes through HTTP (about a minute)."""

retention_app = typer.Typer(help="Data retention: delete old events.", no_args_is_help=True)


def demo_command(
    events: Annotated[
        int | None,
        typer.Option(
            help="Events to generate (up to 10,000,000; default 100,000, with --server 20,000).",
            min=1,
            max=10_000_000,
        ),
    ] = None,
    tokens: Annotated[
        int | None, typer.Option(help="Distinct visitors' tokens (events / 10).")
    ] = None,
    merged: Annotated[
        float, typer.Option(help="Share of tokens merged into persons.", min=0.0, max=1.0)
    ] = 0.2,
    days: Annotated[
        int | None,
        typer.Option(
            help="Spread over the last N days (default 60; with --server at most 6, the default).",
            min=1,
            max=3650,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same traffic).")] = 7,
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Generate realistic synthetic traffic: visits, chats, carts, orders, custom events,
    merging identities. Into the database file, or with --server through a running server's
    batch APIs (the file stays the server's)."""
    from footfall.demo import DemoPlan

    if server:
        if days is not None and days > SERVER_DAYS:
            raise fail(
                f"--days is at most {SERVER_DAYS} with --server: the tracking API keeps an "
                "event's own time only within the last 7 days",
                2,
            )
        plan = DemoPlan(
            events=events or SERVER_EVENTS,
            tokens=tokens,
            merged_share=merged,
            days=days or SERVER_DAYS,
            seed=seed,
            # Events come back from the API at most 5 minutes ahead of its clock.
            end=datetime.now(UTC) - timedelta(minutes=10),
        )
        _demo_to_server(plan, server, key, site)
        return
    _demo_to_store(
        DemoPlan(
            events=events or 100_000,
            tokens=tokens,
            merged_share=merged,
            days=days or 60,
            seed=seed,
            site=site or "",
        ),
        config,
        database,
    )


def _demo_to_store(plan: DemoPlan, config: str | None, database: str | None) -> None:
    # Imported when used (NumPy, Arrow): other commands start faster without them.
    from dataclasses import replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from footfall.analytics import form_events, funnel_steps
    from footfall.analytics.reports import refresh_presence
    from footfall.demo import HELP_SITE, generate

    settings = settings_or_exit(config, database=database)
    store = open_store_or_exit(settings)
    plan = replace(plan, site=plan.site or settings.default_site)
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("generating events", total=plan.events)
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
        f"{result.orders:,} orders, {counted(result.custom, 'custom event')}, "
        f"{result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}"
    )
    console.print(f"try: footfall report overview --days {plan.days} --site all")


def _demo_to_server(plan: DemoPlan, server: str, key: str | None, site: str | None) -> None:
    """Generate into a scratch in-memory store, then send it through the server's batch
    APIs with the import's sender: the server validates and stores every event as if
    a site had sent it, while it keeps its database file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from footfall.cli.batches import batches, send_batch
    from footfall.demo import api_messages, generate
    from footfall.store import open_store

    remote = Remote(server, key)  # exits 2 without a key
    # A wrong key, an unknown site or a server that is not there fail here, before the
    # traffic is made.
    checked = f"{remote.base} refused --key (a site API key, ff_..., is needed)"
    listed = remote.call("GET", "/api/admin/sites", what=checked)
    sites = [s["id"] for s in listed["sites"]]
    if site and site not in sites:
        raise fail(f"no site '{shown(site)}' among the key's sites ({', '.join(sites)})", 2)
    scratch = open_store(":memory:")
    try:
        scratch.migrate()
        result = generate(scratch, plan)
        messages = list(api_messages(scratch, secrets.token_hex(4)))
    finally:
        scratch.close()
    accepted = 0
    refused: list[Reject] = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
    ) as progress:
        task = progress.add_task(f"sending to {remote.base}", total=len(messages))
        # Events first, then the identify calls that merge their tokens.
        for kind in ("tracking", "segment"):
            picked = [(n, body) for n, (k, body) in enumerate(messages) if k == kind]
            for batch in batches(picked):
                sent, rejects = send_batch(remote.base, remote.key, kind, site, batch)
                accepted += sent
                refused.extend(rejects)
                progress.advance(task, len(batch))
    identifies = sum(1 for _, body in messages if body.get("type") == "identify")
    where = f"site '{shown(site)}'" if site else "the key's site"
    console.print(
        f"sent {counted(result.events, 'event')} from {result.tokens:,} visitors, "
        f"{counted(result.custom, 'custom event')} and {counted(identifies, 'identify call')} "
        f"({result.persons:,} persons merged) to {remote.base}, "
        f"{where}: "
        f"{accepted:,} accepted, {len(refused):,} refused; "
        f"{result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}"
    )
    for reject in refused[:10]:
        err.print(f"message {reject.line}: {reject.message}", highlight=False, markup=False)
    if refused:
        raise typer.Exit(1)
    console.print(
        f"try: footfall report overview --days {plan.days + 1} --server {remote.base} --key ..."
    )


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
