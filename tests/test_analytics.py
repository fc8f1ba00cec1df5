"""Every report against numbers worked out by hand on the fixed data set of analytics_data.

The expected values in these tests come from reading the data set's docstring and events,
not from running the code: each comment says how the number arises.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from analytics_data import EPOCH, load
from footfall.analytics import reports
from footfall.analytics.reports import Filters
from footfall.identity import IdentityGraph
from footfall.ingest.validate import RequestContext, validate_event
from footfall.store.base import Store

RANGE = Filters(("default", "help"), datetime(2026, 3, 2), datetime(2026, 3, 23))


@pytest.fixture
def data(store: Store) -> IdentityGraph:
    return load(store)


def test_unique_people_per_day_week_month_after_identity_resolution(
    store: Store, data: IdentityGraph
) -> None:
    daily = reports.unique_people(store, RANGE, "day")
    # Alice (two tokens, one person), Bob, Carol (two aliased tokens); Dave is ephemeral.
    assert daily["people"] == 3
    assert daily["ephemeral_visits"] == 1
    assert [(p["period"], p["people"]) for p in daily["series"]] == [
        ("2026-03-02", 3),  # Alice, Bob, Carol
        ("2026-03-03", 1),  # Bob
        ("2026-03-09", 1),  # Carol on her second token
        ("2026-03-10", 1),  # Alice on the help site
        ("2026-03-17", 1),  # Bob
    ]
    weekly = reports.unique_people(store, RANGE, "week")
    assert [(p["period"], p["people"]) for p in weekly["series"]] == [
        ("2026-03-02", 3),
        ("2026-03-09", 2),  # Carol and Alice
        ("2026-03-16", 1),  # Bob
    ]
    monthly = reports.unique_people(store, RANGE, "month")
    assert [(p["period"], p["people"]) for p in monthly["series"]] == [("2026-03-01", 3)]
    # Without resolution every identifier counts: five tokens.
    assert reports.people_count(store, RANGE, resolve_identities=False) == 5
    assert reports.people_count(store, RANGE) == 3


def test_merges_and_splits_change_reports_at_once(store: Store, data: IdentityGraph) -> None:
    data.split("default", "carolone0", "caroltwo0")
    assert reports.people_count(store, RANGE) == 4
    data.alias("default", "caroltwo0", "carolone0")
    assert reports.people_count(store, RANGE) == 3
    # Bob identifies with Alice's email: identify refuses nothing here (Bob has no email
    # yet), so Bob's token joins Alice's person.
    data.identify("default", "bobshop000", email="alice@example.test")
    assert reports.people_count(store, RANGE) == 2


def test_site_filter_keeps_other_sites_out(store: Store, data: IdentityGraph) -> None:
    rival = Filters(("rival",), RANGE.start, RANGE.end)
    assert reports.people_count(store, rival) == 1  # Erin
    help_only = Filters(("help",), RANGE.start, RANGE.end)
    assert reports.people_count(store, help_only) == 1  # Alice's help-site token
    everything = Filters(None, RANGE.start, RANGE.end)
    assert reports.people_count(store, everything) == 4  # plus Erin


def test_retention_cohorts_use_first_visit_ever(store: Store, data: IdentityGraph) -> None:
    weekly = reports.retention(store, RANGE, "week", periods=4)
    # Bob first came on 2026-02-20, before the range: not a cohort member. Alice and Carol
    # start in the week of 03-02 and both come back the next week (day 8 and day 7).
    assert [(c["cohort"], c["retained"]) for c in weekly["cohorts"]] == [
        ("2026-03-02", [2, 2, 0, 0])
    ]
    assert weekly["cohorts"][0]["rates"] == [1.0, 1.0, 0.0, 0.0]
    daily = reports.retention(store, RANGE, "day", periods=10)
    # Carol returns 7 days later, Alice 8 days later.
    assert [(c["cohort"], c["retained"]) for c in daily["cohorts"]] == [
        ("2026-03-02", [2, 0, 0, 0, 0, 0, 0, 1, 1, 0])
    ]


def test_overview_headline_numbers(store: Store, data: IdentityGraph) -> None:
    result = reports.overview(store, RANGE)
    assert result["people"] == 3
    assert result["visits"] == 8  # visitor events, Dave's ephemeral one included
    assert result["conversations"] == 4  # Alice 1, Bob 2, Carol 1
    assert result["messages"] == 5  # Alice 3, Bob 1, Carol 1
    assert result["orders"] == 3  # ORD-1, ORD-2, ORD-3; Alice's re-sent ORD-1 is not one
    assert result["revenue_eur"] == pytest.approx(22.5)  # 2 x 10 USD x 0.92 + 100 CZK x 0.041
    assert result["buyers"] == 2  # Alice, Carol
    assert result["conversion_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert result["events"] == 35
    first = result["daily"][0]
    assert (first["day"], first["people"], first["visits"], first["messages"]) == (
        "2026-03-02",
        3,
        4,
        3,
    )
    assert [d["day"] for d in result["daily"]] == [
        "2026-03-02",
        "2026-03-03",
        "2026-03-09",
        "2026-03-10",
        "2026-03-17",
    ]


def test_power_users_and_their_common_questions(store: Store, data: IdentityGraph) -> None:
    result = reports.power_users(store, RANGE, limit=2)
    users = result["users"]
    # Bob has two conversations; Alice one conversation but three messages; Carol is third.
    assert [u["label"] for u in users] == ["bobshop000", "alice@example.test"]
    assert [(u["conversations"], u["messages"]) for u in users] == [(2, 1), (1, 3)]
    assert users[1]["questions"] == [
        {"text": "how do i reset my password", "count": 2},  # two spellings, one question
        {"text": "where is my order", "count": 1},
    ]
    assert users[0]["questions"] == [{"text": "where is my order", "count": 1}]
    assert set(users[1]["identifiers"]) == {
        "token:aliceshop1",
        "token:alicehelp1",
        "email:alice@example.test",
    }
    assert result["common_questions"] == [
        {"text": "how do i reset my password", "count": 2},
        {"text": "where is my order", "count": 2},
        {"text": "do you ship to austria", "count": 1},
    ]


def test_question_normalisation_matches_the_sql() -> None:
    assert reports.normalise_question("  How do I  reset my password?! ") == (
        "how do i reset my password"
    )


STEPS = ["visitor", "bot_open", "convo_started", "purchase"]


def _counts(group: dict[str, object]) -> list[int]:
    steps = group["steps"]
    assert isinstance(steps, list)
    return [int(s["people"]) for s in steps]


def test_funnel_ordered_steps_and_conversion_window(store: Store, data: IdentityGraph) -> None:
    week = reports.funnel(store, RANGE, STEPS, window_seconds=7 * 86400)
    # Alice completes on day 0; Bob stops before buying; Carol opens the bot on day 7 one
    # hour after the 7-day window from her first visit closed.
    assert _counts(week["overall"]) == [3, 2, 2, 1]
    assert week["overall"]["conversion"] == pytest.approx(1 / 3, abs=1e-6)
    eight = reports.funnel(store, RANGE, STEPS, window_seconds=8 * 86400)
    assert _counts(eight["overall"]) == [3, 3, 3, 2]


def test_funnel_steps_must_come_in_order(store: Store, data: IdentityGraph) -> None:
    # Nobody buys before opening the bot; Alice's purchase comes before her help visit.
    reverse = reports.funnel(store, RANGE, ["purchase", "bot_open"], window_seconds=86400 * 30)
    assert _counts(reverse["overall"]) == [2, 0]


@pytest.mark.parametrize(
    ("breakdown", "expected"),
    [
        ("ab_group", {"control": [2, 2, 2, 1], "test": [1, 1, 1, 1]}),
        ("open_way", {"chat_button": [2, 2, 2, 1], "popup": [1, 1, 1, 1]}),
    ],
)
def test_funnel_breakdowns(
    store: Store, data: IdentityGraph, breakdown: str, expected: dict[str, list[int]]
) -> None:
    result = reports.funnel(store, RANGE, STEPS, window_seconds=8 * 86400, breakdown=breakdown)
    assert {g["group"]: _counts(g) for g in result["groups"]} == expected
    assert _counts(result["overall"]) == [3, 3, 3, 2]


def test_ab_results_with_significance(store: Store, data: IdentityGraph) -> None:
    result = reports.ab_test(store, RANGE)
    control, test = result["groups"]
    assert (control["group"], control["people"], control["converted"]) == ("control", 2, 1)
    assert control["revenue_eur"] == pytest.approx(4.1)  # ORD-3's currency has no rate
    assert control["orders"] == 2
    assert control["revenue_per_person"] == pytest.approx(2.05)
    assert (test["group"], test["people"], test["converted"]) == ("test", 1, 1)
    assert test["revenue_eur"] == pytest.approx(18.4)  # the re-sent order counts once
    comparison = result["comparison"]
    # p1 = 1/2, p2 = 1/1, pooled 2/3: z = 0.5 / sqrt(2/3 * 1/3 * 1.5) = 0.8660.
    assert comparison["z"] == pytest.approx(0.8660, abs=1e-4)
    assert comparison["p_value"] == pytest.approx(math.erfc(0.8660254 / math.sqrt(2)), abs=1e-6)
    # Unpooled se = sqrt(0.25 / 2) = 0.353553; 0.5 +- 1.96 x se.
    assert comparison["ci95"] == pytest.approx([-0.192952, 1.192952], abs=1e-5)
    assert comparison["significant"] is False


def test_two_proportion_test_textbook_example() -> None:
    # 200/1000 vs 250/1000: pooled 0.225, se 0.018675, z 2.6774, p 0.00742.
    result = reports.two_proportion_test(200, 1000, 250, 1000)
    assert result is not None
    assert result["z"] == pytest.approx(2.6774, abs=1e-3)
    assert result["p_value"] == pytest.approx(0.00742, abs=1e-4)
    assert result["ci95"] == pytest.approx([0.013464, 0.086536], abs=1e-5)
    assert result["significant"] is True
    assert reports.two_proportion_test(0, 0, 1, 2) is None


def test_revenue_orders_and_top_items(store: Store, data: IdentityGraph) -> None:
    result = reports.revenue(store, RANGE)
    assert result["orders"] == 3
    assert result["orders_without_eur"] == 1  # ORD-3 in XYZ
    assert result["revenue_eur"] == pytest.approx(22.5)
    assert result["average_order_eur"] == pytest.approx(11.25)  # 22.5 over two priced orders
    assert result["buyers"] == 2
    assert [(s["period"], s["orders"], s["revenue_eur"]) for s in result["series"]] == [
        ("2026-03-02", 1, 18.4),
        ("2026-03-09", 2, 4.1),
    ]
    assert [(i["item_id"], i["quantity"], i["revenue_eur"]) for i in result["top_items"]] == [
        ("SKU1", 2, 18.4),
        ("SKU2", 1, 4.1),
        ("SKU3", 1, 0.0),
    ]
    rival = reports.revenue(store, Filters(("rival",), RANGE.start, RANGE.end))
    # Same orderNum as Alice's shop, but on another site: its own order.
    assert (rival["orders"], rival["revenue_eur"]) == (1, 5.0)


def test_feedback_popups_and_errors(store: Store, data: IdentityGraph) -> None:
    bots = reports.feedback(store, RANGE)["chatbots"]
    assert [(b["chatbot_id"], b["likes"], b["dislikes"]) for b in bots] == [
        ("bot-a", 1, 0),
        ("bot-b", 0, 1),
    ]
    versions = reports.popups(store, RANGE)["versions"]
    assert [(v["popup_version"], v["displays"], v["opens"], v["open_rate"]) for v in versions] == [
        ("v1", 2, 1, 0.5),  # Alice and Carol saw it, Alice opened it
        ("v2", 1, 0, 0.0),  # Bob saw it and used the chat button instead
    ]
    errors = reports.client_errors(store, RANGE)
    assert errors["total"] == 2
    assert [(e["message"], e["count"], e["people"]) for e in errors["errors"]] == [
        ("widget failed", 2, 1)
    ]
    assert errors["daily"] == [{"day": "2026-03-03", "errors": 2}]


def test_bad_report_options_are_refused(store: Store, data: IdentityGraph) -> None:
    with pytest.raises(ValueError, match="2 to"):
        reports.funnel(store, RANGE, ["visitor"])
    with pytest.raises(ValueError, match="unknown event type"):
        reports.funnel(store, RANGE, ["visitor", "teleport"])
    with pytest.raises(ValueError, match="interval"):
        reports.unique_people(store, RANGE, "fortnight")


# Not midnight: the same events, read from the events table instead of the daily rollup.
UNALIGNED = Filters(RANGE.sites, datetime(2026, 3, 1, 23, 0), datetime(2026, 3, 23, 0, 0, 1))


def _rollup_matches_events(store: Store) -> None:
    for interval in ("day", "week"):
        rolled = reports.unique_people(store, RANGE, interval)
        raw = reports.unique_people(store, UNALIGNED, interval)
        assert (rolled["people"], rolled["series"]) == (raw["people"], raw["series"])
    assert (
        reports.retention(store, RANGE, "day", 10)["cohorts"]
        == (reports.retention(store, UNALIGNED, "day", 10)["cohorts"])
    )
    for name in ("people", "buyers", "daily"):
        assert reports.overview(store, RANGE)[name] == reports.overview(store, UNALIGNED)[name]
    assert reports.ab_test(store, RANGE)["groups"] == reports.ab_test(store, UNALIGNED)["groups"]


def test_daily_rollup_gives_the_same_numbers_as_the_events(
    store: Store, data: IdentityGraph
) -> None:
    assert reports.presence_usable(store, RANGE)  # on both stores (watermark folds on PostgreSQL)
    assert not reports.presence_usable(store, UNALIGNED)
    _rollup_matches_events(store)
    assert (
        reports.power_users(store, RANGE)["users"] == reports.power_users(store, UNALIGNED)["users"]
    )


def test_ab_with_another_goal(store: Store, data: IdentityGraph) -> None:
    result = reports.ab_test(store, RANGE, goal="convo_started")
    # Control: Bob and Carol both started a conversation; test: Alice did.
    assert [(g["group"], g["people"], g["converted"]) for g in result["groups"]] == [
        ("control", 2, 2),
        ("test", 1, 1),
    ]
    assert result["comparison"]["p_value"] == pytest.approx(1.0)


def test_rollup_follows_new_events_merges_and_erasure(store: Store, data: IdentityGraph) -> None:
    assert reports.unique_people(store, RANGE)["people"] == 3
    # A new visitor on day 3, after the rollup was built: its day is rebuilt.
    ts_us = (datetime(2026, 3, 5, 12, 0) - EPOCH) // timedelta(microseconds=1)
    store.insert_events(
        [
            validate_event(
                {"event": "visitor", "token": "frankshop1"}, RequestContext("default", ts_us)
            )
        ]
    )
    day = next(
        p for p in reports.unique_people(store, RANGE)["series"] if p["period"] == "2026-03-05"
    )
    assert day["people"] == 1
    assert reports.unique_people(store, RANGE)["people"] == 4
    # Frank turns out to be Bob: merged at once, no rebuild needed.
    data.alias("default", "frankshop1", "bobshop000")
    assert reports.unique_people(store, RANGE)["people"] == 3
    # Erasing Alice removes her from the rollup too, not only from the events.
    alice = data.find("default", "alice@example.test")
    assert alice is not None
    data.erase("default", alice.person_id)
    assert reports.unique_people(store, RANGE)["people"] == 2
    assert store.query(
        "SELECT count(*) FROM daily_presence WHERE token IN ('aliceshop1', 'alicehelp1')"
    ) == [(0,)]


def test_rollup_equals_the_events_through_inserts_merges_splits_and_erase(
    store: Store, data: IdentityGraph
) -> None:
    """Both stores fold the rollup (PostgreSQL by its txid watermark) and stay exact."""
    _rollup_matches_events(store)
    ts_us = (datetime(2026, 3, 9, 12, 0) - EPOCH) // timedelta(microseconds=1)
    store.insert_events(
        [
            validate_event(
                {"event": "visitor", "token": "frankshop1"}, RequestContext("default", ts_us)
            )
        ]
    )
    _rollup_matches_events(store)
    data.alias("default", "frankshop1", "bobshop000")
    _rollup_matches_events(store)
    data.split("default", "carolone0", "caroltwo0")
    _rollup_matches_events(store)
    alice = data.find("default", "alice@example.test")
    assert alice is not None
    data.erase("default", alice.person_id)
    _rollup_matches_events(store)
