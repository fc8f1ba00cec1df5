"""A small, fixed data set whose every report number is worked out by hand in the tests.

People (tenant ``default``: sites ``default`` and ``help``; ``rival`` is another tenant):
- Alice: token ``aliceshop1`` on the shop and ``alicehelp1`` on the help site, both
  identified with alice@example.test, so one person. A/B group: test.
- Bob: token ``bobshop000``, no identity links; one visit before the range. Group: control.
- Carol: tokens ``carolone0`` and ``caroltwo0`` joined by the alias API. Group: control.
- Dave: ephemeral token ``davetmp01`` (no consent): never a person.
- Erin: token ``erinshop01`` on the rival site (another tenant).

Day 0 is Monday 2026-03-02; every event happens at 10:00 plus the given minutes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from footfall.identity import IdentityGraph
from footfall.ingest.validate import RequestContext, validate_event
from footfall.store.base import Store

DAY0 = datetime(2026, 3, 2, 10, 0)
EPOCH = datetime(1970, 1, 1)


def _at(day: int, minutes: int = 0) -> int:
    moment = DAY0 + timedelta(days=day, minutes=minutes)
    return (moment - EPOCH) // timedelta(microseconds=1)


# (site, day, minute, token, body-without-token)
_EVENTS: list[tuple[str, int, int, str, dict[str, Any]]] = []


def _add(site: str, day: int, minute: int, token: str, event: str, **body: Any) -> None:
    _EVENTS.append((site, day, minute, token, {"event": event, **body}))


AB = {"ab_test": True}
# Alice, day 0 on the shop: the whole funnel and a purchase of 2 x 10 USD = 18.40 EUR.
_add("default", 0, 0, "aliceshop1", "visitor", **AB)
_add("default", 0, 1, "aliceshop1", "popup_displayed", data={"popup_version": "v1"}, **AB)
_add("default", 0, 2, "aliceshop1", "popup_opened", data={"popup_version": "v1"}, **AB)
_add(
    "default",
    0,
    3,
    "aliceshop1",
    "bot_open",
    data={"open_way": "popup", "chatbot_id": "bot-a"},
    **AB,
)
_add("default", 0, 4, "aliceshop1", "convo_started", data={"chatbot_id": "bot-a"}, **AB)
_add(
    "default",
    0,
    5,
    "aliceshop1",
    "message_sent",
    data={"text": "How do I reset my password?"},
    **AB,
)
_add(
    "default",
    0,
    6,
    "aliceshop1",
    "message_sent",
    data={"text": "  how do I  reset my password "},
    **AB,
)
_add("default", 0, 7, "aliceshop1", "message_like", data={"chatbot_id": "bot-a"}, **AB)
_add("default", 0, 8, "aliceshop1", "added_to_cart", **AB)
_add(
    "default",
    0,
    9,
    "aliceshop1",
    "purchase",
    data={
        "orderNum": "ORD-1",
        "items": [{"id": "SKU1", "price": 10, "quantity": 2, "currency": "USD"}],
    },
    **AB,
)
# Alice, day 8 on the help site, and the shop re-sends her order (a duplicate).
_add("help", 8, 0, "alicehelp1", "visitor", **AB)
_add("help", 8, 1, "alicehelp1", "message_sent", data={"text": "Where is my order?"}, **AB)
_add(
    "default",
    8,
    2,
    "aliceshop1",
    "purchase",
    data={
        "orderNum": "ORD-1",
        "items": [{"id": "SKU1", "price": 10, "quantity": 2, "currency": "USD"}],
    },
    **AB,
)
# Bob: before the range, then days 0, 1 and 15.
_add("default", -10, 0, "bobshop000", "visitor", **AB)
_add("default", 0, 0, "bobshop000", "visitor", **AB)
_add("default", 0, 1, "bobshop000", "popup_displayed", data={"popup_version": "v2"}, **AB)
_add(
    "default",
    0,
    2,
    "bobshop000",
    "bot_open",
    data={"open_way": "chat_button", "chatbot_id": "bot-b"},
    **AB,
)
_add("default", 0, 3, "bobshop000", "convo_started", data={"chatbot_id": "bot-b"}, **AB)
_add("default", 0, 4, "bobshop000", "message_sent", data={"text": "Where is my order??"}, **AB)
_add("default", 0, 5, "bobshop000", "message_dislike", data={"chatbot_id": "bot-b"}, **AB)
_add("default", 1, 0, "bobshop000", "visitor", **AB)
_add("default", 1, 1, "bobshop000", "convo_started", data={"chatbot_id": "bot-b"}, **AB)
_add("default", 1, 2, "bobshop000", "error", data={"message": "widget failed"}, **AB)
_add("default", 1, 3, "bobshop000", "error", data={"message": "widget failed"}, **AB)
_add("default", 15, 0, "bobshop000", "visitor", **AB)
# Carol: day 0 on one token, day 7 (an hour later in the day) on another; aliased.
_add("default", 0, 0, "carolone0", "visitor", **AB)
_add("default", 0, 1, "carolone0", "popup_displayed", data={"popup_version": "v1"}, **AB)
_add("default", 7, 60, "caroltwo0", "visitor", **AB)
_add("default", 7, 61, "caroltwo0", "bot_open", data={"open_way": "chat_button"}, **AB)
_add("default", 7, 62, "caroltwo0", "convo_started", **AB)
_add("default", 7, 63, "caroltwo0", "message_sent", data={"text": "Do you ship to Austria?"}, **AB)
_add("default", 7, 64, "caroltwo0", "added_to_cart", **AB)
_add(
    "default",
    7,
    65,
    "caroltwo0",
    "purchase",
    data={"orderNum": "ORD-2", "items": [{"item_id": "SKU2", "value": 100, "currency": "CZK"}]},
    **AB,
)
_add(
    "default",
    7,
    66,
    "caroltwo0",
    "purchase",
    data={"orderNum": "ORD-3", "items": [{"item_id": "SKU3", "value": 50, "currency": "XYZ"}]},
    **AB,
)
# Dave: no consent, ephemeral.
_add("default", 0, 0, "davetmp01", "visitor", ephemeral=True)
_add("default", 0, 1, "davetmp01", "bot_open", ephemeral=True)
# Erin on the rival site, with an order number Alice's shop also used.
_add("rival", 2, 0, "erinshop01", "visitor")
_add(
    "rival",
    2,
    1,
    "erinshop01",
    "purchase",
    data={"orderNum": "ORD-1", "items": [{"id": "SKU9", "price": 5, "currency": "EUR"}]},
)


def load(store: Store) -> IdentityGraph:
    """Write the data set through the ingest rules and the identity graph."""
    store.upsert_site("help", "Help centre", ["*"], "default")
    store.upsert_site("rival", "Rival", ["*"])
    for site, day, minute, token, body in _EVENTS:
        row = validate_event({**body, "token": token}, RequestContext(site, _at(day, minute)))
        store.insert_events([row])
    graph = IdentityGraph(store)
    graph.identify("default", "aliceshop1", email="Alice@Example.test")
    graph.identify("default", "alicehelp1", email="alice@example.test")
    graph.alias("default", "carolone0", "caroltwo0")
    return graph
