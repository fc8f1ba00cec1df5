"""The funnel step tables (both stores) give the funnels of the events path, and keep doing so
through new events, merges, splits, erasure, retention and a site changing tenant.

Every comparison runs the same funnel twice on the same store: once through the step tables
(what the reports run) and once through the events with the identity join (the path the
hand-computed tests of test_analytics.py also pin on PostgreSQL).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics_data import EPOCH, load
from conftest import Server, config_with, post_visitors
from footfall.analytics import funnel_steps, reports
from footfall.analytics.dialect import dialect_of
from footfall.analytics.reports import BREAKDOWNS, DEFAULT_FUNNEL, Filters
from footfall.demo import DemoPlan, generate
from footfall.identity import IdentityGraph
from footfall.ingest.validate import (
    EVENT_TYPES,
    FORM_EVENT_TYPES,
    RequestContext,
    validate_event,
)
from footfall.retention import apply_retention
from footfall.store.base import Store
from footfall.store.migrations import FUNNEL_STEP_TYPES

RANGE = Filters(("default", "help"), datetime(2026, 3, 2), datetime(2026, 3, 23))
WEEK = 7 * 86400
FUNNELS: list[tuple[list[str], int]] = [
    (list(DEFAULT_FUNNEL), WEEK),
    (["visitor", "bot_open", "message_sent"], 86400),
    (["message_sent", "message_sent", "purchase"], 30 * 86400),  # a repeated step
    (["bot_open", "visitor"], 3 * 86400),
    (["popup_displayed", "popup_opened", "convo_started"], WEEK),
]


Counts = list[tuple[int, str, int]]


def both_paths(
    store: Store, filters: Filters, steps: list[str], window: int, breakdown: str | None
) -> tuple[Counts, Counts]:
    def run(events_path: bool) -> Counts:
        sql, params = reports.funnel_query(
            store, filters, steps, window, breakdown, events_path=events_path
        )
        return sorted((int(s), str(g), int(n)) for s, g, n in store.query(sql, params))

    return run(False), run(True)


def assert_paths_agree(store: Store, filters: Filters) -> int:
    """Every funnel and breakdown in FUNNELS agrees; returns the people counted in all."""
    people = 0
    for steps, window in FUNNELS:
        for breakdown in (None, *BREAKDOWNS):
            fast, slow = both_paths(store, filters, steps, window, breakdown)
            assert fast == slow, (steps, breakdown)
            people += sum(n for _, _, n in fast)
    return people


def default_funnel(store: Store, filters: Filters = RANGE) -> list[int]:
    return [s["people"] for s in reports.funnel(store, filters)["overall"]["steps"]]


def test_every_event_type_has_a_step_table(duck: Store) -> None:
    # The 13 types; the support form's three are few events and read from the events.
    assert set(FUNNEL_STEP_TYPES) == EVENT_TYPES - FORM_EVENT_TYPES
    tables = {name for (name,) in duck.query("SELECT table_name FROM information_schema.tables")}
    assert {f"funnel_{event}" for event in FUNNEL_STEP_TYPES} <= tables
    with pytest.raises(ValueError, match="no funnel step table"):
        funnel_steps.table_of("teleport")


def test_step_tables_match_the_events_path_on_demo_traffic(store: Store) -> None:
    plan = DemoPlan(events=12_000, tokens=1_200, days=20, end=datetime(2026, 3, 23))
    generate(store, plan)
    everything = Filters(None, datetime(2026, 2, 1), datetime(2026, 3, 24))
    assert assert_paths_agree(store, everything) > 1_000
    # Not midnight-aligned, and one site only (the help site shares the shop's persons).
    unaligned = Filters(None, datetime(2026, 3, 5, 13, 30), datetime(2026, 3, 19, 8, 15))
    assert assert_paths_agree(store, unaligned) > 100
    assert assert_paths_agree(store, Filters(("help",), everything.start, everything.end)) > 10
    # The A/B breakdown names the demo's groups, not only "(none)".
    split = reports.funnel(store, everything, breakdown="ab_group")
    assert {"control", "test"} <= {g["group"] for g in split["groups"]}


def _insert(store: Store, site: str, token: str, event: str, at: datetime, **data: Any) -> None:
    moment = (at - EPOCH) // timedelta(microseconds=1)
    body: dict[str, Any] = {"event": event, "token": token, "data": data}
    store.insert_events([validate_event(body, RequestContext(site, moment))])


def _rows_of(store: Store, token: str) -> int:
    key = funnel_steps.token_key(dialect_of(store), "CAST(? AS VARCHAR)")
    return sum(
        int(store.query(f"SELECT count(*) FROM funnel_{e} WHERE token_key = {key}", [token])[0][0])  # noqa: S608
        for e in FUNNEL_STEP_TYPES
    )


def test_step_tables_follow_new_events_and_identity_changes(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    graph: IdentityGraph = load(store)
    assert assert_paths_agree(store, RANGE) > 0
    before = default_funnel(store)

    # Frank buys on day 4 with no visit of his own: a new event, folded in, no funnel yet.
    _insert(store, "default", "frankshop1", "purchase", datetime(2026, 3, 6, 9, 0), value=5)
    assert assert_paths_agree(store, RANGE) > 0
    assert default_funnel(store) == before
    # Frank is Bob, who went as far as a message on day 0: Bob's person now completes the
    # funnel through Frank's token, without any event being rewritten.
    graph.alias("default", "frankshop1", "bobshop000")
    assert assert_paths_agree(store, RANGE) > 0
    assert default_funnel(store) == [*before[:4], before[4] + 1]

    graph.split("default", "frankshop1", "bobshop000")
    assert assert_paths_agree(store, RANGE) > 0
    assert default_funnel(store) == before
    graph.split("default", "carolone0", "caroltwo0")
    assert assert_paths_agree(store, RANGE) > 0
    visitors = default_funnel(store)[0]
    assert visitors == before[0] + 1  # Carol's two tokens are two persons again

    # The help site moves to a tenant of its own: Alice's help token is someone else there.
    store.upsert_site("help", "Help centre", ["*"], "helpdesk")
    assert assert_paths_agree(store, RANGE) > 0
    assert default_funnel(store)[0] == visitors + 1
    store.upsert_site("help", "Help centre", ["*"], "default")
    assert assert_paths_agree(store, RANGE) > 0
    assert default_funnel(store)[0] == visitors

    # Bob's token is taken over (a shared computer: another email signs in on it). His
    # events stay his; the token's events from now on are the newcomer's.
    graph.identify("default", "bobshop000", email="bob@example.test")
    assert graph.identify("default", "bobshop000", email="zed@example.test").moved_token
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    _insert(store, "default", "bobshop000", "visitor", later)
    _insert(store, "default", "bobshop000", "bot_open", later + timedelta(minutes=1))
    until_now = Filters(RANGE.sites, RANGE.start, later + timedelta(days=1))
    assert assert_paths_agree(store, until_now) > 0
    assert default_funnel(store, until_now)[:2] == [visitors + 1, default_funnel(store)[1] + 1]

    # Erasing Alice drops her step rows in the erase itself, before any report runs.
    assert _rows_of(store, "aliceshop1") > 0
    alice = graph.find("default", "alice@example.test")
    assert alice is not None
    graph.erase("default", alice.person_id)
    assert _rows_of(store, "aliceshop1") == 0
    assert _rows_of(store, "alicehelp1") == 0
    assert assert_paths_agree(store, RANGE) > 0
    assert default_funnel(store)[0] == visitors - 1

    # Retention drops the rows of the deleted days with the events.
    result = apply_retention(store, 10, now=datetime(2026, 3, 17, 12, 0))
    assert result.events > 0
    oldest = [
        store.query(f"SELECT min(ts) FROM funnel_{e}")[0][0]  # noqa: S608
        for e in FUNNEL_STEP_TYPES
    ]
    assert all(ts is None or ts >= result.cutoff for ts in oldest)
    assert assert_paths_agree(store, RANGE) > 0
    # Every fold above kept the tables right by itself: the count check never rebuilt them.
    assert "disagreed" not in caplog.text


def test_quiet_folds_write_nothing_and_damage_is_repaired(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(store)
    built = funnel_steps.refresh(store)
    stored = store.query("SELECT count(*) FROM events WHERE NOT ephemeral")[0][0]
    assert built == stored
    assert funnel_steps.refresh(store) == 0  # nothing new: nothing written

    # Rows lost by some bug: within the hour the fold only appends...
    store.query("DELETE FROM funnel_visitor WHERE ts < TIMESTAMP '2026-03-03'")
    _insert(store, "default", "frankshop1", "visitor", datetime(2026, 3, 6, 9, 0))
    assert funnel_steps.refresh(store) == 1
    # ...and the first fold after the hour counts, finds the gap and rebuilds.
    monkeypatch.setattr(funnel_steps, "CHECK_EVERY", timedelta(0))
    _insert(store, "default", "frankshop2", "visitor", datetime(2026, 3, 6, 9, 5))
    stored += 2
    assert funnel_steps.refresh(store) == stored
    # The rebuild also took a fresh copy of the identity graph's nodes.
    copied = store.query("SELECT count(*) FROM funnel_nodes")
    assert copied == store.query("SELECT count(*) FROM identity_nodes")
    assert copied[0][0] > 0
    assert assert_paths_agree(store, RANGE) > 0

    # Keys made by another hash function would not match new ones: rebuilt.
    store.query("UPDATE funnel_state SET hash_check = hash_check + 1")
    assert funnel_steps.refresh(store) == stored
    assert funnel_steps.refresh(store) == 0
    assert assert_paths_agree(store, RANGE) > 0


def _pk_order(store: Store) -> list[int]:
    return [int(pk) for (pk,) in store.query("SELECT pk FROM funnel_visitor ORDER BY rowid")]


def test_tables_are_rewritten_in_person_order_as_they_grow(
    duck: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(duck)
    funnel_steps.refresh(duck)
    assert _pk_order(duck) == sorted(_pk_order(duck))  # one build: one batch in person order
    # New visitors fold in as a batch of their own after the built rows.
    monkeypatch.setattr(funnel_steps, "RECLUSTER_MIN_ROWS", 1_000_000)
    for n in range(12):
        _insert(duck, "default", f"newcomer{n:03d}", "visitor", datetime(2026, 3, 4, 9, n))
    funnel_steps.refresh(duck)
    assert _pk_order(duck) != sorted(_pk_order(duck))
    appended = duck.query("SELECT appended_rows FROM funnel_tables WHERE event = 'visitor'")
    assert appended == [(12,)]
    # Past the share, the next fold rewrites the table in person order.
    monkeypatch.setattr(funnel_steps, "RECLUSTER_MIN_ROWS", 0)
    _insert(duck, "default", "newcomer999", "visitor", datetime(2026, 3, 4, 10, 0))
    funnel_steps.refresh(duck)
    assert _pk_order(duck) == sorted(_pk_order(duck))
    visitors = duck.query("SELECT count(*) FROM funnel_visitor")[0][0]
    state = duck.query(
        "SELECT appended_rows, clustered_rows FROM funnel_tables WHERE event = 'visitor'"
    )
    assert state == [(0, visitors)]
    assert assert_paths_agree(duck, RANGE) > 0


def _folded(server: Server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    found = re.search(r"^footfall_funnel_step_rows_folded_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_server_folds_new_events_in_the_background(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with("rollup_refresh_seconds = 0.2")).start()
    try:
        post_visitors(server, 5)
        # No report is asked for: the server's own folds bring the rows in.
        deadline = time.monotonic() + 30
        while _folded(server) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _folded(server) == 5
    finally:
        server.stop()
    assert server.rows("SELECT count(*) FROM funnel_visitor") == [(5,)]
    assert server.rows("SELECT count(*) FROM daily_presence") == [(5,)]


def test_background_folds_can_be_turned_off(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with("rollup_refresh_seconds = 0")).start()
    try:
        answer = httpx.post(
            server.url + "/api/events/track", json={"event": "visitor", "token": "nofold001"}
        )
        assert answer.status_code == 200
        time.sleep(1.0)  # what a background fold every 0.2 s would have folded by now
        assert _folded(server) == 0
    finally:
        server.stop()
    assert server.rows("SELECT count(*) FROM funnel_visitor") == [(0,)]
