"""A newcomer's first hour with the ``footfall`` command: read commands that refuse to
invent an empty store, the command on the PATH from a fresh clone, ``--site all`` with a
site key, and demo data sent to a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
