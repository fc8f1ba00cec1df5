"""Operations: health, metrics, OpenAPI, logs, durable acknowledgement and graceful shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest
from openapi_spec_validator import validate

from conftest import CLEAN_EXIT, Server, config_with
from footfall.analytics.reports import REPORTS


def test_healthz(api: httpx.Client) -> None:
    health = api.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["store"] == "duckdb"
    assert health["schema_version"] >= 1


def test_metrics_count_committed_events(api: httpx.Client) -> None:
    def committed() -> float:
        text = api.get("/metrics").text
        lines = [
            ln
            for ln in text.splitlines()
            if ln.startswith('footfall_events_committed_total{event="message_like"}')
        ]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = committed()
    for _ in range(3):
        api.post("/api/analytics/track", json={"event": "message_like", "token": "metric-token"})
    assert committed() == before + 3
    text = api.get("/metrics").text
    assert "footfall_commit_seconds_bucket" in text
    assert 'footfall_http_responses_total{route="/api/analytics/track",status="200"}' in text
    held = re.search(r"^footfall_store_memory_bytes (\S+)$", text, re.M)
    assert held is not None
    assert float(held.group(1)) > 0  # DuckDB's buffers hold the events
    blocks = re.search(r"^footfall_python_allocated_blocks (\S+)$", text, re.M)
    assert blocks is not None
    assert float(blocks.group(1)) > 10_000  # a running interpreter holds far more than this


def test_openapi_document_describes_every_public_route(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    validate(document)  # a valid OpenAPI 3.0 document, as Swagger UI and clients read it
    paths = document["paths"]
    for path in ("/api/analytics/track", "/api/events/track"):
        assert {"post", "get"} <= set(paths[path])
    assert "post" in paths["/api/save"]
    assert "post" in paths["/api/analytics/batch"]
    for path in ("/api/identify", "/api/alias", "/api/identity/split"):
        assert "post" in paths[path], path
    for path in ("/a", "/e", "/s", "/api/persons/{name}", "/api/identity/explain"):
        assert "get" in paths[path], path
    report = paths["/api/reports/{name}"]["get"]
    names = next(p for p in report["parameters"] if p["name"] == "name")["schema"]["enum"]
    assert names == list(REPORTS)
    assert {"401", "403", "404", "422"} <= set(report["responses"])
    schema = document["components"]["schemas"]["TrackRequest"]
    assert set(schema["required"]) == {"event", "token"}
    assert "tracktrans" in schema["properties"]["event"]["enum"]
    responses = paths["/api/analytics/track"]["post"]["responses"]
    assert {"200", "400", "403", "422", "429"} <= set(responses)


def test_docs_page_served_locally(api: httpx.Client) -> None:
    page = api.get("/docs")
    assert page.status_code == 200
    assert "/openapi.json" in page.text
    assert "cdn" not in page.text.lower()
    asset = api.get("/docs/static/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000


@pytest.mark.parametrize("mode", ["journal", "direct"])
def test_acknowledged_events_survive_sigkill_mid_load(tmp_path: Path, mode: str) -> None:
    """A 200 means durable: kill -9 at full speed, while groups are being journaled and
    loads into DuckDB run back to back; after a restart every acknowledged event is in the
    database exactly once (the loaded position commits with the rows: no double load)."""
    settings = "journal_load_interval_ms = 0" if mode == "journal" else "ingest_journal = false"
    server = Server(tmp_path / "srv", config_with(settings, "rate_limit_per_minute = 0")).start()
    acknowledged: set[str] = set()
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with server.client(f"10.1.0.{worker + 1}") as api:
            for n in range(10_000):
                token = f"durable-{worker:02d}-{n:05d}"
                with lock:
                    sent.add(token)
                try:
                    answer = api.post(
                        "/api/analytics/track", json={"event": "visitor", "token": token}
                    )
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    with lock:
                        acknowledged.add(token)
                if stop.is_set():
                    return

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 2_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 2_000
    server.start()
    assert server.stop() in CLEAN_EXIT
    stored = dict(server.rows("SELECT token, count(*) FROM events GROUP BY token"))
    assert sorted(t for t in acknowledged if stored.get(t) != 1) == []
    assert max(stored.values()) == 1
    assert set(stored) <= sent


def test_graceful_shutdown_flushes_in_flight_events(fresh_server: Server) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with fresh_server.client(f"10.2.0.{worker + 1}") as api:
            for n in range(100):
                if stop.is_set():
                    return
                token = f"graceful-{worker:02d}-{n:03d}"
                try:
                    answer = api.post(
                        "/api/analytics/track", json={"event": "visitor", "token": token}
                    )
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    with lock:
                        acknowledged.append(token)

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 200:
        threading.Event().wait(0.01)
    code = fresh_server.stop(signal.SIGTERM)
    stop.set()
    for thread in threads:
        thread.join()
    assert code in CLEAN_EXIT
    stored = {t for (t,) in fresh_server.rows("SELECT token FROM events")}
    assert set(acknowledged) <= stored
    assert len(acknowledged) >= 200
    log = fresh_server.log.read_text()
    assert "every acknowledged event is committed" in log
    # Everything was loaded into DuckDB, so the journal is empty (its segments removed).
    assert list(Path(f"{fresh_server.database}.journal").glob("*.journal")) == []


def test_logs_are_json_without_emails_or_keys(fresh_server: Server) -> None:
    with fresh_server.client("10.3.0.1") as api:
        api.post(
            "/api/analytics/track",
            json={
                "event": "purchase",
                "token": "log-token-1",
                "data": {
                    "email": "jane.doe@example.com",
                    "items": [{"item_id": "jane.doe@example.com", "value": 1, "currency": "XYZ"}],
                },
            },
        )
    fresh_server.stop()
    text = fresh_server.log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("unknown currency" in r["message"] for r in records)
    if "MALLOC_ARENA_MAX" not in os.environ:  # the setting's default, applied at start-up
        assert any(r.get("malloc_arena_max") == 2 for r in records)
    assert "jane.doe@example.com" not in text
    assert "10.3.0.1" not in text, "client IPs are never written to logs"


def _logged_memory_limit(srv: Server) -> str:
    records = [json.loads(line) for line in srv.log.read_text().splitlines() if line[:1] == "{"]
    return str(next(r["store_memory_limit"] for r in records if r["message"] == "footfall started"))


def test_duckdb_memory_limit_caps_the_server_store(tmp_path: Path) -> None:
    """The setting reaches the server's DuckDB connection (the start-up log states the cap
    DuckDB reports); without it, DuckDB's own default applies."""
    capped = Server(tmp_path / "capped", config='duckdb_memory_limit = "256MB"\n').start()
    capped.stop()
    default = Server(tmp_path / "default").start()
    default.stop()
    with duckdb.connect(config={"memory_limit": "256MB"}) as probe:
        expected = probe.execute("SELECT current_setting('memory_limit')").fetchone()
    assert expected is not None
    assert _logged_memory_limit(capped) == expected[0]
    assert _logged_memory_limit(default) != expected[0]
