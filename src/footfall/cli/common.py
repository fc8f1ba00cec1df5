"""What every command group shares: the consoles, the options that recur, opening the
settings and the store with a clear message on failure, and the client of a running
server's API for ``--server``.

The consoles are ``SafeConsole``s and stored values go into printed text through ``shown``
(``footfall.cli.terminal``).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import typer

from footfall.cli.terminal import SafeConsole, shown
from footfall.config import Settings, load_settings
from footfall.sites import seed_sites
from footfall.store import Store, open_store
from footfall.store.base import StoreBusyError, StoreUnavailableError

console = SafeConsole()
err = SafeConsole(stderr=True)

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="TOML config file (else FOOTFALL_CONFIG).")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database", help="DuckDB file or postgresql:// URL.")
]
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
    str | None,
    typer.Option(
        "--key",
        envvar="FOOTFALL_API_KEY",
        help="Site API key for --server.",
    ),
]
TARGET_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("server", ServerOpt),
    ("key", KeyOpt),
    ("config", ConfigOpt),
    ("database", DatabaseOpt),
)
"""The options that pick where a command works: a running server's API, or the file."""
_R = TypeVar("_R")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise (``message`` is markup: a
    stored value in it goes through ``shown``)."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def settings_or_exit(config: str | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except Exception as exc:  # pydantic's message names the bad setting
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def missing_database(database: str) -> str | None:
    """The absolute path of a DuckDB file that does not exist (None for one that does, for
    a PostgreSQL URL and for DuckDB's ``:memory:``)."""
    if database.startswith(("postgresql://", "postgres://", ":memory:")):
        return None
    path = os.path.abspath(database)
    return None if os.path.exists(path) else path


def open_store_or_exit(
    settings: Settings, *, prepare: bool = True, existing: bool = False
) -> Store:
    """The store, migrated and with its sites seeded (``prepare``), or exit 1 with the reason
    (a file another process holds, a database that cannot be reached).

    ``existing``: the command only reads (or only deletes), so a DuckDB file that does not
    exist is refused (exit 2) rather than created empty: run in the wrong folder, a report
    would otherwise print zeros and leave a stray ``footfall.duckdb`` behind.
    """
    missing = missing_database(settings.database) if existing else None
    if missing is not None:
        raise fail(
            f"no database file {shown(missing)} (this command only reads, so it does not "
            "create one); name the file the server uses with --database PATH, or ask a "
            "running server with --server URL --key KEY",
            2,
        )
    try:
        store = open_store(settings.database, memory_limit=settings.duckdb_memory_limit)
    except (StoreBusyError, StoreUnavailableError) as exc:
        raise fail(str(exc)) from None
    if not prepare:
        return store
    store.migrate()
    seed_sites(store, settings)
    # After a crash the ingest journal may hold acknowledged events not yet in the file;
    # load them first, or an erase here would be undone by the server's replay.
    from footfall.ingest.journal import replay_pending

    replay_pending(store, settings)
    return store


def quote_name(name: str) -> str:
    """A name as one path segment of the API (``/`` and ``:`` included)."""
    return quote(name, safe="")


class Remote:
    """A running server's authenticated API, for the commands' ``--server`` mode."""

    def __init__(self, server: str, key: str | None) -> None:
        if not key:
            raise fail("--server needs --key (or FOOTFALL_API_KEY)", 2)
        self.base = server.rstrip("/")
        self.key = key

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        missing_ok: bool = False,
        what: str | None = None,
    ) -> Any:
        """The answer's JSON; exits with the server's message on an error (after ``what``,
        what the call was for, when given; a 404 answers None instead when ``missing_ok``)."""
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
            if missing_ok and exc.code == 404:
                return None
            try:
                message = json.loads(exc.read())["error"]["message"]
            except Exception:
                message = str(exc)
            raise fail(f"{what}: {shown(message)}" if what else shown(message)) from None
        except urllib.error.URLError as exc:
            raise fail(f"cannot reach {self.base}: {exc.reason}") from None


def target_command(
    options: tuple[tuple[str, Any], ...], pick: Callable[..., Any], name: str
) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Give a command ``options`` as its last parameters and call it with ``pick(**those)``
    as its parameter ``name`` (closed afterwards if it has ``close``): the one place a
    command group decides between the server's API (``--server``) and the database file."""

    def decorate(command: Callable[..., _R]) -> Callable[..., _R]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for key, p in signature.parameters.items() if key != name]
        added = [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
            for key, hint in options
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> _R:
            chosen = pick(**{key: kwargs.pop(key) for key, _ in options})
            try:
                return command(*args, **{name: chosen}, **kwargs)
            finally:
                close = getattr(chosen, "close", None)
                if close is not None:
                    close()  # a database file is checkpointed and let go

        parameters = [*own, *added]
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate
