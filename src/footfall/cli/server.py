"""Running the server and looking after its installation: ``serve``, ``migrate``,
``hash-password``, ``version``."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from footfall import __version__
from footfall.access import setup_link
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

    shown = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host  # noqa: S104
    base = f"http://{shown}:{settings.port}"

    issued: list[str] = []  # the setup link's token, when the app's start issued one

    class AnnouncingServer(uvicorn.Server):
        """Prints the first sign-in's link once the port takes connections: the app's
        start (which issues the link) runs before uvicorn binds, and a link opened in that
        moment would be refused; a server that cannot bind prints none."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and issued:
                announce_link(issued[-1])

    def announce_link(setup_token: str) -> None:
        """The first sign-in's link, printed here only: never to the log."""
        err.print(
            f"First sign-in: [bold]{setup_link(base, setup_token)}[/bold]",
            soft_wrap=True,
            highlight=False,
        )
        err.print(
            f"  sets the admin password; one use, valid for {settings.setup_link_minutes:g} "
            "minutes; a new link at each start until a password is set",
            soft_wrap=True,
        )

    def announce(setup_token: str | None) -> None:
        if setup_token is not None:
            issued.append(setup_token)

    try:
        app = create_app(settings, announce)
    except ValueError as exc:  # e.g. --demo outside a source checkout
        raise fail(str(exc), 2) from None
    open_store_or_exit(settings, prepare=False).close()  # fail fast on a held file
    err.print(
        f"Footfall {__version__} on [bold]{base}[/bold]  "
        f"(store: {redact(settings.database)}, API docs: /docs)",
        soft_wrap=True,
    )
    err.print(f"Dashboard: [bold]{base}/dashboard/[/bold]", soft_wrap=True)
    if settings.demo:
        err.print(
            f"Demo: http://{shown}:{settings.port}/demo/shop.html and "
            f"http://{shown}:{settings.port}/demo/support.html",
            soft_wrap=True,
        )
    AnnouncingServer(server_config(settings, app)).run()


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
    from footfall.passwords import hash_password, password_problem

    if sys.stdin.isatty():
        password = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem:
        raise fail(problem, 2)
    sys.stdout.write(f'admin_password_hash = "{hash_password(password)}"\n')


def version() -> None:
    """Print the version and the code folder it runs from: with two checkouts (or an
    installed copy beside one), which ``footfall`` a shell found."""
    import footfall

    # Not through rich: a long path stays on one line.
    sys.stdout.write(f"footfall {__version__} from {Path(footfall.__file__).parent}\n")
