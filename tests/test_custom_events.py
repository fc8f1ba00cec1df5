"""Custom events and message ids at the store level, once per backend: a custom event is
stored apart from the 13 types, listed by the custom-events report, usable as a funnel
step; a message id is stored once; write keys belong to one site."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from footfall.analytics.params import report_options
from footfall.analytics.reports import REPORTS, Filters, custom_events, funnel, overview
from footfall.errors import ApiError
from footfall.ingest.validate import RequestContext, custom_event_name, validate_event
from footfall.sites import ensure_write_key, revoke_write_key, rotate_write_key, write_key_site
from footfall.store.base import REPEATED_MESSAGE, STORED, EventRow, Store

DAY = datetime(2026, 11, 2, 9, 0)


def _us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds() * 1_000_000)


def row(
    token: str,
    minute: int,
    event: str = "visitor",
    custom: str | None = None,
    message: str | None = None,
) -> EventRow:
    ctx = RequestContext(site_id="default", now_us=_us(DAY + timedelta(minutes=minute)))
    made = validate_event(
        {"event": event, "token": token, "messageId": message}, ctx, custom_name=custom
    )
    return made


def range_of_day() -> Filters:
    return Filters(None, DAY.replace(hour=0), DAY.replace(hour=0) + timedelta(days=1))


def test_custom_events_are_listed_apart_from_the_13_types(store: Store) -> None:
    store.insert_events(
        [
            row("token-aaaa-1", 0),
            row("token-aaaa-1", 1, custom="Signed Up"),
            row("token-bbbb-2", 2, custom="Signed Up"),
            row("token-bbbb-2", 3, custom="Signed Up"),
            row("token-bbbb-2", 4, custom="purchase"),  # a custom name like a type's
            row("token-cccc-3", 5, "purchase"),
        ]
    )
    report = custom_events(store, range_of_day())
    assert report["total"] == 4
    by_name = {e["name"]: (e["count"], e["people"]) for e in report["events"]}
    assert by_name == {"Signed Up": (3, 2), "purchase": (1, 1)}
    only = custom_events(store, range_of_day(), name="Signed Up")
    assert [e["name"] for e in only["events"]] == ["Signed Up"]
    assert only["total"] == 3
    summary = overview(store, range_of_day())
    assert summary["orders"] == 1  # the custom 'purchase' is no order
    assert summary["visits"] == 1


def test_a_funnel_step_may_name_a_custom_event(store: Store) -> None:
    store.insert_events(
        [
            row("token-aaaa-1", 0),
            row("token-aaaa-1", 1, custom="Signed Up"),
            row("token-aaaa-1", 2, "purchase"),
            row("token-bbbb-2", 0),
            row("token-bbbb-2", 5, custom="Signed Up"),
            row("token-cccc-3", 0),
        ]
    )
    options = report_options(REPORTS["funnel"], {"steps": "visitor,custom:Signed Up,purchase"})
    result = funnel(store, range_of_day(), **options)
    assert [s["people"] for s in result["overall"]["steps"]] == [3, 2, 1]
    assert result["steps"][1] == "custom:Signed Up"
    with pytest.raises(ApiError) as refused:
        report_options(REPORTS["funnel"], {"steps": "visitor,custom:"})
    assert refused.value.field == "steps"


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("Viewed Pricing", "Viewed Pricing"),
        ("  Checkout Started ", "Checkout Started"),
        ("Größe gewählt 🚀", "Größe gewählt 🚀"),
        ("x" * 255, "x" * 255),
        ("x" * 256, None),
        ("", None),
        ("   ", None),
        ("line\nbreak", None),
        ("tab\there", None),
        ("nul\x00", None),
        ("a\u2028b", None),
        # 256 characters as sent, whitespace to Python's strip (the vendor /e's maxLength)
        ("ø" + "\x1c" * 254 + " ", None),
        (" " * 250 + "Signup", None),
    ],
)
def test_custom_event_names_are_checked(name: str, accepted: str | None) -> None:
    if accepted is None:
        with pytest.raises(ApiError) as refused:
            custom_event_name(name, "event")
        assert (refused.value.status, refused.value.field) == (422, "event")
    else:
        assert custom_event_name(name, "event") == accepted


def test_a_message_id_is_stored_once(store: Store) -> None:
    first = store.insert_events(
        [
            row("token-aaaa-1", 0, message="m-1"),
            row("token-aaaa-1", 1, message="m-2"),
            row("token-aaaa-1", 2, message="m-1"),
            row("token-aaaa-1", 3),
        ]
    )
    assert first == [STORED, STORED, REPEATED_MESSAGE, STORED]
    again = store.insert_events(
        [row("token-aaaa-1", 0, message="m-2"), row("token-aaaa-1", 4, message="m-3")]
    )
    assert again == [REPEATED_MESSAGE, STORED]
    assert store.count_events() == 4
    ids = store.query("SELECT message_id FROM message_ids ORDER BY message_id")
    assert [m for (m,) in ids] == ["m-1", "m-2", "m-3"]
    store.upsert_site("other", "Other", [])
    elsewhere = row("token-aaaa-1", 5, message="m-1")
    elsewhere.site_id = "other"
    assert store.insert_events([elsewhere]) == [STORED]  # ids are per site


def test_write_keys_belong_to_one_site_and_rotate(store: Store) -> None:
    store.upsert_site("other", "Other", [])
    key = ensure_write_key(store, "default")
    assert ensure_write_key(store, "default") == key
    assert write_key_site(store, key.key) == "default"
    other = ensure_write_key(store, "other")
    assert write_key_site(store, other.key) == "other"
    rotated = rotate_write_key(store, "default")
    assert rotated.key != key.key
    assert write_key_site(store, key.key) is None
    assert write_key_site(store, rotated.key) == "default"
    assert revoke_write_key(store, "default")
    assert write_key_site(store, rotated.key) is None
    assert not revoke_write_key(store, "default")
    assert write_key_site(store, "ff_not_a_write_key") is None


def test_message_ids_are_forgotten_after_their_days(store: Store) -> None:
    from footfall.retention import prune_message_ids

    store.insert_events([row("token-aaaa-1", 0, message="old-1")])
    received = DAY + timedelta(minutes=0)
    assert prune_message_ids(store, 30, now=received + timedelta(days=29)) == 0
    assert prune_message_ids(store, 30, now=received + timedelta(days=31)) == 1
    assert store.insert_events([row("token-aaaa-1", 1, message="old-1")]) == [STORED]
