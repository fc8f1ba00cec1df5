"""Folds by watermark miss no event whose transaction commits after later ones did.

On PostgreSQL a writer holds an event uncommitted while another commits later events; a
fold then must not skip the first once it commits (an event-id fold would)."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from footfall.analytics import form_events, funnel_steps, reports
from footfall.analytics.reports import Filters
from footfall.ingest.validate import RequestContext, validate_event
from footfall.store import open_store
from footfall.store.base import EventRow, Store

EPOCH = datetime(1970, 1, 1)
DAY = datetime(2026, 3, 5)
RANGE = Filters(None, DAY, DAY + timedelta(days=1))


def _row(token: str, event: str = "visitor", **data: str) -> EventRow:
    ts_us = (DAY + timedelta(hours=12) - EPOCH) // timedelta(microseconds=1)
    body = {"event": event, "token": token, "data": data}
    return validate_event(body, RequestContext("default", ts_us))


def _people(store: Store) -> int:
    return int(reports.unique_people(store, RANGE)["people"])


def test_an_event_committed_late_is_folded_on_postgres(postgres_url: str, store: Store) -> None:
    if store.backend != "postgresql":
        return
    store.upsert_site("default", "Default", [])
    store.insert_events([_row("first00001")])
    assert _people(store) == 1
    held = psycopg.connect(postgres_url)
    # An open transaction writes an event (its event id is taken now) and waits.
    held.execute(
        "INSERT INTO events (site_id, ts, received_at, event, token, ephemeral, duplicate, "
        "data, id_kind) VALUES ('default', %s, %s, 'visitor', 'slow000001', false, false, "
        "'{}', 'token')",
        [DAY + timedelta(hours=13), DAY + timedelta(hours=13)],
    )
    store.insert_events([_row("later00001")])  # a later id commits first
    reports.refresh_presence(store)
    held.commit()
    held.close()
    # All three: the held event was above the mark (xmin) and comes in the next fold.
    assert _people(store) == 3
    assert (
        _people(store)
        == reports.unique_people(
            store, Filters(None, DAY, DAY + timedelta(days=1, microseconds=1))
        )["people"]
    )


def test_new_events_fold_in_on_duckdb_too(store: Store) -> None:
    store.upsert_site("default", "Default", [])
    store.insert_events([_row("first00001")])
    assert _people(store) == 1
    store.insert_events([_row("later00001")])
    assert _people(store) == 2
    assert reports.refresh_presence(store) == 0  # nothing new: no fold


def _funnel_people(store: Store) -> list[int]:
    document = reports.funnel(store, RANGE, steps=["visitor", "bot_open"])
    return [step["people"] for step in document["overall"]["steps"]]


def test_funnel_steps_and_form_events_fold_a_late_commit_on_postgres(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        store.insert_events([_row("first00001"), _row("first00001", "bot_open")])
        assert _funnel_people(store) == [1, 1]
        held = psycopg.connect(postgres_url)
        # An open transaction writes a visit and a form view (ids taken now) and waits...
        for event, data in (("visitor", "{}"), ("form_viewed", '{"form": "contact"}')):
            held.execute(
                "INSERT INTO events (site_id, ts, received_at, event, token, ephemeral, "
                "duplicate, data, id_kind) VALUES ('default', %s, %s, %s, 'slow000001', false, "
                "false, %s, 'token')",
                [DAY + timedelta(hours=13), DAY + timedelta(hours=13), event, data],
            )
        # ...while later ids commit. The open transaction holds the marks (xmin) back, so
        # the folds wait for it instead of folding the later ids and skipping the held ones.
        store.insert_events([_row("later00001"), _row("later00001", "form_viewed", form="x")])
        assert _funnel_people(store) == [1, 1]
        assert reports.deflection(store, RANGE)["totals"]["sessions"] == 0
        held.commit()
        held.close()
        # Once it commits, the next folds take in the held and the later events alike.
        assert funnel_steps.refresh(store) == 2
        assert form_events.refresh(store) == 2
        assert _funnel_people(store) == [3, 1]
        assert reports.deflection(store, RANGE)["totals"]["sessions"] == 2
        assert reports.deflection(store, RANGE) == reports.deflection(
            store, RANGE, events_path=True
        )
    finally:
        store.close()
