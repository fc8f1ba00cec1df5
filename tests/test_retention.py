"""Data retention: events from before the cut-off go (with the orders and rollups derived
from them), recent ones stay; on both stores, in a running server, and from the CLI after
a crash left old events in the ingest journal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from conftest import CLEAN_EXIT, Server, config_with
from footfall.retention import apply_retention, cutoff_for
from footfall.store import Store
from footfall.store.base import EventRow

NOW = datetime(2026, 6, 15, 13, 30)


def row(token: str, when: datetime, order: str | None = None) -> EventRow:
    us = int(when.replace(tzinfo=UTC).timestamp() * 1_000_000)
    return EventRow(
        site_id="default",
        ts_us=us,
        received_us=us,
        event="purchase" if order else "visitor",
        token=token,
        order_num=order,
    )


def test_cutoff_is_midnight_utc_days_before_today() -> None:
    assert cutoff_for(30, NOW) == datetime(2026, 5, 16)
    assert cutoff_for(1, datetime(2026, 1, 1, 0, 0, 1)) == datetime(2025, 12, 31)


def test_old_events_and_their_orders_go_recent_ones_stay(store: Store) -> None:
    cutoff = cutoff_for(30, NOW)
    store.insert_events(
        [
            row("ancient-token-1", NOW - timedelta(days=400)),
            row("old-buyer-0001", NOW - timedelta(days=45), order="OLD-1"),
            row("edge-token-old", cutoff - timedelta(microseconds=1)),
            row("edge-token-new", cutoff),
            row("recent-token-1", NOW - timedelta(days=2)),
            row("new-buyer-0001", NOW - timedelta(days=1), order="NEW-1"),
        ]
    )
    result = apply_retention(store, 30, now=NOW)
    assert (result.events, result.orders) == (3, 1)
    assert result.cutoff == cutoff
    tokens = {t for (t,) in store.query("SELECT token FROM events")}
    assert tokens == {"edge-token-new", "recent-token-1", "new-buyer-0001"}
    assert store.query("SELECT order_num FROM orders") == [("NEW-1",)]
    # A second pass finds nothing more; the store keeps working.
    again = apply_retention(store, 30, now=NOW)
    assert (again.events, again.orders) == (0, 0)
    assert store.insert_events([row("after-token-1", NOW)]) == [False]
    assert store.count_events() == 4


def back_dated(api: httpx.Client, key: str, name: str, days_ago: float) -> None:
    """The vendor-compatible /e takes an event time (_t with _d=1): old events over HTTP."""
    when = time.time() - days_ago * 86400
    answer = api.get(
        "/e", params={"_k": key, "_p": name, "_n": "visit", "_t": str(when), "_d": "1"}
    )
    assert answer.status_code == 200, answer.text


def retention_runs(api: httpx.Client) -> float:
    match = re.search(r"^footfall_retention_runs_total (\S+)$", api.get("/metrics").text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_running_server_deletes_old_events_even_before_they_are_loaded(
    tmp_path: Path,
) -> None:
    """The loader waits 10 s between loads, so the old events are acknowledged but only in
    the ingest journal when a pass starts: the pass loads them first, then deletes them."""
    config = config_with(
        "retention_days = 30",
        "retention_interval_minutes = 0.01",
        "journal_load_interval_ms = 10000",
    )
    server = Server(tmp_path / "srv", config)
    key = server.start_with_key()
    try:
        with server.client("10.70.0.1") as api:
            for i in range(5):
                back_dated(api, key, f"old-visitor-{i}", days_ago=40 + i)
                back_dated(api, key, f"recent-visitor-{i}", days_ago=i)
                event = {"event": "visitor", "token": f"live-token-{i:04d}"}
                assert api.post("/api/analytics/track", json=event).status_code == 200
            seen = retention_runs(api)
            deadline = time.monotonic() + 60
            while retention_runs(api) < seen + 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert retention_runs(api) >= seen + 2
    finally:
        assert server.stop() in CLEAN_EXIT
    names = {t for (t,) in server.rows("SELECT token FROM events")}
    assert names == {f"recent-visitor-{i}" for i in range(5)} | {
        f"live-token-{i:04d}" for i in range(5)
    }
    assert "data retention applied" in server.log.read_text()


def test_the_cli_deletes_old_events_a_crash_left_in_the_journal(tmp_path: Path) -> None:
    config = config_with("journal_load_interval_ms = 10000", "rate_limit_per_minute = 0")
    server = Server(tmp_path / "srv", config)
    key = server.start_with_key()
    with server.client("10.70.0.2") as api:
        back_dated(api, key, "warm-visitor", days_ago=1)  # loaded at once; the rest waits
        for i in range(4):
            back_dated(api, key, f"old-visitor-{i}", days_ago=100)
            back_dated(api, key, f"recent-visitor-{i}", days_ago=3)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert server.rows("SELECT count(*) FROM events") == [(1,)]

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "footfall", "retention", "apply", *args],
            capture_output=True,
            text=True,
            env={**server.env, "COLUMNS": "200"},
            check=True,
        ).stdout

    database = ["--database", str(server.database)]
    assert "nothing to do" in cli(*database)  # retention_days is 0 and no --days
    assert server.rows("SELECT count(*) FROM events") == [(1,)]  # not even loaded
    out = cli("--days", "30", *database)
    assert "deleted 4 events" in out, out
    names = {t for (t,) in server.rows("SELECT token FROM events")}
    assert names == {"warm-visitor"} | {f"recent-visitor-{i}" for i in range(4)}
    assert list(Path(f"{server.database}.journal").glob("*.journal")) == []
