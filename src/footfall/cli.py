"""The ``footfall`` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from footfall import __version__
from footfall.config import Settings, load_settings
from footfall.logs import configure_logging
from footfall.sites import SITE_ID_PATTERN, new_api_key, seed_sites, validate_origin_pattern
from footfall.store import Store, open_store
from footfall.store.base import StoreBusyError

app = typer.Typer(
    help="Footfall: tracking, identity resolution and analytics.", no_args_is_help=True
)
sites_app = typer.Typer(help="Sites (tenants): origins and API keys.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")

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
        store = open_store(settings.database)
    except StoreBusyError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    store.migrate()
    seed_sites(store, settings)
    return store


@app.command()
def serve(
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the server (embedded DuckDB by default)."""
    import uvicorn

    from footfall.api import create_app

    settings = _settings(config, database=database, host=host, port=port)
    configure_logging(settings.log_level)
    try:
        open_store(settings.database).close()  # fail fast, with a clear message, on a held file
    except StoreBusyError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    shown = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host  # noqa: S104
    err.print(
        f"Footfall {__version__} on [bold]http://{shown}:{settings.port}[/bold]  "
        f"(store: {settings.database}, API docs: /docs)",
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
        store = open_store(settings.database)
    except StoreBusyError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    applied = store.migrate()
    version = store.schema_version()
    store.close()
    console.print(f"schema version {version}; applied now: {applied or 'none'}")


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@sites_app.command("list")
def sites_list(config: ConfigOpt = None, database: DatabaseOpt = None) -> None:
    """List sites with their allowed origins and keys."""
    store = _store(_settings(config, database=database))
    table = Table("site", "name", "allowed origins", "active keys")
    for site in store.list_sites():
        keys = [k.key_id for k in store.list_api_keys(site.id) if not k.revoked]
        table.add_row(
            site.id, site.name, "\n".join(site.allowed_origins) or "(none)", ", ".join(keys)
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
    site = store.upsert_site(site_id, name or (existing.name if existing else site_id), origins)
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
    store.upsert_site(site.id, site.name, cleaned)
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
