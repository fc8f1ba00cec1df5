"""Crash durability beyond tests/test_server.py's single kill of single-event POSTs: mixed
traffic (events, batches, legacy GETs, vendor events, identify, repeated order numbers) at
full speed, killed with SIGKILL three times in a row while loads into DuckDB run back to
back, restarted each time. Every event answered 200 is stored exactly once, nothing is
stored that was not sent, each order number counts once, and the store opens cleanly."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from conftest import CLEAN_EXIT, Server, config_with
from traffic import CrashTally, load_then_kill

CYCLES = 3
ACKS_PER_CYCLE = 1_500
WORKERS = 12


def test_acknowledged_events_survive_repeated_sigkills(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with("journal_load_interval_ms = 0"))
    key = server.start_with_key()
    tally = CrashTally()
    for cycle in range(CYCLES):
        target = len(tally.acknowledged) + ACKS_PER_CYCLE
        status, errors = load_then_kill(
            server.url,
            key,
            tally,
            lambda: server.stop(signal.SIGKILL),
            cycle=cycle,
            workers=WORKERS,
            acks=ACKS_PER_CYCLE,
            within_s=120,
        )
        assert status == -signal.SIGKILL
        assert errors == []
        assert len(tally.acknowledged) >= target
        server.start()  # replays the journal; healthy means the store opened cleanly
        assert httpx.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ok"
    assert server.stop() in CLEAN_EXIT

    stored = dict(server.rows("SELECT token, count(*) FROM events GROUP BY token"))
    lost = sorted(t for t in tally.acknowledged if t not in stored)
    assert lost == [], f"{len(lost)} acknowledged events lost, e.g. {lost[:5]}"
    assert max(stored.values()) == 1, "an event was stored twice"
    assert set(stored) <= tally.sent
    counted = server.rows(
        "SELECT order_num, count(*) FILTER (WHERE NOT duplicate) FROM events "
        "WHERE event = 'purchase' AND order_num IS NOT NULL GROUP BY order_num"
    )
    assert counted, "the traffic should have held purchases"
    assert {n for _, n in counted} == {1}, counted
    assert server.rows("SELECT count(*) FROM orders") == [(len(counted),)]
    assert "journal replayed" in server.log.read_text()
