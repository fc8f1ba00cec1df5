"""The deflection report on both stores, with every number worked out by hand.

The four visitors of the issue on the help site's form ``contact`` (day 0 is 2026-03-02):
- ``deflect001`` sees an answer, likes it and leaves: deflected;
- ``ticketer01`` sees an answer and files the ticket anyway: a ticket after an answer;
- ``noanswer01`` gets no answer and files: a ticket without an answer;
- ``dlogged001`` (client id ``client-d``) sees an answer and leaves; the next day
  ``dother0001``, another browser of the same client id, files the ticket: deferred (and
  a session of its own, a ticket without an answer).
- ``ephemeral1`` has not consented: its answered session is counted apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from footfall.analytics import form_events
from footfall.analytics.reports import Filters, deflection
from footfall.demo import DemoPlan, generate
from footfall.identity import IdentityGraph
from footfall.ingest.validate import RequestContext, validate_event
from footfall.retention import apply_retention
from footfall.store.base import Store

DAY0 = datetime(2026, 3, 2, 10, 0)
EPOCH = datetime(1970, 1, 1)
RANGE = Filters(("help",), datetime(2026, 3, 2), datetime(2026, 3, 5))


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def add(
    store: Store,
    token: str,
    event: str,
    minutes: float,
    site: str = "help",
    form: str | None = "contact",
    **body: Any,
) -> None:
    data = dict(body.pop("data", {}))
    if form is not None:
        data["form"] = form
    ctx = RequestContext(site, _us(DAY0 + timedelta(minutes=minutes)))
    store.insert_events(
        [validate_event({"event": event, "token": token, "data": data, **body}, ctx)]
    )


def four_visitors(store: Store) -> IdentityGraph:
    store.upsert_site("help", "Help centre", ["*"], "default")
    store.upsert_site("rival", "Rival", ["*"])
    graph = IdentityGraph(store)
    answer = {"chatbot_id": "bot-a", "answer_id": "kb-12"}
    add(store, "deflect001", "form_viewed", 0)
    add(store, "deflect001", "answer_shown", 1, data={**answer, "question": "Where is my order?"})
    add(store, "deflect001", "message_like", 2, data={"chatbot_id": "bot-a"})
    add(store, "ticketer01", "form_viewed", 0)
    add(store, "ticketer01", "answer_shown", 1, data={**answer, "question": "Can I return it?"})
    add(store, "ticketer01", "message_dislike", 2, data={"chatbot_id": "bot-a"})
    add(store, "ticketer01", "ticket_submitted", 3, data={"question": "Can I return it?"})
    add(store, "noanswer01", "form_viewed", 0)
    add(store, "noanswer01", "ticket_submitted", 4, data={"question": "Invoice for order 7"})
    graph.identify("default", "dlogged001", client_id="client-d")
    add(store, "dlogged001", "form_viewed", 0)
    add(store, "dlogged001", "answer_shown", 1, data={**answer, "question": "where is my order"})
    graph.identify("default", "dother0001", client_id="client-d")
    add(store, "dother0001", "form_viewed", 1440)
    add(store, "dother0001", "ticket_submitted", 1442, data={"question": "Where is my order?!"})
    add(store, "ephemeral1", "form_viewed", 0, ephemeral=True)
    add(store, "ephemeral1", "answer_shown", 1, ephemeral=True, data={"question": "Hi"})
    # Not form sessions: a like of the chat widget (no form) and another site's visitor.
    add(store, "deflect001", "message_like", 5, form=None)
    add(store, "deflect001", "visitor", 0, site="default", form=None)
    return graph


def test_the_four_visitors_totals_on_both_stores(store: Store) -> None:
    four_visitors(store)
    report = deflection(store, RANGE)
    assert {k: report["totals"][k] for k in ("sessions", "answered", "tickets")} == {
        "sessions": 5,
        "answered": 3,
        "tickets": 3,
    }
    assert report["totals"]["deflected"] == 1
    assert report["totals"]["deferred"] == 1
    assert report["totals"]["deflection_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert report["totals"]["tickets_without_answer"] == 2
    assert report["totals"]["tickets_after_answer"] == 1
    assert report["ephemeral"] == {
        "sessions": 1,
        "answered": 1,
        "tickets": 0,
        "answered_without_ticket": 1,
    }
    assert [(s["step"], s["sessions"]) for s in report["funnel"]] == [
        ("form_viewed", 5),
        ("question", 5),
        ("answer_shown", 3),
        ("feedback_or_click", 2),
        ("ticket_submitted", 3),
    ]
    assert [(d["day"], d["sessions"], d["tickets"]) for d in report["series"]] == [
        ("2026-03-02", 4, 2),
        ("2026-03-03", 1, 1),
    ]
    assert [(f["site_id"], f["form"], f["sessions"]) for f in report["forms"]] == [
        ("help", "contact", 5)
    ]
    assert [(c["chatbot_id"], c["sessions"], c["deflected"]) for c in report["chatbots"]] == [
        ("bot-a", 3, 1),
        (None, 2, 0),
    ]
    gaps = {q["question"]: q for q in report["questions"]}
    # "Where is my order?", "where is my order" and "Where is my order?!" are one question.
    where = gaps["where is my order"]
    assert (where["sessions"], where["answered"], where["tickets"], where["deferred"]) == (
        3,
        2,
        1,
        1,
    )
    assert where["deflection_rate"] == 0.5
    assert (gaps["can i return it"]["tickets"], gaps["can i return it"]["dislikes"]) == (1, 1)
    assert [q["question"] for q in report["questions"]][:1] == ["where is my order"]


def test_a_merge_after_the_fact_turns_deflected_into_deferred_at_once(store: Store) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    graph = IdentityGraph(store)
    add(store, "phoneone01", "answer_shown", 0, data={"question": "Refund?"})
    add(store, "laptoptwo1", "ticket_submitted", 600, site="default", form=None)
    before = deflection(store, RANGE)["totals"]
    assert (before["deflected"], before["deferred"]) == (1, 0)
    graph.identify("default", "phoneone01", email="sam@example.test")
    graph.identify("default", "laptoptwo1", email="sam@example.test")
    after = deflection(store, RANGE)["totals"]
    # The ticket came from another site of the tenant, without a form: it still counts.
    assert (after["deflected"], after["deferred"]) == (0, 1)


def test_another_tenant_and_ephemeral_tickets_do_not_defer(store: Store) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    store.upsert_site("rival", "Rival", ["*"])
    add(store, "sametoken1", "answer_shown", 0)
    add(store, "sametoken1", "ticket_submitted", 60, site="rival")
    add(store, "ephemera01", "answer_shown", 0, ephemeral=True)
    add(store, "ephemera01", "ticket_submitted", 60, ephemeral=True)
    report = deflection(store, RANGE)
    assert (report["totals"]["deflected"], report["totals"]["deferred"]) == (1, 0)
    assert (report["ephemeral"]["sessions"], report["ephemeral"]["tickets"]) == (2, 1)


def test_sessions_are_cut_by_a_ticket_and_by_the_quiet_gap(store: Store) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    # 31 minutes of quiet: the answer's session ends, the ticket opens another (and, by the
    # same person within the window, defers the first).
    add(store, "gapvisit01", "answer_shown", 0)
    add(store, "gapvisit01", "ticket_submitted", 31)
    # A ticket ends its session: the answer after it opens a new one (deflected).
    add(store, "aftertkt01", "ticket_submitted", 0)
    add(store, "aftertkt01", "answer_shown", 5)
    # 29 minutes apart on one form: one session; on another form: a session of its own.
    add(store, "samesess01", "answer_shown", 0)
    add(store, "samesess01", "ticket_submitted", 29)
    add(store, "samesess01", "form_viewed", 30, form="/returns")
    t = deflection(store, RANGE)["totals"]
    assert (t["sessions"], t["answered"], t["tickets"]) == (6, 3, 3)
    assert (t["deflected"], t["deferred"], t["tickets_after_answer"]) == (1, 1, 1)
    longer = deflection(store, RANGE, session_minutes=45)["totals"]
    assert (longer["sessions"], longer["deferred"], longer["tickets_after_answer"]) == (5, 0, 2)


def test_the_window_counts_tickets_after_the_range_and_ends_after_seven_days(
    store: Store,
) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    week = 7 * 1440
    # Answered on day 2 (in the range), ticket 6 days 23 hours later (after the range).
    add(store, "insidewin1", "answer_shown", 2 * 1440)
    add(store, "insidewin1", "ticket_submitted", 2 * 1440 + week - 60)
    # Answered on day 0, ticket 7 days and one minute after: deflected.
    add(store, "outsidewn1", "answer_shown", 0)
    add(store, "outsidewn1", "ticket_submitted", week + 1)
    report = deflection(store, RANGE)
    t = report["totals"]
    assert (t["sessions"], t["answered"], t["tickets"]) == (2, 2, 0)
    assert (t["deflected"], t["deferred"]) == (1, 1)
    one_day = deflection(store, RANGE, window_days=1)["totals"]
    assert (one_day["deflected"], one_day["deferred"]) == (2, 0)


def test_the_holdout_gives_the_tickets_the_answers_avoided(store: Store) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    # Control (token ends in 0): never shown an answer, 3 of 4 file a ticket.
    for i in range(4):
        add(store, f"control0{i}0", "form_viewed", i, ab_test=True)
        if i < 3:
            add(store, f"control0{i}0", "ticket_submitted", i + 1, ab_test=True)
    # Test (ends in 1): shown an answer, 1 of 4 files.
    for i in range(4):
        add(store, f"testgrp{i}1", "answer_shown", i, ab_test=True)
        if i < 1:
            add(store, f"testgrp{i}1", "ticket_submitted", i + 1, ab_test=True)
    lift = deflection(store, RANGE)["lift"]
    assert [(g["group"], g["sessions"], g["tickets"], g["answered"]) for g in lift["groups"]] == [
        ("control", 4, 3, 0),
        ("test", 4, 1, 4),
    ]
    assert lift["comparison"]["difference"] == -0.5
    assert lift["avoided_tickets"]["tickets"] == 2.0


def test_savings_use_each_sites_cost_per_ticket(store: Store) -> None:
    from footfall.sites import set_ticket_cost

    four_visitors(store)
    report = deflection(store, RANGE)
    assert report["savings"] == []
    assert report["sites_without_cost"] == [{"site_id": "help", "deflected": 1}]
    set_ticket_cost(store, "help", 12.5, "eur")
    report = deflection(store, RANGE)
    assert report["savings"] == [{"currency": "EUR", "amount": 12.5, "deflected": 1}]
    assert report["sites_without_cost"] == []


def test_bad_options_are_refused() -> None:
    from footfall.analytics.params import report_options
    from footfall.analytics.reports import REPORTS
    from footfall.errors import ApiError

    report = REPORTS["deflection"]
    assert report_options(report, {}, {"session_minutes": 45, "window_days": 3}) == {
        "session_minutes": 45,
        "window_days": 3,
        "limit": 20,
    }
    for field, value in (("session_minutes", "0"), ("window_days", "91"), ("window_days", "x")):
        with pytest.raises(ApiError) as refused:
            report_options(report, {field: value})
        assert (refused.value.status, refused.value.field) == (422, field)


def test_a_funnel_may_have_form_steps(store: Store) -> None:
    """The funnel step tables hold the 13 types: a funnel through the form's types reads
    the events (on DuckDB too) and counts people as any other funnel."""
    from footfall.analytics.reports import funnel

    four_visitors(store)
    steps = ["form_viewed", "answer_shown", "ticket_submitted"]
    result = funnel(store, RANGE, steps=steps, window_seconds=7 * 86400)
    # Persons: deflect001, ticketer01, noanswer01, client-d (two browsers, one person).
    assert [s["people"] for s in result["overall"]["steps"]] == [4, 3, 2]


# The folded table (both stores): the report through ``form_events`` must give the whole
# document of the events path, through every change the table has to follow.


def agree(store: Store, filters: Filters = RANGE, **options: Any) -> dict[str, Any]:
    """The report through the table, after checking it equals the events path's."""
    folded = deflection(store, filters, **options)
    assert folded == deflection(store, filters, events_path=True, **options), options
    return folded


def agree_everywhere(store: Store, filters: Filters = RANGE) -> dict[str, Any]:
    """Every gap and window the tests use agree; returns the default report."""
    for minutes in (1, 5, 45, 1440):
        agree(store, filters, session_minutes=minutes)
    agree(store, filters, window_days=1)
    return agree(store, filters)


def table_rows(store: Store, token: str | None = None) -> int:
    if token is None:
        return int(store.query("SELECT count(*) FROM form_events")[0][0])
    return int(store.query("SELECT count(*) FROM form_events WHERE token = ?", [token])[0][0])


def test_the_table_gives_the_events_paths_report_on_demo_traffic(store: Store) -> None:
    plan = DemoPlan(events=20_000, tokens=2_000, days=20, end=datetime(2026, 3, 23))
    generate(store, plan)
    everything = Filters(None, datetime(2026, 2, 1), datetime(2026, 3, 24))
    report = agree_everywhere(store, everything)
    totals = report["totals"]
    assert totals["sessions"] > 100
    assert totals["deflected"] > 0
    assert totals["deferred"] > 0
    assert report["lift"]["comparison"] is not None
    # Not midnight-aligned (sessions cut at both ends), and the help site alone.
    agree_everywhere(store, Filters(None, datetime(2026, 3, 5, 13, 30), datetime(2026, 3, 19, 8)))
    agree_everywhere(store, Filters(("help",), everything.start, everything.end))
    assert form_events.refresh(store) == 0  # a quiet store: nothing folded again


def test_the_table_follows_new_events_and_identity_changes(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    graph = four_visitors(store)
    first = agree_everywhere(store)
    assert table_rows(store) == 15  # the form events; not the widget's like, not the visit
    assert (first["totals"]["deflected"], first["totals"]["deferred"]) == (1, 1)

    # New events: an answer, and the next day a ticket from another browser.
    add(store, "latecomer1", "answer_shown", 60, data={"question": "Refund?"})
    add(store, "laptop0001", "ticket_submitted", 1500)
    report = agree_everywhere(store)
    assert (report["totals"]["deflected"], report["totals"]["deferred"]) == (2, 1)
    # A merge after the fact: the answer is deferred at once, nothing refolded.
    graph.alias("default", "latecomer1", "laptop0001")
    assert form_events.refresh(store) == 0
    report = agree_everywhere(store)
    assert (report["totals"]["deflected"], report["totals"]["deferred"]) == (1, 2)
    # ...and the split undoes it.
    graph.split("default", "latecomer1", "laptop0001")
    report = agree_everywhere(store)
    assert (report["totals"]["deflected"], report["totals"]["deferred"]) == (2, 1)

    # A token taken over (another email signs in on it): its ticket from now on is the
    # newcomer's, and defers nothing of the old person's.
    graph.identify("default", "deflect001", email="first@example.test")
    graph.identify("default", "oldlaptop1", email="first@example.test")
    now = datetime.now(UTC).replace(tzinfo=None)
    until_now = Filters(RANGE.sites, RANGE.start, now + timedelta(days=2))
    moment = (now + timedelta(minutes=1) - DAY0) / timedelta(minutes=1)
    add(store, "oldlaptop1", "answer_shown", moment, data={"question": "Takeover?"})
    before = agree_everywhere(store, until_now)["totals"]
    assert graph.identify("default", "deflect001", email="second@example.test").moved_token
    add(store, "deflect001", "ticket_submitted", moment + 10, form="other")
    after = agree_everywhere(store, until_now)["totals"]
    assert (after["deferred"], after["tickets"]) == (before["deferred"], before["tickets"] + 1)

    # Erasing the client-d person drops its rows in the erase itself, before any report.
    assert table_rows(store, "dlogged001") == 2
    person = graph.find("default", "dlogged001")
    assert person is not None
    graph.erase("default", person.person_id)
    assert table_rows(store, "dlogged001") == table_rows(store, "dother0001") == 0
    report = agree_everywhere(store)
    assert (report["totals"]["sessions"], report["totals"]["deferred"]) == (5, 0)
    assert "disagreed" not in caplog.text  # every fold was right by itself


def test_an_erase_of_some_of_a_keys_events_renumbers_its_sessions(store: Store) -> None:
    """A token taken over keeps its earlier events with the earlier person: erasing that
    person takes only those, and the newcomer's events on the same form are cut again."""
    store.upsert_site("help", "Help centre", ["*"], "default")
    graph = IdentityGraph(store)
    graph.identify("default", "sharedpc01", email="before@example.test")
    now = datetime.now(UTC).replace(tzinfo=None)
    minutes = (now - DAY0) / timedelta(minutes=1)
    add(store, "sharedpc01", "form_viewed", minutes - 20)
    add(store, "sharedpc01", "form_viewed", minutes - 10)
    assert graph.identify("default", "sharedpc01", email="after@example.test").moved_token
    add(store, "sharedpc01", "answer_shown", minutes + 1)
    add(store, "sharedpc01", "answer_shown", minutes + 2)
    until_now = Filters(RANGE.sites, RANGE.start, now + timedelta(days=1))
    assert agree_everywhere(store, until_now)["totals"]["sessions"] == 1
    gone = graph.find("default", "before@example.test")
    assert gone is not None
    graph.erase("default", gone.person_id)
    assert table_rows(store, "sharedpc01") == 2
    # The two answers' first row had an erased view before it: now it has none.
    assert store.query("SELECT count(*) FROM form_events WHERE prev_ts IS NULL") == [(1,)]
    report = agree_everywhere(store, until_now)
    assert (report["totals"]["sessions"], report["totals"]["answered"]) == (1, 1)


def test_late_events_with_an_older_time_land_in_their_sessions(store: Store) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    # 40 minutes apart: two sessions, until an event between them arrives late.
    add(store, "latejoin01", "form_viewed", 0)
    add(store, "latejoin01", "answer_shown", 40)
    # One session (an answer, then its feedback), until a late ticket cuts it.
    add(store, "latecut001", "answer_shown", 0)
    add(store, "latecut001", "message_like", 10)
    t = agree_everywhere(store)["totals"]
    assert (t["sessions"], t["answered"], t["tickets"], t["deflected"]) == (3, 2, 0, 2)
    add(store, "latejoin01", "form_viewed", 20)
    add(store, "latecut001", "ticket_submitted", 5)
    t = agree_everywhere(store)["totals"]
    # latejoin01: one session answered; latecut001: answer + ticket, then the like alone.
    assert (t["sessions"], t["answered"], t["tickets"], t["deflected"]) == (3, 2, 1, 1)
    assert agree(store, session_minutes=15)["totals"]["sessions"] == 5


def test_a_range_that_cuts_sessions_counts_them_where_they_start(store: Store) -> None:
    store.upsert_site("help", "Help centre", ["*"], "default")
    # A session crossing midnight into the range's first day (counted before it)...
    add(store, "crossing01", "answer_shown", -610)
    add(store, "crossing01", "ticket_submitted", -590)
    # ...one crossing its end (counted whole, in the range)...
    add(store, "crossend01", "answer_shown", 3 * 1440 - 610)
    add(store, "crossend01", "ticket_submitted", 3 * 1440 - 590)
    # ...and two that never go quiet: from two days before the start past its first hour,
    # and from the last day until two days after the end (longer than the days read).
    for n in range(0, 2 * 1440 + 60, 20):
        add(store, "nonstop001", "form_viewed", n - 2 * 1440 - 600)
        add(store, "nonstop002", "answer_shown", 2 * 1440 + n)
    four_visitors(store)
    report = agree_everywhere(store)
    assert report["totals"]["sessions"] == 5 + 1 + 1  # the four visitors, crossend, nonstop002
    for start, end in (
        (datetime(2026, 3, 2, 10, 1), datetime(2026, 3, 3, 10, 30)),
        (datetime(2026, 3, 1, 23, 55), datetime(2026, 3, 2, 0, 5)),
        (datetime(2026, 3, 4, 23, 55), datetime(2026, 3, 6)),
    ):
        agree_everywhere(store, Filters(("help",), start, end))


def test_retention_drops_old_rows_and_the_rest_still_agree(store: Store) -> None:
    four_visitors(store)
    # A session across the retention cutoff (midnight before 2026-03-03), on several keys.
    for n in range(6):
        add(store, f"across00{n}", "answer_shown", 830 + n)
        add(store, f"across00{n}", "message_like", 850 + n)
        add(store, f"across00{n}", "ticket_submitted", 860 + n)
    agree_everywhere(store)
    result = apply_retention(store, 1, now=datetime(2026, 3, 4, 12, 0))
    assert result.cutoff == datetime(2026, 3, 3)
    assert store.query("SELECT count(*) FROM form_events WHERE ts < ?", [result.cutoff]) == [(0,)]
    assert store.query("SELECT count(*) FROM form_events WHERE prev_ts < ?", [result.cutoff]) == [
        (0,)
    ]
    report = agree_everywhere(store)
    assert report["totals"]["sessions"] == 6 + 1  # the likes after midnight, dother0001


def test_a_damaged_table_is_rebuilt_by_the_count_check(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    four_visitors(store)
    assert form_events.refresh(store) == 15
    assert form_events.refresh(store) == 0
    # Rows lost by some bug: within the hour the fold only appends...
    store.query("DELETE FROM form_events WHERE token = 'deflect001'")
    add(store, "newvisit01", "form_viewed", 90)
    assert form_events.refresh(store) == 1
    assert deflection(store, RANGE) != deflection(store, RANGE, events_path=True)
    # ...and the first fold after the hour counts, finds the gap and rebuilds.
    monkeypatch.setattr(form_events, "CHECK_EVERY", timedelta(0))
    add(store, "newvisit02", "form_viewed", 95)
    assert form_events.refresh(store) == 17
    assert "disagreed" in caplog.text
    agree_everywhere(store)
    # Keys made by another hash function would not match new ones: rebuilt.
    store.query("UPDATE form_events_state SET hash_check = hash_check + 1")
    assert form_events.refresh(store) == 17
    assert form_events.refresh(store) == 0
    agree_everywhere(store)
