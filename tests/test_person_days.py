"""The person reports read their rollups (person days on DuckDB, the daily rollup with the
identity join on PostgreSQL) and give exactly the events path's answers, through new
events, merges, splits, a token taken over in the middle of a day, erasure, data
retention and a site changing tenant.

Every comparison runs each report twice on the same store: once as the dashboard runs it
and once with ``events_path=True`` (every event joined to the identity graph).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics_data import EPOCH, load
from conftest import Server, config_with, eventually, post_visitors
from footfall.analytics import person_days, reports, watermark
from footfall.analytics.dialect import Dialect
from footfall.analytics.reports import INTERVALS, Filters
from footfall.demo import DemoPlan, generate
from footfall.identity import IdentityGraph
from footfall.ingest.validate import RequestContext, validate_event
from footfall.retention import apply_retention
from footfall.store import open_store
from footfall.store.base import Store

TODAY = datetime.now(UTC).replace(tzinfo=None)
MIDNIGHT = datetime.combine(TODAY.date(), datetime.min.time())
EVERYTHING = Filters(None, datetime(2026, 1, 1), MIDNIGHT + timedelta(days=1))


def _insert(store: Store, site: str, token: str, event: str, at: datetime, **body: Any) -> None:
    moment = (at - EPOCH) // timedelta(microseconds=1)
    store.insert_events(
        [validate_event({"event": event, "token": token, **body}, RequestContext(site, moment))]
    )


def assert_reports_agree(store: Store, filters: Filters = EVERYTHING) -> int:
    """Every person report equals its events path; returns the people counted."""

    def both(report: Any, *args: Any) -> None:
        fast = report(store, filters, *args)
        slow = report(store, filters, *args, events_path=True)
        assert fast == slow, (report.__name__, args)

    for interval in INTERVALS:
        both(reports.unique_people, interval)
        both(reports.retention, interval, 10)
    both(reports.overview)
    both(reports.power_users)
    both(reports.ab_test)
    both(reports.ab_test, "convo_started")
    both(reports.revenue)
    return int(reports.unique_people(store, filters)["people"])


@pytest.fixture
def graph(store: Store) -> IdentityGraph:
    found = load(store)
    plan = DemoPlan(events=6_000, tokens=600, days=20, end=datetime(2026, 3, 23))
    generate(store, plan)
    return found


def test_reports_equal_the_events_path_through_every_identity_change(
    store: Store, graph: IdentityGraph, caplog: pytest.LogCaptureFixture
) -> None:
    people = assert_reports_agree(store)
    assert people > 300
    # A sub-range, one site, and a site list naming no site at all.
    assert (
        assert_reports_agree(store, Filters(("help",), datetime(2026, 3, 5), datetime(2026, 3, 19)))
        > 10
    )
    assert assert_reports_agree(store, Filters((), EVERYTHING.start, EVERYTHING.end)) == 0
    # Two sites of the three: no marks for that subset, distinct counts instead.
    both_sites = Filters(("default", "help"), datetime(2026, 3, 4), datetime(2026, 3, 20))
    assert assert_reports_agree(store, both_sites) > 10

    # A new visitor, then late events on an old day of an existing person.
    _insert(store, "default", "frankshop1", "visitor", datetime(2026, 3, 9, 12, 0))
    _insert(store, "help", "carolone0", "convo_started", datetime(2026, 3, 3, 8, 0))
    assert assert_reports_agree(store) == people + 1

    # Merge, split, and a merge of two demo persons through their emails.
    graph.alias("default", "frankshop1", "bobshop000")
    assert assert_reports_agree(store) == people
    graph.split("default", "carolone0", "caroltwo0")
    assert assert_reports_agree(store) == people + 1
    emails = [
        v
        for (v,) in store.query(
            "SELECT value FROM identity_nodes WHERE kind = 'email' "
            "AND value LIKE 'visitor-%' ORDER BY value LIMIT 2"
        )
    ]
    assert len(emails) == 2
    graph.alias("default", emails[0], emails[1])
    assert assert_reports_agree(store) == people

    # Bob's token is taken over today, between his own visit and the newcomer's: the
    # token's day belongs to two persons, split event by event.
    graph.identify("default", "bobshop000", email="bob@example.test")
    _insert(
        store,
        "default",
        "bobshop000",
        "purchase",
        TODAY - timedelta(minutes=2),
        orderNum="b-1",
        totalValue=9,
        currency="EUR",
    )
    assert assert_reports_agree(store) == people  # Bob, already counted, is back today
    assert graph.identify("default", "bobshop000", email="zed@example.test").moved_token
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    _insert(store, "default", "bobshop000", "visitor", later, ab_test=True)
    _insert(store, "default", "bobshop000", "message_sent", later, data={"text": "hi"})
    today = Filters(None, MIDNIGHT, MIDNIGHT + timedelta(days=1))
    assert assert_reports_agree(store, today) == 2  # Bob and the newcomer, one token
    assert assert_reports_agree(store) == people + 1

    # Bob erased: the newcomer's events on the token he had stay, and so do their rows.
    bob = graph.find("default", "bob@example.test")
    assert bob is not None
    graph.erase("default", bob.person_id)
    kept = "SELECT count(*) FROM {} WHERE token = 'bobshop000'"
    kept_rows = [store.query(kept.format(t))[0][0] for t in ("daily_presence", "daily_questions")]
    assert kept_rows == [1, 1]  # today's, with the newcomer's "hi"
    assert assert_reports_agree(store, today) == 1
    assert assert_reports_agree(store) == people

    # Erasure, then retention of the last 10 days of March, then the help site leaving.
    alice = graph.find("default", "alice@example.test")
    assert alice is not None
    alice_rows = "SELECT count(*) FROM {} WHERE token IN ('aliceshop1', 'alicehelp1')"
    rollups = ("daily_presence", "daily_questions", "daily_items")
    assert all(store.query(alice_rows.format(t))[0][0] for t in rollups)
    graph.erase("default", alice.person_id)
    # Her texts and purchases leave the rollups with her events.
    assert [store.query(alice_rows.format(t))[0][0] for t in rollups] == [0, 0, 0]
    assert assert_reports_agree(store) == people - 1
    # Gone in the erase itself, before any fold.
    gone = store.query("SELECT count(*) FROM person_days WHERE pk = ?", [-alice.person_id])
    assert gone == [(0,)]
    result = apply_retention(store, 10, now=datetime(2026, 3, 23, 12, 0))
    assert result.events > 0
    assert assert_reports_agree(store) > 100
    store.upsert_site("help", "Help centre", ["*"], "helpdesk")
    assert assert_reports_agree(store) > 100
    assert "disagreed" not in caplog.text  # every fold above was right by itself


def test_reports_read_person_days_on_duckdb(duck: Store, caplog: pytest.LogCaptureFixture) -> None:
    load(duck)
    range_ = Filters(None, datetime(2026, 3, 2), datetime(2026, 3, 23))
    rows = reports.person_rows(duck, range_)
    assert "FROM person_days" in rows.source
    assert "identity_nodes" not in rows.source
    # Folded: one row per (site, day, person), Alice's two tokens already one person: the
    # shop on day 0, the shop and the help site on day 8.
    alice = IdentityGraph(duck).find("default", "alice@example.test")
    assert alice is not None
    assert duck.query(
        "SELECT count(DISTINCT site_id), count(*) FROM person_days WHERE pk = ?",
        [-alice.person_id],
    ) == [(2, 3)]
    # A fold with nothing new writes nothing.
    with duck.transaction(None) as tx:
        window = watermark.new_events(tx, "duckdb", 10**12, alias="e")
        assert person_days.fold(tx, window, Dialect("duckdb")) == 0
    # Damage is found by the count check and rebuilt from the rollup.
    duck.query("DELETE FROM person_days WHERE pk = ?", [-alice.person_id])
    duck.query("UPDATE person_days_state SET checked_at = NULL")
    _insert(duck, "default", "frankshop1", "visitor", datetime(2026, 3, 9, 12, 0))
    # Alice, Bob, Carol, Erin (the rival site) and now Frank; Dave is ephemeral.
    assert assert_reports_agree(duck, range_) == 5
    assert "person days disagreed with the daily rollup: rebuilt" in caplog.text


def test_a_postgres_server_folds_person_days_in_the_background(
    postgres_url: str, tmp_path: Path
) -> None:
    server = Server(
        tmp_path / "srv", config_with("rollup_refresh_seconds = 0.2"), database_url=postgres_url
    ).start()
    reader = open_store(postgres_url)
    try:
        post_visitors(server, 5)
        # No report is asked for: the server's own folds bring the rows in.
        assert eventually(
            lambda: reader.query("SELECT count(*) FROM person_days") == [(5,)], seconds=30
        )
    finally:
        reader.close()
        server.stop()


def test_the_rollup_folded_in_batches_equals_one_built_from_the_events(store: Store) -> None:
    """New events join the rows the rollup already holds for their identifier and day."""
    load(store)
    start = datetime(2026, 3, 10, 9, 0)
    for batch in range(4):
        for i in range(6):
            moment = start + timedelta(minutes=10 * batch + i)
            token = f"batchtoken{i % 3}"
            _insert(store, "default", token, ("visitor", "message_sent")[i % 2], moment)
            if batch == 2 and i == 0:
                _insert(store, "help", token, "purchase", moment, orderNum=f"o-{i}", totalValue=5)
        reports.refresh_presence(store)
    columns = (
        "site_id, day, id_kind, token, ephemeral, first_ts, last_ts, events, visits, orders, "
        "conversations, messages, revenue"
    )
    expected = store.query(
        "SELECT site_id, CAST(ts AS DATE), id_kind, token, ephemeral, min(ts), max(ts), "
        "count(*), count(*) FILTER (WHERE event = 'visitor'), "
        "count(*) FILTER (WHERE event = 'purchase' AND NOT duplicate), "
        "count(*) FILTER (WHERE event = 'convo_started'), "
        "count(*) FILTER (WHERE event = 'message_sent'), "
        "sum(total_value_base) FILTER (WHERE event = 'purchase' AND NOT duplicate) "
        "FROM events GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
    )
    folded = store.query(f"SELECT {columns} FROM daily_presence ORDER BY 1, 2, 3, 4, 5")  # noqa: S608
    assert folded == expected
    assert [r for r in folded if str(r[3]).startswith("batchtoken") and r[7] == 8]  # 4 batches of 2
