"""Running the server and looking after its installation: ``serve``, ``migrate``,
``hash-password``, ``version``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from footfall import __version__
from footfall.cli.allocator import limit_malloc_arenas
from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    console,
    err,
    fail,
    open_store_or_exit,
    settings_or_exit,
)
from footfall.logs import configure_logging
from footfall.store import redact


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
    settings = settings_or_exit(config, database=database, host=host, port=port, demo=demo or None)
    configure_logging(settings.log_level)
    # Before anything starts threads (DuckDB, the thread pool): see footfall.cli.allocator.
    limit_malloc_arenas(settings.malloc_arena_max)
    import uvicorn  # the server's modules load only for this command (lazy: a fast CLI)

    from footfall.http.app import create_app, server_config

    try:
        app = create_app(settings)
    except ValueError as exc:  # e.g. --demo outside a source checkout
        raise fail(str(exc), 2) from None
    open_store_or_exit(settings, prepare=False).close()  # fail fast on a held file
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
    uvicorn.Server(server_config(settings, app)).run()


def migrate(config: ConfigOpt = None, database: DatabaseOpt = None) -> None:
    """Apply pending schema migrations."""
    store = open_store_or_exit(settings_or_exit(config, database=database), prepare=False)
    applied = store.migrate()
    version = store.schema_version()
    store.close()
    console.print(f"schema version {version}; applied now: {applied or 'none'}")


def hash_password_command() -> None:
    """Hash a dashboard admin password for the config (the password itself is not stored).

    Asks twice on a terminal; otherwise reads one line from standard input.
    """
    from footfall.passwords import hash_password

    if sys.stdin.isatty():
        password = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 10:
        raise fail("use at least 10 characters", 2)
    sys.stdout.write(f'admin_password_hash = "{hash_password(password)}"\n')


def version() -> None:
    """Print the version."""
    console.print(__version__)
