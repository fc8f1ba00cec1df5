"""A newcomer's first hour with the ``footfall`` command: read commands that refuse to
invent an empty store, the command on the PATH from a fresh clone, ``--site all`` with a
site key, and demo data sent to a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import OTHER, SHOP, Server, config_with

READ_COMMANDS = (
    ("report", "overview"),
    ("report", "custom-events", "--json"),
    ("person", "show", "someone@example.test"),
    ("person", "export", "someone@example.test"),
    ("person", "explain", "a-token", "b-token"),
    ("person", "split", "a-token", "b-token"),
    ("person", "erase", "someone@example.test", "--yes"),
    ("sites", "list"),
    ("retention", "apply", "--days", "30"),
)
"""Commands that only read (or only delete what is there): none may create the file."""


def footfall(
    *args: str, cwd: Path, config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m footfall ARGS`` in ``cwd`` with an empty config kept outside it (so the
    folder's contents are the command's alone); PYTHONPATH is kept: the code under test."""
    config.write_text("")
    base = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "FOOTFALL_CONFIG": str(config)}
    if "PYTHONPATH" in os.environ:
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_read_commands_refuse_a_database_file_that_does_not_exist(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Run in a folder without the server's file (the default ./footfall.duckdb): exit 2,
    the absolute path and what to pass instead, and the folder stays empty."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    out = footfall(*command, cwd=folder, config=tmp_path / "none.toml")
    assert out.returncode == 2, (out.stdout, out.stderr)
    message = " ".join(out.stderr.split())  # rich wraps long lines
    assert f"no database file {folder / 'footfall.duckdb'}" in message, message
    assert "--database PATH" in message
    assert "--server URL" in message
    assert list(folder.iterdir()) == []
    named = tmp_path / "typo.duckdb"
    out = footfall(*command, "--database", str(named), cwd=folder, config=tmp_path / "none.toml")
    assert out.returncode == 2
    assert str(named) in " ".join(out.stderr.split())
    assert not named.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "none.toml"]


def test_read_commands_still_read_an_existing_file_and_write_commands_create_one(
    tmp_path: Path,
) -> None:
    """The refusal is for a missing file only: ``sites add`` (a write) creates the file,
    and the read commands then read it."""
    config = tmp_path / "none.toml"
    folder = tmp_path / "work"
    folder.mkdir()
    added = footfall("sites", "add", "shop", "--no-key", cwd=folder, config=config)
    assert added.returncode == 0, added.stderr
    assert (folder / "footfall.duckdb").exists()
    listed = footfall("sites", "list", cwd=folder, config=config)
    assert listed.returncode == 0, listed.stderr
    assert "shop" in listed.stdout
    report = footfall("report", "overview", "--json", cwd=folder, config=config)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["events"] == 0
    aliased = footfall("alias", "a-token-0001", "b-token-0001", cwd=tmp_path, config=config)
    assert aliased.returncode == 0, aliased.stderr  # alias writes: it may create the file
    assert (tmp_path / "footfall.duckdb").exists()


def test_read_commands_on_postgresql_are_unchanged(tmp_path: Path, postgres_url: str) -> None:
    """A PostgreSQL URL is no file: nothing to check, the report reads the database."""
    out = footfall(
        "report", "overview", "--json", "--database", postgres_url,
        cwd=tmp_path, config=tmp_path / "none.toml",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["events"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["none.toml"]


TENANT_CONFIG = config_with() + (
    '\n[[sites]]\nid = "blog"\nname = "Blog"\nallowed_origins = ["https://blog.test"]\n'
    'tenant = "default"\n'
)
"""The default site and ``blog`` share a tenant; ``other`` (from CONFIG) is another's."""


def _visits(srv: Server, counts: dict[str, tuple[str, int]]) -> None:
    """``counts``: site -> (origin, visitors), each a ``visitor`` event of its own token."""
    with srv.client() as api:
        for site, (origin, visitors) in counts.items():
            for n in range(visitors):
                event = {"event": "visitor", "token": f"{site}-visitor-{n:04d}"}
                answer = api.post(
                    f"/api/analytics/track?site={site}", json=event, headers={"origin": origin}
                )
                assert answer.status_code == 200, answer.text


def test_site_all_with_a_site_key_reads_every_site_of_its_tenant(tmp_path: Path) -> None:
    """``site=all`` with a site key: the key's tenant's sites (default and blog), never
    another tenant's (other); the API and ``footfall report --server`` alike."""
    srv = Server(tmp_path / "srv", TENANT_CONFIG)
    key = srv.start_with_key("default")
    try:
        _visits(
            srv,
            {"default": (SHOP, 2), "blog": ("https://blog.test", 3), "other": (OTHER, 5)},
        )
        with srv.client(headers={"authorization": f"Bearer {key}"}) as api:
            answer = api.get("/api/reports/overview?site=all")
            assert answer.status_code == 200, answer.text
            report = answer.json()
            assert report["filters"]["sites"] == ["blog", "default"]
            assert (report["people"], report["events"]) == (5, 5)
            own = api.get("/api/reports/overview").json()
            assert (own["filters"]["sites"], own["people"]) == (["default"], 2)
            foreign = api.get("/api/reports/overview?site=default,other")
            assert foreign.status_code == 403
        out = footfall(
            "report", "overview", "--site", "all", "--json", "--server", srv.url, "--key", key,
            cwd=tmp_path, config=tmp_path / "none.toml",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        assert shown["filters"]["sites"] == ["blog", "default"]
        assert shown["people"] == 5
        table = footfall(
            "report", "overview", "--site", "all", "--server", srv.url, "--key", key,
            cwd=tmp_path, config=tmp_path / "none.toml",
        )  # fmt: skip
        assert table.returncode == 0, table.stderr
        assert "blog, default," in table.stdout, table.stdout
    finally:
        srv.stop()


def _report(api: httpx.Client, name: str, **params: str) -> dict[str, Any]:
    answer = api.get(f"/api/reports/{name}", params=params)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def test_demo_writes_custom_events_into_the_file(tmp_path: Path) -> None:
    """``footfall demo`` fills the Custom events page too (it was empty before); 30,000
    events: a size with a slice that makes none (which failed once)."""
    config = tmp_path / "none.toml"
    out = footfall(
        "demo", "--events", "30000", "--database", "demo.duckdb", cwd=tmp_path, config=config
    )
    assert out.returncode == 0, out.stderr
    report = footfall(
        "report", "custom-events", "--site", "all", "--json", "--database", "demo.duckdb",
        cwd=tmp_path, config=config,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    names = {e["name"] for e in json.loads(report.stdout)["events"]}
    assert {"Signed Up", "Article Read"} <= names, names


def test_demo_through_a_running_server_stores_what_the_file_demo_writes(tmp_path: Path) -> None:
    """``footfall demo --server URL --key K`` while the server holds its file: events,
    custom events and merged identities go through the batch APIs, and the server's reports
    give the numbers the same demo written into a file gives (same seed, same traffic);
    a wrong key is refused before anything is made, with the server's reason."""
    config = tmp_path / "none.toml"
    srv = Server(tmp_path / "srv", config_with())
    key = srv.start_with_key("default")
    try:
        wrong = footfall(
            "demo", "--events", "2000", "--server", srv.url, "--key", "ff_not-a-key",
            cwd=tmp_path, config=config,
        )  # fmt: skip
        assert wrong.returncode != 0
        message = " ".join(wrong.stderr.split())
        assert "refused --key" in message, message
        assert "unknown or revoked API key" in message
        foreign = footfall(
            "demo", "--site", "other", "--server", srv.url, "--key", key,
            cwd=tmp_path, config=config,
        )  # fmt: skip
        assert foreign.returncode == 2  # another tenant's site: not among the key's
        assert "no site 'other' among the key's sites" in " ".join(foreign.stderr.split())
        too_long = footfall(
            "demo", "--days", "30", "--server", srv.url, "--key", key, cwd=tmp_path, config=config
        )
        assert too_long.returncode == 2
        assert "at most 6" in " ".join(too_long.stderr.split())
        sent = footfall(
            "demo", "--events", "3000", "--server", srv.url, "--key", key,
            cwd=tmp_path, config=config,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert " 0 refused" in " ".join(sent.stdout.split()), sent.stdout
        with srv.client(headers={"authorization": f"Bearer {key}"}) as api:
            served = _report(api, "overview", days="8")
            custom = _report(api, "custom-events", days="8")
    finally:
        srv.stop()
    written = footfall(
        "demo", "--events", "3000", "--days", "6", "--database", "file.duckdb",
        cwd=tmp_path, config=config,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    here = footfall(
        "report", "overview", "--days", "8", "--site", "all", "--json", "--database",
        "file.duckdb", cwd=tmp_path, config=config,
    )  # fmt: skip
    file_report = json.loads(here.stdout)
    assert served["people"] > 0
    assert served["events"] > 3000  # the 3,000 and the custom events
    for field in ("events", "people", "visits", "orders", "revenue_eur"):
        assert served[field] == file_report[field], (field, served, file_report)
    assert custom["total"] > 0
    assert {"Signed Up", "Article Read"} <= {e["name"] for e in custom["events"]}
