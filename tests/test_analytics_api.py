"""The reports over real HTTP and in the terminal: same numbers, keys scoped to their tenant."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analytics_data import load
from conftest import Server
from footfall.analytics.reports import REPORTS
from footfall.store import open_store

RANGE = {"from": "2026-03-02", "to": "2026-03-22", "site": "default,help"}


@pytest.fixture(scope="module")
def reports_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[str, str]]]:
    srv = Server(tmp_path_factory.mktemp("reports"))
    store = open_store(str(srv.database))
    store.migrate()
    store.upsert_site("default", "Default site", ["*"])
    load(store)
    store.close()
    keys = {site: srv.new_key(site) for site in ("default", "rival")}
    srv.start()
    yield srv, keys
    srv.stop()


def _get(srv: Server, key: str | None, path: str, **params: str) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with srv.client(headers=headers) as client:
        answer = client.get(path, params=params)
    return answer.status_code, answer.json()


def test_every_report_answers_with_the_hand_computed_numbers(
    reports_server: tuple[Server, dict[str, str]],
) -> None:
    srv, keys = reports_server
    status, index = _get(srv, keys["default"], "/api/reports")
    assert status == 200
    assert [r["name"] for r in index["reports"]] == list(REPORTS)
    status, people = _get(srv, keys["default"], "/api/reports/people", **RANGE)
    assert status == 200
    assert people["report"] == "people"
    assert people["people"] == 3  # Alice, Bob, Carol after identity resolution
    status, funnel = _get(
        srv,
        keys["default"],
        "/api/reports/funnel",
        **RANGE,
        steps="visitor,bot_open,convo_started,purchase",
        window="8d",
        breakdown="ab_group",
    )
    assert status == 200
    assert {g["group"]: [s["people"] for s in g["steps"]] for g in funnel["groups"]} == {
        "control": [2, 2, 2, 1],
        "test": [1, 1, 1, 1],
    }
    status, revenue = _get(srv, keys["default"], "/api/reports/revenue", **RANGE)
    assert (status, revenue["orders"], revenue["revenue_eur"]) == (200, 3, 22.5)


def test_a_key_reads_its_own_tenant_only(reports_server: tuple[Server, dict[str, str]]) -> None:
    srv, keys = reports_server
    status, body = _get(srv, keys["rival"], "/api/reports/people", **RANGE)
    assert status == 403
    assert body["error"]["code"] == "FORBIDDEN"
    # Without a site the key reads its own: Erin on the rival site.
    status, own = _get(srv, keys["rival"], "/api/reports/people", **{"from": "2026-03-02"})
    assert status == 200
    assert own["filters"]["sites"] == ["rival"]
    assert own["people"] == 1


@pytest.mark.parametrize(
    ("key", "path", "params", "status", "code", "field"),
    [
        (None, "/api/reports/people", {}, 401, "UNAUTHORIZED", None),
        ("bad", "/api/reports/people", {}, 401, "UNAUTHORIZED", None),
        ("default", "/api/reports/nonsense", {}, 404, "NOT_FOUND", None),
        (
            "default",
            "/api/reports/people",
            {"interval": "fortnight"},
            422,
            "VALIDATION_ERROR",
            "interval",
        ),
        ("default", "/api/reports/people", {"from": "yesterday"}, 422, "VALIDATION_ERROR", "from"),
        (
            "default",
            "/api/reports/people",
            {"from": "2026-03-05", "to": "2026-03-01"},
            422,
            "VALIDATION_ERROR",
            "from",
        ),
        ("default", "/api/reports/funnel", {"steps": "visitor"}, 422, "VALIDATION_ERROR", "steps"),
        (
            "default",
            "/api/reports/funnel",
            {"steps": "visitor,teleport"},
            422,
            "VALIDATION_ERROR",
            "steps",
        ),
        ("default", "/api/reports/funnel", {"window": "-3d"}, 422, "VALIDATION_ERROR", "window"),
        (
            "default",
            "/api/reports/funnel",
            {"breakdown": "colour"},
            422,
            "VALIDATION_ERROR",
            "breakdown",
        ),
        ("default", "/api/reports/power-users", {"limit": "0"}, 422, "VALIDATION_ERROR", "limit"),
        ("default", "/api/reports/people", {"days": "abc"}, 422, "VALIDATION_ERROR", "days"),
    ],
)
def test_bad_requests_get_a_code_and_the_field(
    reports_server: tuple[Server, dict[str, str]],
    key: str | None,
    path: str,
    params: dict[str, str],
    status: int,
    code: str,
    field: str | None,
) -> None:
    srv, keys = reports_server
    got, body = _get(srv, keys.get(key or "", key), path, **params)
    assert got == status
    assert body["error"]["code"] == code
    assert body["error"].get("field") == field


def _cli(srv: Server, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "footfall", "report", *args, "--database", str(srv.database)],
        capture_output=True,
        text=True,
        env={**srv.env, "COLUMNS": "160"},
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize("name", list(REPORTS))
def test_terminal_reports_show_the_api_numbers(
    reports_server: tuple[Server, dict[str, str]], name: str
) -> None:
    srv, keys = reports_server
    status, api = _get(srv, keys["default"], f"/api/reports/{name}", **RANGE)
    assert status == 200
    srv.stop()  # the CLI opens the file itself
    try:
        flags = ["--from", RANGE["from"], "--to", RANGE["to"], "--site", RANGE["site"]]
        as_json = json.loads(_cli(srv, name, *flags, "--json"))
        table = _cli(srv, name, *flags)
    finally:
        srv.start()
    api.pop("report")
    assert as_json == api
    assert table.strip()
    if name == "overview":
        # people, conversations, messages, orders, revenue, conversion
        assert re.search(r"\b3\s+4\s+5\s+3\s+€22\.50\s+66\.7%", table), table
    if name == "ab":
        assert "not significant" in table


def test_cli_reports_refuse_bad_options(reports_server: tuple[Server, dict[str, str]]) -> None:
    srv, _ = reports_server
    srv.stop()
    try:
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "footfall",
                "report",
                "people",
                "--interval",
                "fortnight",
                "--database",
                str(srv.database),
            ],
            capture_output=True,
            text=True,
            env=srv.env,
        )
    finally:
        srv.start()
    assert bad.returncode == 2
    assert "interval" in bad.stderr


def test_demo_then_report(tmp_path: Path) -> None:
    database = tmp_path / "demo.duckdb"
    env = {"COLUMNS": "160", "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [sys.executable, "-m", "footfall", "demo", "--events", "5000", "--database", str(database)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    )
    assert "wrote 5,000 events from 500 visitors" in made.stdout
    shown = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "footfall",
                "report",
                "overview",
                "--site",
                "all",
                "--days",
                "90",
                "--json",
                "--database",
                str(database),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=tmp_path,
        ).stdout
    )
    # Overview's events total counts custom events too; the demo writes them besides the 5,000.
    found = re.search(r"([\d,]+) custom events", made.stdout)
    assert found, made.stdout
    custom = int(found[1].replace(",", ""))
    assert custom > 0
    assert shown["events"] == 5000 + custom
    assert 0 < shown["people"] <= 500
    assert shown["orders"] > 0


def test_cli_reports_through_a_running_server(
    reports_server: tuple[Server, dict[str, str]],
) -> None:
    srv, keys = reports_server
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "footfall",
            "report",
            "people",
            "--json",
            "--from",
            RANGE["from"],
            "--to",
            RANGE["to"],
            "--site",
            RANGE["site"],
            "--server",
            srv.url,
            "--key",
            keys["default"],
        ],
        capture_output=True,
        text=True,
        env=srv.env,
        check=True,
    )
    assert json.loads(out.stdout)["people"] == 3
