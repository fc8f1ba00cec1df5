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
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
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
    st.sampled_from(["short", "x" * 129, "bad token", "abcdefgh\n", "ÄbcdefgH1", ""])
    | st.integers()
    | st.none(),
)
_strings = st.sampled_from(["bot-1", "a:b", "x" * 512, "popup", "chat_button", "é\u2028"])
_odd = st.sampled_from(["", "x" * 513]) | _floats | st.booleans() | st.just([]) | st.just({})
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
                    "currency": mostly(st.sampled_from(["EUR", "PLN"]), st.sampled_from(["XX", ""])),
                    "name": _json,
                },
            ),
            max_size=3,
        ),
        _json,
    ),
    "text": _json,
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


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
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
    assert fast[2] is not None and fast[2].event == "purchase" and fast[2].ab_group == "test"


def test_what_the_fast_path_leaves_to_the_exact_rules() -> None:
    ctx = RequestContext("default", NOW_US)
    raws = [
        b'{"event":"visitor","token":"abcdefgh","token":"abcdefgi"}',  # a key twice
        b'{"event":"visitor","token":"abcdefgh","extra":1}',  # a key it does not know
        b'{"event":"visitor","token":"abcd efgh"}',  # a token character
        b'{"event":"visitor","token":"abcdefgh","site":"other"}',  # another site
        b'{"event":"purchase","token":"abcdefgh","data":{"value":-1}}',  # a data rule
        b'{"event":"visitor","token":"abcdefgh","messageId":""}',
        b'{"event":"visitor","token":"abcdefgh","data":{"a\\u003ab":1}}',
    ]
    fast = fast_rows(fast_decode(raws, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    assert fast == [None] * len(raws)
    big = b'{"event":"visitor","token":"abcdefgh","data":{"t":"%s"}}' % (b"x" * MAX_PAYLOAD_BYTES)
    assert fast_decode([big], fast_event_decoder, MAX_PAYLOAD_BYTES) == [None]
