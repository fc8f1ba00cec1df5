"""The batch routes' fast path against the exact rules it stands in for: on generated
events (valid, broken, repeated keys, odd spellings) it never accepts what the exact path
refuses, and stores exactly what the exact path would; on the common shapes it does accept.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footfall.errors import ApiError
from footfall.ingest.segment import (
    MAX_MESSAGE_BYTES,
    Envelope,
    fast_message_decoder,
    fast_message_row,
    map_message,
)
from footfall.ingest.validate import (
    EVENT_ALIASES,
    EVENT_TYPES,
    MAX_PAYLOAD_BYTES,
    RequestContext,
    decode_items,
    fast_decode,
    fast_event_decoder,
    fast_rows,
    validate_event,
)
from footfall.store.base import EventRow

NOW_US = 1_780_000_000_000_000
NOW_MS = NOW_US // 1000

_floats = st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _floats | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values eleven times in twelve: most events reach the rules after the first."""
    return st.integers(1, 12).flatmap(lambda pick: good if pick < 12 else bad)


_names = mostly(
    st.sampled_from([*sorted(EVENT_TYPES), *EVENT_ALIASES]),
    st.sampled_from(["Visitor", "custom", "", "x" * 51, "visitor "]) | st.integers() | st.none(),
)
_tokens = mostly(
    st.sampled_from(["abcdefgh", "user_abc123def456", "bench0000001a1", "tok-en_0", "x" * 128]),
    st.sampled_from(["short", "x" * 129, "bad token", "abcdefgh\n", "abcd\nefgh", "ÄbcdefgH1", ""])
    | st.integers()
    | st.none(),
)
_strings = st.sampled_from(["bot-1", "a:b", "x" * 512, "popup", "chat_button", "é\u2028"])
_odd: st.SearchStrategy[Any] = (
    st.sampled_from(["", "x" * 513]) | _floats | st.booleans() | st.just([]) | st.just({})
)
_data_values = {
    "chatbot_id": mostly(_strings | st.integers() | st.none(), _odd),
    "popup_version": mostly(_strings | st.integers(-5, 5) | st.none(), _odd),
    "orderNum": mostly(_strings | st.integers() | st.none(), _odd),
    "open_way": mostly(st.sampled_from(["popup", "chat_button", None]), _strings | _odd),
    "currency": mostly(
        st.sampled_from(["EUR", "usd", " gbp ", "CZK", None]), st.sampled_from(["XXX", "", 5])
    ),
    "value": mostly(
        st.integers(0, 10**6) | st.floats(0, 1e6) | st.none(),
        st.integers(-2, 10**13) | _floats | st.just("12"),
    ),
    "items": mostly(
        st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": mostly(_strings | st.integers(), _odd),
                    "item_id": mostly(_strings, _odd),
                    "price": mostly(st.floats(0, 100), _odd),
                    "value": mostly(st.integers(0, 100), _odd),
                    "quantity": mostly(st.integers(1, 5) | st.just(2.0), _odd | st.just(0)),
                    "currency": mostly(
                        st.sampled_from(["EUR", "PLN"]), st.sampled_from(["XX", ""])
                    ),
                    "name": _json,
                },
            ),
            max_size=3,
        ),
        _json,
    ),
    "text": _json,
    "form": mostly(_strings | st.none(), _odd | st.integers() | st.just("a\nb")),
    "question": mostly(st.text(max_size=12) | st.none(), _odd | st.just("q" * 2001)),
    "answer_id": mostly(_strings | st.integers() | st.none(), _odd),
    "a:b": _json,
}
_data = mostly(st.fixed_dictionaries({}, optional=_data_values), _json)
_fields = {
    "ab_test": mostly(st.booleans() | st.none(), st.just("true") | st.just(1)),
    "ephemeral": mostly(st.booleans(), st.none() | st.just(0)),
    "data": _data,
    "url": mostly(_strings | st.none() | st.just(""), st.integers() | st.just([])),
    "ts": mostly(
        st.integers(NOW_MS - 10**9, NOW_MS + 10**9) | st.floats(0, 2e12) | st.none(),
        _floats | st.integers() | st.booleans() | st.just("1"),
    ),
    "messageId": mostly(
        st.text(min_size=1, max_size=3) | st.integers(-(2**63), 2**63) | st.none(),
        st.sampled_from(["", "m" * 256, 10**300]) | _floats | st.booleans(),
    ),
    "site": st.sampled_from(["default", "other", None, 1]),
    "extra": _json,
}
_events = st.fixed_dictionaries({"event": _names, "token": _tokens}, optional=_fields)


def spelled(event: dict[str, Any], rnd: random.Random) -> bytes:
    """The event as a client might write it: spacing, escapes, now and then a key twice."""
    separators = rnd.choice([(",", ":"), (", ", ": "), (",", " : ")])
    text = json.dumps(event, separators=separators, ensure_ascii=rnd.random() < 0.3)
    if event and rnd.random() < 0.1:
        key = rnd.choice(list(event))
        text = "{" + json.dumps(key) + ":" + json.dumps(rnd.choice([1, "x", None])) + "," + text[1:]
    if rnd.random() < 0.05:
        text = text.replace(":", "\\u003a", 1)
    return text.encode()


def exact(raw: bytes, ctx: RequestContext) -> EventRow | ApiError:
    (value,) = decode_items(raw, [raw], b"")
    if isinstance(value, ApiError):
        return value
    try:
        return validate_event(value, ctx)
    except ApiError as error:
        return error


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(_events, min_size=1, max_size=6),
    st.integers(0, 2**32),
    st.sampled_from([None, "https://ref.test/x", ""]),
    st.sampled_from([None, "Mozilla/5.0", "u" * 1100]),
)
def test_the_fast_path_stores_what_the_exact_rules_store(
    events: list[dict[str, Any]], seed: int, referer: str | None, agent: str | None
) -> None:
    ctx = RequestContext("default", NOW_US, user_agent=agent, page_url=referer)
    rnd = random.Random(seed)
    raws = [spelled(event, rnd) for event in events]
    fast = fast_rows(fast_decode(raws, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    for raw, row in zip(raws, fast, strict=True):
        if row is not None:
            assert exact(raw, ctx) == row, raw


def test_the_common_shapes_take_the_fast_path() -> None:
    ctx = RequestContext("default", NOW_US, user_agent="Mozilla/5.0")
    events = [
        {"event": "visitor", "token": "user_abc123def456"},
        {"event": "bot_open", "token": "abcdefgh", "data": {"chatbot_id": "b", "x": [1]}},
        {"event": "tracktrans", "token": "abcdefgh1", "ab_test": True, "messageId": 7},
        {
            "event": "purchase",
            "token": "abcdefgh0",
            "ts": NOW_MS - 5_000,
            "site": "default",
            "data": {"orderNum": 12, "currency": "usd", "items": [{"id": 1, "price": 2.5}]},
        },
    ]
    raws = [json.dumps(event).encode() for event in events]
    fast = fast_rows(fast_decode(raws, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    assert [row is not None for row in fast] == [True] * len(events)
    assert fast == [exact(raw, ctx) for raw in raws]
    assert fast[2] is not None
    assert fast[2].event == "purchase"
    assert fast[2].ab_group == "test"


def test_what_the_fast_path_leaves_to_the_exact_rules() -> None:
    ctx = RequestContext("default", NOW_US)
    raws = [
        b'{"event":"visitor","token":"abcdefgh","token":"abcdefgi"}',  # a key twice
        b'{"event":"visitor","token":"abcdefgh","extra":1}',  # a key it does not know
        b'{"event":"visitor","token":"abcd efgh"}',  # a token character
        b'{"event":"visitor","token":"abcdefgh\\nabcdefgh"}',  # a line feed in a token
        b'{"event":"visitor","token":"abcdefgh","site":"other"}',  # another site
        b'{"event":"purchase","token":"abcdefgh","data":{"value":-1}}',  # a data rule
        b'{"event":"visitor","token":"abcdefgh","messageId":""}',
        b'{"event":"visitor","token":"abcdefgh","data":{"a\\u003ab":1}}',
    ]
    fast = fast_rows(fast_decode(raws, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    assert fast == [None] * len(raws)
    big = b'{"event":"visitor","token":"abcdefgh","data":{"t":"%s"}}' % (b"x" * MAX_PAYLOAD_BYTES)
    assert fast_decode([big], fast_event_decoder, MAX_PAYLOAD_BYTES) == [None]


_iso = mostly(
    st.sampled_from(
        [
            *("2026-11-20T10:00:00.000Z", "2026-11-20T10:00:00+02:00", "2026-11-20 10:00:00"),
            *("2030-01-01T00:00:00Z", "2026-11-20T09:59:59.5-01:00"),
        ]
    ),
    st.sampled_from(["1999-12-31T23:59:59Z", "yesterday", ""]),
)
_ids = mostly(
    st.sampled_from(["anon-1", "user_abc123def456", "a b c", "x" * 128]) | st.integers(0, 10**6),
    st.sampled_from(["", "x" * 129, "x" * 256, " "]) | st.booleans() | _floats | st.just({}),
)
_properties = st.fixed_dictionaries(
    {},
    optional={
        "product_id": mostly(_strings | st.integers(), _odd),
        "sku": mostly(_strings, _odd),
        "price": mostly(st.floats(0, 100), _odd | st.just(-1)),
        "quantity": mostly(st.integers(1, 3), _odd),
        "currency": mostly(st.sampled_from(["EUR", "usd", None]), st.sampled_from(["XX", ""])),
        "revenue": mostly(st.floats(0, 1000), _odd),
        "total": mostly(st.floats(0, 1000), _odd),
        "order_id": mostly(_strings | st.integers(), _odd),
        "url": mostly(_strings, _odd),
        "products": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "product_id": mostly(_strings, _odd),
                        "id": mostly(_strings | st.integers(), _odd),
                        "price": mostly(st.floats(0, 100), _odd),
                        "quantity": mostly(st.integers(1, 3), _odd),
                    },
                ),
                max_size=3,
            ),
            _json,
        ),
        "text": _json,
    },
)
_context = st.fixed_dictionaries(
    {},
    optional={
        "page": mostly(
            st.fixed_dictionaries({}, optional={"url": _strings | st.none(), "path": _strings}),
            _json,
        ),
        "userAgent": mostly(st.sampled_from(["Mozilla/5.0", "u" * 1100]), _json),
        "ip": st.just("203.0.113.9"),
        "traits": _json,
    },
)
_messages = st.fixed_dictionaries(
    {
        "type": mostly(
            st.sampled_from(["track", "page", "screen"]),
            st.sampled_from(["identify", "alias", "group", "Track", ""]) | st.none(),
        ),
        "anonymousId": mostly(_ids, st.none()),
    },
    optional={
        "event": mostly(
            st.sampled_from(
                [
                    *("Product Added", "Order Completed", "Cart Viewed", "visitor", "purchase"),
                    *("Form Viewed", "Answer Shown", "Ticket Submitted"),
                    *("Clicked Help", " Signed Up ", "tracktrans", "x" * 255),
                ]
            ),
            st.sampled_from(["", "  ", "x" * 256, "a\x00b"]) | st.integers() | st.none(),
        ),
        "name": _json,
        "category": _json,
        "userId": _ids,
        "messageId": mostly(
            st.text(min_size=1, max_size=3) | st.integers(0, 10**6),
            st.sampled_from(["", "m" * 256]) | st.booleans() | _floats,
        ),
        "timestamp": mostly(_iso, st.integers()),
        "originalTimestamp": mostly(_iso, st.integers()),
        "sentAt": mostly(_iso, st.integers()),
        "properties": mostly(_properties, _json),
        "context": mostly(_context, _json),
        "traits": _json,
        "integrations": _json,
        "writeKey": mostly(st.just("k"), st.integers()),
        "unknown": _json,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(_messages, min_size=1, max_size=5),
    st.integers(0, 2**32),
    mostly(st.sampled_from([None, "2026-11-20T10:00:01.000Z"]), st.just("bad")),
    st.sampled_from([None, {"userAgent": "Batch/1.0"}, {"page": {"url": "https://b.test/"}}]),
    st.sampled_from([None, "Mozilla/5.0 (request)"]),
    st.sampled_from([None, "import:abc:0"]),
)
def test_the_segment_fast_path_stores_what_map_message_stores(
    messages: list[dict[str, Any]],
    seed: int,
    sent_at: str | None,
    context: dict[str, Any] | None,
    agent: str | None,
    derived: str | None,
) -> None:
    rnd = random.Random(seed)
    raws = [spelled(message, rnd) for message in messages]
    envelope = Envelope("default", NOW_US, agent, sent_at, context)
    fast = fast_decode(raws, fast_message_decoder, MAX_MESSAGE_BYTES)
    for raw, decoded in zip(raws, fast, strict=True):
        row = None if decoded is None else fast_message_row(decoded, envelope, derived)
        if row is None:
            continue
        (message,) = decode_items(raw, [raw], b"", MAX_MESSAGE_BYTES)
        assert isinstance(message, dict), raw
        if derived is not None and message.get("messageId") is None:
            message["messageId"] = derived
        mapped = map_message(message, Envelope("default", NOW_US, agent, sent_at, context))
        assert mapped.identity is None
        assert mapped.row == row, raw


def test_common_segment_messages_take_the_fast_path() -> None:
    envelope = Envelope("default", NOW_US, "Mozilla/5.0", "2026-11-20T10:00:01.000Z")
    messages = [
        {
            "type": "track",
            "event": "Product Added",
            "anonymousId": "anon-1",
            "messageId": "m-1",
            "timestamp": "2026-11-20T10:00:00.000Z",
            "properties": {"product_id": "SKU-1", "price": 12.5},
            "context": {"page": {"url": "https://shop.test/p"}, "userAgent": "UA"},
            "integrations": {},
        },
        {"type": "page", "userId": 42, "name": "Home", "properties": {"url": "https://s.test/"}},
        {"type": "track", "event": "Clicked Help", "anonymousId": "user_abc123def456"},
    ]
    raws = [json.dumps(message).encode() for message in messages]
    fast = fast_decode(raws, fast_message_decoder, MAX_MESSAGE_BYTES)
    rows = [None if m is None else fast_message_row(m, envelope) for m in fast]
    assert all(row is not None for row in rows)
    assert rows == [map_message(message, envelope).row for message in messages]
    assert rows[2] is not None
    assert rows[2].custom_event == "Clicked Help"


def test_a_token_with_a_line_feed_among_good_ones_takes_the_exact_path() -> None:
    ctx = RequestContext("default", NOW_US)
    raws = [
        b'{"event":"visitor","token":"abcdefgh"}',
        b'{"event":"visitor","token":"abcd\\nefgh"}',
    ]
    fast = fast_rows(fast_decode(raws, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    assert fast[0] is not None
    assert fast[1] is None
    assert isinstance(exact(raws[1], ctx), ApiError)
