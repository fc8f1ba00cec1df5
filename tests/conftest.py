"""Real servers for the tests: ``footfall serve`` subprocesses on 127.0.0.1, DuckDB files,
and a real PostgreSQL server (started on first use) for the store parametrisation."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import duckdb
import httpx
import pytest

from footfall.store import Store, open_store
from pgserver import PostgresServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright, Route

SHOP = "https://shop.test"
OTHER = "https://other.test"

CONFIG = f"""
default_site = "default"
allowed_origins = ["{SHOP}", "https://*.shop.test", "http://127.0.0.1"]
trusted_proxies = ["127.0.0.1"]

[[sites]]
id = "other"
name = "Other shop"
allowed_origins = ["{OTHER}"]
"""


def config_with(*settings: str) -> str:
    """``CONFIG`` plus top-level settings (placed before its ``[[sites]]`` tables)."""
    anchor = 'default_site = "default"\n'
    return CONFIG.replace(anchor, anchor + "".join(f"{line}\n" for line in settings))


# uvicorn re-raises SIGTERM after its graceful shutdown, so supervisors see the signal.
CLEAN_EXIT = (0, -signal.SIGTERM)


# Debian's Chromium, headless, with no traffic of its own (updates, sync, field trials).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch_chromium(playwright: Playwright, *extra_args: str) -> Browser:
    """One browser for a test module; scripts/test installs the chromium package."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for a test module (a module may define its own, with flags)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One ``footfall serve`` process; stop it before reading its DuckDB file."""

    def __init__(
        self, workdir: Path, config: str = CONFIG, *, database_url: str | None = None, **env: str
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database = workdir / "footfall.duckdb"
        self.database_url = database_url
        """A PostgreSQL URL instead of the DuckDB file (several servers may share it)."""
        self.config = workdir / "footfall.toml"
        self.config.write_text(config)
        self.log = workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")},
            "FOOTFALL_CONFIG": str(self.config),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, keep_port: bool = False) -> Server:
        """Start (again); ``keep_port`` restarts on the same port, e.g. for clients that retry."""
        if not keep_port:
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "footfall",
                    "serve",
                    "--port",
                    str(self.port),
                    "--database",
                    self.target,
                ],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log.read_text()}")

    @property
    def target(self) -> str:
        """What ``--database`` gets: the DuckDB file or the PostgreSQL URL."""
        return self.database_url or str(self.database)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.process = None
        return code

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Query the stopped server's database file (DuckDB allows one writer process)."""
        assert self.process is None, "stop the server first"
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def sites_command(self, *args: str) -> str:
        """``footfall sites ARGS`` on this server's store (DuckDB: while the server is
        stopped); its output, stripped."""
        assert self.process is None or self.database_url, "stop the server first"
        out = subprocess.run(
            [sys.executable, "-m", "footfall", "sites", *args, "--database", self.target],
            capture_output=True,
            text=True,
            env={**self.env, "COLUMNS": "200"},
            check=True,
        )
        return out.stdout.strip()

    def new_key(self, site: str) -> str:
        """A fresh API key for ``site``, made with the CLI."""
        return self.sites_command("new-key", site)

    def write_key(self, site: str = "default") -> str:
        """The site's public write key, made with the CLI."""
        return self.sites_command("write-key", site)

    def start_with_key(self, site: str = "default") -> str:
        """Start once (creating the sites), make a key for ``site`` while the file is free
        (DuckDB lets one process write), start again; returns the key."""
        self.start()
        self.stop()
        key = self.new_key(site)
        self.start()
        return key

    def load_demo(self, events: int, timeout: float) -> None:
        """``footfall demo`` into this server's database (stopped, for DuckDB)."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "footfall",
                "demo",
                "--events",
                str(events),
                "--database",
                self.target,
            ],
            env=self.env,
            cwd=self.workdir,
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def client(self, ip: str | None = None, **kwargs: Any) -> httpx.Client:
        """A client whose calls appear to come from ``ip`` (via the trusted loopback proxy)."""
        headers = dict(kwargs.pop("headers", {}))
        if ip is not None:
            headers["x-forwarded-for"] = ip
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Poll ``check`` until it holds or ``seconds`` pass (a bounded wait, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def post_visitors(server: Server, count: int, prefix: str = "background") -> None:
    """``count`` visitor events with tokens of their own, each answered 200."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for n in range(count):
            answer = client.post(
                "/api/events/track", json={"event": "visitor", "token": f"{prefix}{n:02d}"}
            )
            assert answer.status_code == 200


SETUP_LINE = re.compile(r"First sign-in: (http://\S+/dashboard/setup\?token=(\S+))")


def setup_links(text: str) -> list[tuple[str, str]]:
    """(link, token) of every setup link a ``footfall serve`` output holds, oldest first."""
    return [(m.group(1), m.group(2)) for m in SETUP_LINE.finditer(text)]


_ips = (
    f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(1, 250), range(250), range(1, 250))
)


@pytest.fixture
def fresh_ip() -> str:
    """Each test speaks from its own client IP, so the 120/min limit never couples tests."""
    return next(_ips)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shared server for tests that only look at HTTP answers."""
    srv = Server(tmp_path_factory.mktemp("shared")).start()
    yield srv
    assert srv.stop() in CLEAN_EXIT


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that inspect what was stored."""
    srv = Server(tmp_path / "srv").start()
    yield srv
    if srv.process is not None:
        srv.stop()


@pytest.fixture
def api(server: Server, fresh_ip: str) -> Iterator[httpx.Client]:
    with server.client(fresh_ip) as client:
        yield client


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server on 127.0.0.1 for the session, started on first use and removed
    at the end (or the server ``FOOTFALL_TEST_POSTGRES_URL`` names, left running)."""
    external = os.environ.get("FOOTFALL_TEST_POSTGRES_URL")
    server = PostgresServer.use(external) if external else PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


_databases = itertools.count()


def _fresh_store(opened: Store) -> Store:
    opened.migrate()
    opened.upsert_site("default", "Default site", ["*"])
    return opened


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresServer) -> Iterator[str]:
    """A migrated database with the default site; every test database is a copy of it."""
    name = f"footfall_template_{os.getpid()}"
    postgres.drop_database(name)
    _fresh_store(open_store(postgres.create_database(name))).close()
    yield name
    postgres.drop_database(name)


@pytest.fixture
def postgres_url(postgres: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A database of the test's own, migrated, with the default site (a template copy)."""
    name = f"footfall_test_{os.getpid()}_{next(_databases)}"
    url = postgres.create_database(name, template=postgres_template)
    yield url
    postgres.drop_database(name)


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store with the default site, once per backend: store-level and
    analytics tests take it and run against DuckDB and against a real PostgreSQL server."""
    if request.param == "duckdb":
        opened = _fresh_store(open_store(str(tmp_path / "store.duckdb")))
    else:
        opened = open_store(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Store]:
    """A fresh embedded store with the default site, for what only DuckDB does (the funnel
    step tables' rewrites in person order, its journal)."""
    opened = _fresh_store(open_store(str(tmp_path / "store.duckdb")))
    yield opened
    opened.close()


@contextmanager
def loopback_context(browser: Browser, wait_ms: int, **options: Any) -> Iterator[BrowserContext]:
    """A fresh browser profile (``options`` as for ``new_context``) that may only talk to
    127.0.0.1 (and data: URLs); any request that tried to leave fails the test at the end."""
    ctx = browser.new_context(**options)
    ctx.set_default_timeout(wait_ms)
    escaped: list[str] = []

    def loopback_only(route: Route) -> None:
        url = route.request.url
        if url.startswith("data:") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            escaped.append(url)
            route.abort()

    ctx.route("**/*", loopback_only)
    yield ctx
    ctx.close()
    assert escaped == [], f"the browser tried to leave the loopback interface: {escaped}"
