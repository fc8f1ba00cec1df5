"""The ``footfall`` command."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from footfall import __version__
from footfall.config import Settings, load_settings
from footfall.logs import configure_logging
from footfall.sites import SITE_ID_PATTERN, new_api_key, seed_sites, validate_origin_pattern
from footfall.store import Store, open_store, redact
from footfall.store.base import StoreBusyError, StoreUnavailableError

app = typer.Typer(
    help="Footfall: tracking, identity resolution and analytics.", no_args_is_help=True
)
sites_app = typer.Typer(help="Sites (tenants): origins and API keys.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")
person_app = typer.Typer(help="Persons: show, explain, split, export, erase.", no_args_is_help=True)
app.add_typer(person_app, name="person")
retention_app = typer.Typer(help="Data retention: delete old events.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="TOML config file (else FOOTFALL_CONFIG).")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database", help="DuckDB file or postgresql:// URL.")
]


def _settings(config: str | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except Exception as exc:  # pydantic's message names the bad setting
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _store(settings: Settings) -> Store:
    try:
        store = open_store(settings.database, memory_limit=settings.duckdb_memory_limit)
    except (StoreBusyError, StoreUnavailableError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    store.migrate()
    seed_sites(store, settings)
    # After a crash the ingest journal may hold acknowledged events not yet in the file;
    # load them first, or an erase here would be undone by the server's replay.
    from footfall.journal import replay_pending

    replay_pending(store, settings)
    return store


@app.command()
def serve(
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Also serve the demo shop and support form (examples/) at /demo/."
        ),
    ] = False,
) -> None:
    """Run the server (embedded DuckDB by default)."""
    import uvicorn

    from footfall.api import create_app

    settings = _settings(config, database=database, host=host, port=port, demo=demo or None)
    configure_logging(settings.log_level)
    if settings.demo:
        from footfall.tracker import examples_dir

        if not (examples_dir() / "shop.html").is_file():
            err.print(
                f"[red]error:[/red] --demo needs the examples/ of a source checkout; "
                f"not found at {examples_dir()}"
            )
            raise typer.Exit(2)
    try:
        open_store(settings.database).close()  # fail fast, with a clear message, on a held file
    except (StoreBusyError, StoreUnavailableError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    shown = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host  # noqa: S104
    err.print(
        f"Footfall {__version__} on [bold]http://{shown}:{settings.port}[/bold]  "
        f"(store: {redact(settings.database)}, API docs: /docs)",
        soft_wrap=True,
    )
    login = "a site API key" + (" or the admin password" if settings.admin_password_hash else "")
    err.print(
        f"Dashboard: [bold]http://{shown}:{settings.port}/dashboard/[/bold] (sign in with {login})",
        soft_wrap=True,
    )
    if settings.demo:
        err.print(
            f"Demo: http://{shown}:{settings.port}/demo/shop.html and "
            f"http://{shown}:{settings.port}/demo/support.html",
            soft_wrap=True,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is honoured only from trusted_proxies
            server_header=False,
            timeout_graceful_shutdown=30,
        )
    )
    server.run()


@app.command()
def migrate(config: ConfigOpt = None, database: DatabaseOpt = None) -> None:
    """Apply pending schema migrations."""
    settings = _settings(config, database=database)
    try:
        store = open_store(settings.database, memory_limit=settings.duckdb_memory_limit)
    except (StoreBusyError, StoreUnavailableError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    applied = store.migrate()
    version = store.schema_version()
    store.close()
    console.print(f"schema version {version}; applied now: {applied or 'none'}")


@app.command("hash-password")
def hash_password_command() -> None:
    """Hash a dashboard admin password for the config (the password itself is not stored).

    Asks twice on a terminal; otherwise reads one line from standard input.
    """
    from footfall.web.auth import hash_password

    if sys.stdin.isatty():
        password = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 10:
        err.print("[red]error:[/red] use at least 10 characters")
        raise typer.Exit(2)
    sys.stdout.write(f'admin_password_hash = "{hash_password(password)}"\n')


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@sites_app.command("list")
def sites_list(config: ConfigOpt = None, database: DatabaseOpt = None) -> None:
    """List sites with their allowed origins and keys."""
    store = _store(_settings(config, database=database))
    table = Table("site", "name", "tenant", "allowed origins", "active keys")
    for site in store.list_sites():
        keys = [k.key_id for k in store.list_api_keys(site.id) if not k.revoked]
        table.add_row(
            site.id,
            site.name,
            site.scope,
            "\n".join(site.allowed_origins) or "(none)",
            ", ".join(keys),
        )
    store.close()
    console.print(table)


def _origins(values: list[str]) -> list[str]:
    try:
        return [validate_origin_pattern(v) for v in values]
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@sites_app.command("add")
def sites_add(
    site_id: Annotated[str, typer.Argument(help="Short id: a-z, 0-9, '-' and '_'.")],
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin", "-o", help="Allowed origin, e.g. https://shop.com or https://*.shop.com"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Share one identity graph with the other sites of this tenant."),
    ] = None,
    key: Annotated[bool, typer.Option(help="Create an API key for the site.")] = True,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Add a site (or update its name and origins) and print a new API key."""
    if SITE_ID_PATTERN.fullmatch(site_id) is None:
        err.print("[red]error:[/red] site id must be 1-64 of a-z, 0-9, '-', '_'")
        raise typer.Exit(2)
    origins = _origins(origin or [])
    store = _store(_settings(config, database=database))
    existing = store.get_site(site_id)
    site = store.upsert_site(
        site_id,
        name or (existing.name if existing else site_id),
        origins,
        tenant or (existing.tenant if existing else None),
    )
    console.print(
        f"site [bold]{site.id}[/bold] {'updated' if existing else 'created'}; "
        f"origins: {', '.join(site.allowed_origins) or '(none: browsers are refused)'}"
    )
    if key:
        secret = new_api_key(store, site.id, "created with the site")
        console.print("API key (shown once, store it now):")
        console.print(secret, soft_wrap=True, highlight=False)
    store.close()


@sites_app.command("set-origins")
def sites_set_origins(
    site_id: str,
    origins: Annotated[list[str], typer.Argument(help="The complete list of allowed origins.")],
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Replace a site's allowed origins."""
    cleaned = _origins(origins)
    store = _store(_settings(config, database=database))
    site = store.get_site(site_id)
    if site is None:
        err.print(f"[red]error:[/red] no site '{site_id}'")
        raise typer.Exit(1)
    store.upsert_site(site.id, site.name, cleaned, site.tenant)
    store.close()
    console.print(f"site {site_id}: origins {', '.join(cleaned)}")


@sites_app.command("new-key")
def sites_new_key(
    site_id: str,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Create another API key for a site; only its hash is stored."""
    store = _store(_settings(config, database=database))
    if store.get_site(site_id) is None:
        err.print(f"[red]error:[/red] no site '{site_id}'")
        raise typer.Exit(1)
    secret = new_api_key(store, site_id, label)
    store.close()
    console.print(secret, soft_wrap=True, highlight=False)


@sites_app.command("revoke-key")
def sites_revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id: the part after 'ff_'.")],
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Revoke an API key at once."""
    store = _store(_settings(config, database=database))
    done = store.revoke_api_key(key_id)
    store.close()
    if not done:
        err.print(f"[red]error:[/red] no active key '{key_id}'")
        raise typer.Exit(1)
    console.print(f"key {key_id} revoked")


# --------------------------------------------------------------------------- persons

SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Site whose identity graph to use (default site).")
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="FOOTFALL_SERVER",
        help="Talk to a running server (e.g. http://localhost:8000) instead of the file.",
    ),
]
KeyOpt = Annotated[
    str | None, typer.Option("--key", envvar="FOOTFALL_API_KEY", help="Site API key for --server.")
]


class _Remote:
    """The same person operations through a running server's authenticated API."""

    def __init__(self, server: str, key: str | None) -> None:
        if not key:
            err.print("[red]error:[/red] --server needs --key (or FOOTFALL_API_KEY)")
            raise typer.Exit(2)
        self.base = server.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import json
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's own server URL
            self.base + path,
            data=data,
            method=method,
            headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except Exception:
                message = str(exc)
            err.print(f"[red]error:[/red] {message}")
            raise typer.Exit(1) from None
        except urllib.error.URLError as exc:
            err.print(f"[red]error:[/red] cannot reach {self.base}: {exc.reason}")
            raise typer.Exit(1) from None


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _local(config: str | None, database: str | None, site: str | None) -> tuple[Any, str]:
    from footfall.identity import IdentityGraph

    settings = _settings(config, database=database)
    store = _store(settings)
    chosen = store.get_site(site or settings.default_site)
    if chosen is None:
        err.print(f"[red]error:[/red] no site '{site}'")
        raise typer.Exit(1)
    graph = IdentityGraph(store, settings.identity_max_per_kind, settings.erase_tombstone_days)
    return graph, chosen.scope


def _person_id(graph: Any, tenant: str, name: str) -> int:
    node = graph.find(tenant, name)
    if node is None:
        err.print(f"[red]error:[/red] no person with identifier '{name}'")
        raise typer.Exit(1)
    return int(node.person_id)


def _print_profile(profile: dict[str, Any], events: list[dict[str, Any]]) -> None:
    console.print(
        f"[bold]person {profile['person_id']}[/bold]  events: {profile['events']}  "
        f"first seen: {profile['first_seen'] or '-'}  last seen: {profile['last_seen'] or '-'}"
    )
    ids = Table(
        "identifier", "events", "first seen", "last seen", "properties", title="identifiers"
    )
    for item in profile["identifiers"]:
        ids.add_row(
            f"{item['kind']}:{item['value']}",
            str(item["events"]),
            item["first_seen"] or "-",
            item["last_seen"] or "-",
            "yes" if item["has_properties"] else "",
        )
    console.print(ids)
    console.print("customer ids: " + (", ".join(profile["customer_ids"]) or "(none yet)"))
    if profile["metadata"]:
        meta = Table("property", "value", title="metadata")
        for key, value in sorted(profile["metadata"].items()):
            meta.add_row(key, str(value))
        console.print(meta)
    if events:
        journey = Table("time (UTC)", "site", "event", "identifier", "details", title="journey")
        for event in events[-30:]:
            details = event["data"].get("text") or event.get("chatbot_id") or ""
            if event.get("total_value_base") is not None:
                details = f"{event['total_value_base']:.2f} EUR {event.get('order_num') or ''}"
            journey.add_row(
                event["ts"][:19].replace("T", " "),
                event["site_id"],
                event["event"],
                f"{event['identifier_kind']}:{event['identifier']}",
                str(details)[:60],
            )
        console.print(journey)


@person_app.command("show")
def person_show(
    name: Annotated[str, typer.Argument(help="Any identifier: token, email, client id, alias.")],
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """A person's identifiers, metadata and journey."""
    if server:
        remote = _Remote(server, key)
        profile = remote.call("GET", f"/api/persons/{_quote(name)}")
        events = remote.call("GET", f"/api/persons/{_quote(name)}/journey")["events"]
    else:
        graph, tenant = _local(config, database, site)
        person = _person_id(graph, tenant, name)
        profile = graph.profile(tenant, person)
        events = graph.person_events(tenant, person)
    _print_profile(profile, events)


@person_app.command("explain")
def person_explain(
    a: str,
    b: str,
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """The chain of links that makes A and B one person."""
    if server:
        from urllib.parse import urlencode

        answer = _Remote(server, key).call(
            "GET", "/api/identity/explain?" + urlencode({"a": a, "b": b})
        )
        chain = answer["chain"] if answer["same_person"] else None
    else:
        graph, tenant = _local(config, database, site)
        steps = graph.explain(tenant, a, b)
        chain = None if steps is None else [step.to_dict() for step in steps]
    if chain is None:
        console.print(f"{a} and {b} are [bold]not[/bold] the same person")
        raise typer.Exit(1)
    table = Table("#", "from", "to", "source", "rule", "by", "when (UTC)")
    for i, step in enumerate(chain, 1):
        table.add_row(
            str(i),
            step["a"],
            step["b"],
            step["source"],
            step["rule"],
            step["actor"],
            step["at"][:19].replace("T", " "),
        )
    console.print(f"{a} and {b} are one person through {len(chain)} link(s):")
    console.print(table)


@person_app.command("split")
def person_split(
    a: str,
    b: str,
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Remove the direct link between A and B and recompute the persons."""
    if server:
        answer = _Remote(server, key).call("POST", "/api/identity/split", {"a": a, "b": b})
        first, second = answer["a_person"], answer["b_person"]
    else:
        from footfall.errors import ApiError

        graph, tenant = _local(config, database, site)
        try:
            first, second = graph.split(tenant, a, b, "cli")
        except ApiError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1) from None
    if first == second:
        console.print(f"link removed; {a} and {b} are still one person (another chain joins them)")
    else:
        console.print(f"link removed; {a} is person {first}, {b} is person {second}")


@person_app.command("export")
def person_export(
    name: str,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Everything stored about a person, as JSON."""
    import json

    if server:
        document = _Remote(server, key).call("GET", f"/api/persons/{_quote(name)}/export")
    else:
        graph, tenant = _local(config, database, site)
        document = graph.export(tenant, _person_id(graph, tenant, name))
    text = json.dumps(document, indent=2, default=str)
    if output:
        from pathlib import Path

        Path(output).write_text(text + "\n")
        err.print(f"wrote {output} ({len(document['event_list'])} events)")
    else:
        sys.stdout.write(text + "\n")


@person_app.command("erase")
def person_erase(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Delete a person's identifiers, links, metadata and events (with a tombstone)."""
    if not yes and not typer.confirm(f"Erase the person holding '{name}' and all their data?"):
        raise typer.Exit(1)
    if server:
        counts = _Remote(server, key).call("DELETE", f"/api/persons/{_quote(name)}")["erased"]
    else:
        graph, tenant = _local(config, database, site)
        counts = graph.erase(tenant, _person_id(graph, tenant, name), "cli")
    console.print(f"erased {counts['identifiers']} identifiers and {counts['events']} events")


@app.command("alias")
def alias_command(
    a: str,
    b: str,
    site: SiteOpt = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Declare that A and B are the same person (symmetric, idempotent)."""
    if server:
        person = _Remote(server, key).call("POST", "/api/alias", {"a": a, "b": b})["person_id"]
    else:
        graph, tenant = _local(config, database, site)
        person = graph.alias(tenant, a, b, "cli")
    console.print(f"{a} and {b} are person {person}")


# --------------------------------------------------------------------------- reports


@app.command("report")
def report_command(
    name: Annotated[
        str,
        typer.Argument(
            help="overview, people, retention, power-users, "
            "funnel, ab, revenue, feedback, popups, errors"
        ),
    ],
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            help="Site id(s), comma-separated, or 'all' (default: the "
            "default site; with --server: the key's site).",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="Start date (UTC), e.g. 2026-03-01.")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="End date, included.")] = None,
    days: Annotated[int | None, typer.Option(help="Without --from: the last N days (30).")] = None,
    interval: Annotated[str | None, typer.Option(help="day, week or month.")] = None,
    steps: Annotated[str | None, typer.Option(help="Funnel steps, comma-separated.")] = None,
    window: Annotated[str | None, typer.Option(help="Funnel window: 3600, 12h, 7d, 2w.")] = None,
    breakdown: Annotated[
        str | None,
        typer.Option(help="Funnel breakdown: popup_version, open_way, chatbot_id, ab_group."),
    ] = None,
    goal: Annotated[str | None, typer.Option(help="A/B goal event (purchase).")] = None,
    limit: Annotated[int | None, typer.Option(help="Rows to show (power-users, errors).")] = None,
    periods: Annotated[int | None, typer.Option(help="Retention periods (8).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the JSON the API returns.")
    ] = False,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Print an analytics report as tables (the same numbers as the API and dashboard)."""
    import json

    from footfall.analytics import REPORTS
    from footfall.analytics_api import report_filters, report_options
    from footfall.errors import ApiError
    from footfall.terminal import show_report

    report = REPORTS.get(name)
    if report is None:
        err.print(f"[red]error:[/red] no report '{name}'; choose from {', '.join(REPORTS)}")
        raise typer.Exit(2)
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
    }
    params = {k: str(v) for k, v in given.items() if v is not None}
    if server:
        from urllib.parse import urlencode

        if site and site != "all":
            params["site"] = site
        result = _Remote(server, key).call("GET", f"/api/reports/{name}?{urlencode(params)}")
    else:
        settings = _settings(config, database=database)
        sites = (
            None if site == "all" else [s for s in (site or settings.default_site).split(",") if s]
        )
        try:
            filters = report_filters(params, sites)
            options = report_options(report, params)
        except ApiError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
        store = _store(settings)
        try:
            result = report.run(store, filters, **options)
        except ValueError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        finally:
            store.close()
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        show_report(console, name, report.title, result)


@app.command("demo")
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from footfall import funnel_steps
    from footfall.analytics import refresh_presence
    from footfall.demo import HELP_SITE, DemoPlan, generate

    settings = _settings(config, database=database)
    store = _store(settings)
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
        with err.status("building the daily rollup and funnel step tables the reports read"):
            refresh_presence(store)
            funnel_steps.refresh(store)
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

    settings = _settings(config, database=database)
    keep = days or settings.retention_days
    if not keep:
        console.print("retention_days is 0 (keep every event) and no --days given: nothing to do")
        return
    store = _store(settings)  # loads what a crashed server left in the journal first
    try:
        result = apply_retention(store, keep)
    finally:
        store.close()
    console.print(
        f"deleted {result.events:,} events from before {result.cutoff:%Y-%m-%d} (UTC), "
        f"{result.orders:,} orders and {result.rollup_rows:,} rollup rows derived from them"
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
