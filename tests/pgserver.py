"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks.

``initdb`` into a fresh temporary directory, then ``postgres`` as a child process on a free
loopback port, trust authentication for loopback only, no Unix socket. PostgreSQL refuses to
run as root (CI and this machine run as root), so as root it runs as the ``postgres`` system
user the Debian package creates, in a directory that user owns. Binaries: ``pg_config
--bindir``, else the newest ``/usr/lib/postgresql/<version>/bin``, else ``postgres`` on PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

# Tests trade durability for speed; benchmarks keep PostgreSQL's defaults (durable=True).
_FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` live; raises with a hint when PostgreSQL is absent."""
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidate = Path(out.stdout.strip())
        if out.returncode == 0 and (candidate / "initdb").exists():
            return candidate
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    if versions:
        return Path(versions[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: run scripts/test (it installs the Debian "
        "package 'postgresql'), or set FOOTFALL_TEST_POSTGRES_URL to a server you own"
    )


class PostgresServer:
    """One PostgreSQL server in a temporary directory; ``stop`` removes everything."""

    def __init__(
        self, *, durable: bool = False, max_connections: int = 200, settings: tuple[str, ...] = ()
    ) -> None:
        self.durable = durable
        self.max_connections = max_connections
        self.settings = settings
        """Extra ``name=value`` server settings (benchmarks: memory sizes)."""
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.external: str | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            self._uid, self._gid = user.pw_uid, user.pw_gid
        else:
            self._uid, self._gid = os.geteuid(), os.getegid()

    @classmethod
    def use(cls, url: str) -> PostgresServer:
        """A server someone else runs (``FOOTFALL_TEST_POSTGRES_URL``: a superuser URL)."""
        server = cls()
        server.external = url
        return server

    @property
    def admin_url(self) -> str:
        return self.external or self.url("postgres")

    def url(self, database: str) -> str:
        if self.external is not None:
            parts = urlsplit(self.external)
            return urlunsplit(parts._replace(path="/" + database))
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            list(args),
            check=True,
            capture_output=True,
            timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
            **self._as,
        )

    def start(self, timeout: float = 60.0) -> PostgresServer:
        if self.external is not None:
            return self
        bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="footfall-pg-"))
        os.chown(self.root, self._uid, self._gid)
        data = self.root / "data"
        self._run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = [
            "listen_addresses=127.0.0.1",
            "unix_socket_directories=",
            f"max_connections={self.max_connections}",
            *(() if self.durable else _FAST),
            *self.settings,
        ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.port = _free_port()
            log = (self.root / "server.log").open("ab")
            args = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port)]
            for setting in settings:
                args += ["-c", setting]
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=log,
                env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
                start_new_session=True,  # a Ctrl-C in the terminal does not reach it
                **self._as,
            )
            log.close()
            if self._wait_ready(deadline):
                return self
            # Lost the port to someone else between choosing and binding: try another.
            self._terminate()
        raise RuntimeError(f"PostgreSQL did not start:\n{self.log_text()}")

    def _wait_ready(self, deadline: float) -> bool:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def log_text(self) -> str:
        path = self.root / "server.log" if self.root else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def execute(self, statement: str) -> None:
        """One administrative statement (CREATE/DROP DATABASE) outside a transaction."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str, template: str | None = None) -> str:
        clause = f" TEMPLATE {name_ok(template)}" if template else ""
        self.execute(f"CREATE DATABASE {name_ok(name)}{clause}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name_ok(name)} WITH (FORCE)")

    def _terminate(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: ends sessions
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def name_ok(name: str) -> str:
    """Database names we make are plain identifiers; anything else is a bug here."""
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not a plain database name: {name!r}")
    return name
