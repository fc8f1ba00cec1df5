"""The support form's event types: validated like the others, mapped from Segment's names."""

from __future__ import annotations

from typing import Any

import pytest

from footfall.errors import ApiError
from footfall.ingest.segment import Envelope, map_message
from footfall.ingest.validate import (
    EVENT_TYPES,
    FORM_EVENT_TYPES,
    RequestContext,
    fast_decode,
    fast_event_decoder,
    fast_rows,
    now_us,
    validate_event,
)

TOKEN = "visitor-0001"


def _ctx() -> RequestContext:
    return RequestContext("default", now_us())


@pytest.mark.parametrize("event", sorted(FORM_EVENT_TYPES))
def test_form_events_are_types_with_their_fields_kept(event: str) -> None:
    data = {"form": "contact", "question": "Where is my order?\n", "answer_id": 42, "x": 1}
    row = validate_event(
        {"event": event, "token": TOKEN, "data": {**data, "chatbot_id": "b"}}, _ctx()
    )
    assert row.event == event
    assert row.custom_event is None
    assert row.chatbot_id == "b"
    assert '"question":"Where is my order?\\n"' in row.data
    assert event in EVENT_TYPES


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"form": {"id": 1}}, "data.form"),
        ({"form": "x" * 513}, "data.form"),
        ({"form": "a\x00b"}, "data.form"),
        ({"question": 5}, "data.question"),
        ({"question": "q" * 2001}, "data.question"),
        ({"answer_id": []}, "data.answer_id"),
        ({"answer_id": "x" * 513}, "data.answer_id"),
    ],
)
def test_form_fields_are_refused_alike_by_both_paths(data: dict[str, Any], field: str) -> None:
    body = {"event": "answer_shown", "token": TOKEN, "data": data}
    with pytest.raises(ApiError) as refused:
        validate_event(body, _ctx())
    assert refused.value.status == 422
    assert refused.value.field == field
    import msgspec

    raw = msgspec.json.encode(body)
    # The fast path leaves it to the exact rules (None), never stores it.
    assert fast_rows(fast_decode([raw], fast_event_decoder, 50_000), _ctx()) == [None]


def test_the_13_types_keep_their_rules_for_the_form_keys() -> None:
    row = validate_event(
        {"event": "message_sent", "token": TOKEN, "data": {"form": {"a": 1}, "question": 5}},
        _ctx(),
    )
    assert row.data == '{"form":{"a":1},"question":5}'


def test_unknown_names_are_still_refused() -> None:
    with pytest.raises(ApiError) as refused:
        validate_event({"event": "ticket_filed", "token": TOKEN}, _ctx())
    assert (refused.value.status, refused.value.field) == (422, "event")


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("Form Viewed", "form_viewed"),
        ("Answer Shown", "answer_shown"),
        ("Ticket Submitted", "ticket_submitted"),
        ("ticket_submitted", "ticket_submitted"),
    ],
)
def test_segment_names_map_to_the_form_types(name: str, event: str) -> None:
    message = {
        "type": "track",
        "event": name,
        "userId": "client-7",
        "properties": {"form": "contact", "question": "Refund?"},
    }
    mapped = map_message(message, Envelope("default", now_us()))
    assert mapped.row is not None
    assert mapped.row.event == event
    assert mapped.row.custom_event is None
    assert mapped.row.id_kind == "client_id"
    assert mapped.row.data == '{"form":"contact","question":"Refund?"}'
