"""Segment-spec messages (track, page, screen, identify, alias, group) to what Footfall
stores: event rows for the write path and identity calls for the identity graph.

One mapping for the HTTP API (``/v1/...``, ``footfall.http.segment``) and for
``footfall import``, so both accept, map and refuse a message alike:

- ``anonymousId`` becomes the token: kept when it has the token format, else (any other
  string of 1-128 characters, or a number) replaced by ``sg-`` and 32 characters of its
  SHA-256 (base64url), the same every time, so it still joins its events;
- ``userId`` is the client id (an event with only a ``userId`` is stored under it);
  ``traits.email`` the email; ``identify`` is Footfall's identify (same wrong-merge rules);
- ``track`` names map to the types (``Order Completed`` purchase, ``Product Added``
  added_to_cart, ``Cart Viewed`` go_to_cart, a name that is one of the types that type;
  the support form's ``Form Viewed`` form_viewed, ``Answer Shown`` answer_shown, ``Ticket
  Submitted`` ticket_submitted, their properties as the event's data); every other name is
  a custom event;
- time: ``receivedAt - (sentAt - originalTimestamp)`` (``timestamp`` when there is no
  ``originalTimestamp``), Segment's correction of the sender's clock skew;
- ``context.ip`` is never read into anything stored; ``context.userAgent`` and
  ``context.page`` are kept.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from footfall.errors import ApiError, invalid, malformed
from footfall.identity import IdentifyRequest, IdentityGraph, user_identifiers
from footfall.ingest.validate import (
    CUSTOM_EVENT,
    EVENT_TYPES,
    MAX_USER_AGENT_CHARS,
    TOKEN_PATTERN,
    RequestContext,
    custom_event_name,
    decode_body,
    message_id,
    printable,
    row_with_data,
    unique_keys,
    validate_event,
)
from footfall.store.base import EventRow

_json_encoder = msgspec.json.Encoder()

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment's limit on one message (a single call, or one message of a batch)."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's own limit on a batch request: the most ``footfall import --server`` sends in
one (the server takes up to the ``segment_max_batch_bytes`` setting)."""
MAX_BATCH_MESSAGES = 10_000
"""Messages in one batch at most (Segment's and RudderStack's libraries send 100): bounds a
batch of tiny messages, which could otherwise outgrow the ingest queue on its own."""
MAX_ID_CHARS = 128
MAX_USER_ID_CHARS = 255
TYPES = ("track", "page", "screen", "identify", "alias", "group")
SHORT_TYPES = {
    "t": "track",
    "p": "page",
    "s": "screen",
    "i": "identify",
    "a": "alias",
    "g": "group",
}
"""analytics.js posts single messages to ``/v1/t``, ``/v1/p``, ... (and batches to ``/v1/b``)."""
ECOMMERCE = {
    "Order Completed": "purchase",
    "Product Added": "added_to_cart",
    "Cart Viewed": "go_to_cart",
}
FORM_EVENTS = {
    "Form Viewed": "form_viewed",
    "Answer Shown": "answer_shown",
    "Ticket Submitted": "ticket_submitted",
}
"""The support form's lifecycle under natural Segment-spec names (the deflection report)."""
DEFAULT_CURRENCY = "USD"
"""Segment's spec: revenue without a currency is in US dollars."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_EARLIEST_US = int(EARLIEST.timestamp() * 1_000_000)


@dataclass(slots=True)
class IdentityCall:
    """An identity change a message asks for, applied by the caller through the graph."""

    kind: str
    """``identify``, ``alias`` or ``group``."""
    token: str | None = None
    client_id: str | None = None
    email: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    previous_id: str | None = None
    """``alias``: the earlier name (a client id, else an anonymous id: mapped like one)."""


@dataclass(slots=True)
class Mapped:
    """What one message becomes: an event row, an identity call, or (rarely) both."""

    row: EventRow | None = None
    identity: IdentityCall | None = None


@dataclass(slots=True)
class Envelope:
    """What a request tells about all its messages."""

    site_id: str
    received_us: int
    user_agent: str | None = None
    sent_at: Any = None
    """The batch's ``sentAt``, for messages without their own."""
    context: Mapping[str, Any] | None = None
    """The batch's ``context``, under each message's own."""
    _contexts: dict[str | None, RequestContext] = field(default_factory=dict)

    def context_for(self, user_agent: str | None) -> RequestContext:
        """The validation context of a message with this user agent (one per agent: a
        batch's messages mostly share theirs)."""
        made = self._contexts.get(user_agent)
        if made is None:
            made = self._contexts[user_agent] = RequestContext(
                site_id=self.site_id, now_us=self.received_us, user_agent=user_agent
            )
        return made


def token_for(anonymous_id: Any, field_name: str = "anonymousId") -> str:
    """The token an ``anonymousId`` stands for (see the module's docstring)."""
    if isinstance(anonymous_id, int) and not isinstance(anonymous_id, bool):
        anonymous_id = str(anonymous_id)
    if not isinstance(anonymous_id, str):
        raise invalid(field_name, "must be a string")
    if not anonymous_id or len(anonymous_id) > MAX_ID_CHARS:
        raise invalid(field_name, f"must be 1-{MAX_ID_CHARS} characters")
    if TOKEN_PATTERN.fullmatch(anonymous_id):
        return anonymous_id
    printable(anonymous_id, field_name)  # (hashed, but refused as userId would be)
    digest = hashlib.sha256(anonymous_id.encode("utf-8", "surrogatepass")).digest()
    return "sg-" + base64.urlsafe_b64encode(digest).decode()[:32]


def user_id(value: Any, field_name: str = "userId") -> str:
    """A user id (or group or earlier id): a string of 1-255 characters, no control
    characters among them, or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise invalid(field_name, "must be a string")
    text = value.strip()
    if not text or len(value) > MAX_USER_ID_CHARS:
        raise invalid(field_name, f"must be 1-{MAX_USER_ID_CHARS} characters")
    return printable(text, field_name)


def parse_time(value: Any, field_name: str) -> int:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) to UTC microseconds."""
    if not isinstance(value, str) or len(value) > 64:
        raise invalid(field_name, "must be an ISO 8601 date-time")
    micros = _micros(value)
    if micros is None:
        raise invalid(field_name, "must be an ISO 8601 date-time (years 1-9999)")
    return micros


@functools.lru_cache(maxsize=4096)
def _micros(text: str) -> int | None:
    """Remembered: a batch's messages mostly share their ``sentAt`` and often their times."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _MICROSECOND
    except (ValueError, OverflowError):
        return None


def corrected_time(message: Mapping[str, Any], envelope: Envelope) -> int:
    """When the message happened, in UTC microseconds: the sender's time moved by the
    sender's clock error (its ``sentAt`` against our ``receivedAt``); never later than
    its arrival, never before 2000."""
    return happened_at(
        message.get("originalTimestamp"), message.get("timestamp"), message.get("sentAt"), envelope
    )


def happened_at(original: Any, timestamp: Any, sent: Any, envelope: Envelope) -> int:
    """``corrected_time`` of a message with these three fields (None when absent)."""
    received = envelope.received_us
    field_name = "originalTimestamp"
    if original is None:
        original, field_name = timestamp, "timestamp"
    if original is None:
        return received
    happened = parse_time(original, field_name)
    if sent is None:
        sent = envelope.sent_at
    if sent is not None:
        happened = received - (parse_time(sent, "sentAt") - happened)
    if happened < _EARLIEST_US:
        raise invalid(field_name, "lies before the year 2000")
    return min(happened, received)


def archived_time(original: Any, timestamp: Any, sent: Any, received: Any, now_us: int) -> int:
    """When a message of an archive or export happened (``footfall import``): with the
    line's ``receivedAt``, Segment's correction against it (what Segment stored as its
    ``timestamp``); without, the line's ``timestamp`` (else ``originalTimestamp``) as it is,
    there being no arrival to measure the sender's clock against. Never later than
    ``now_us``; the import's own time when the line has none."""
    if received is not None:
        arrival = parse_time(received, "receivedAt")
        envelope = Envelope(site_id="", received_us=arrival)
        return min(happened_at(original, timestamp, sent, envelope), now_us)
    when, field_name = timestamp, "timestamp"
    if when is None:
        when, field_name = original, "originalTimestamp"
    if when is None:
        return now_us
    happened = parse_time(when, field_name)
    if happened < _EARLIEST_US:
        raise invalid(field_name, "lies before the year 2000")
    return min(happened, now_us)


def iso_time(micros: int) -> str:
    """UTC microseconds as the ISO 8601 time Segment's messages carry."""
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _object(value: Any, field_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(field_name, "must be an object")
    return value


def _items(products: Any, currency: Any) -> list[Any]:
    """Segment's ``products[]`` as Footfall's items (checked by the tracking rules)."""
    if not isinstance(products, list):
        raise invalid("properties.products", "must be an array")
    return [_item(product, currency) for product in products]


def _item(product: Any, currency: Any) -> Any:
    if not isinstance(product, dict):
        return product  # the item rules refuse it with its index
    item = {k: v for k, v in product.items() if k not in ("product_id", "price")}
    item_id = product.get("product_id", product.get("sku", product.get("id")))
    if item_id is not None:
        item["item_id"] = item_id
        item.pop("id", None)
    if product.get("price") is not None:
        item["value"] = product["price"]
    if item.get("currency") is None and currency is not None:
        item["currency"] = currency
    return item


def _track_data(name: str, properties: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The Footfall type (None: a custom event) and data of a ``track`` call."""
    event = ECOMMERCE.get(name) or FORM_EVENTS.get(name) or (name if name in EVENT_TYPES else None)
    if event is None or name in EVENT_TYPES or name in FORM_EVENTS:
        return event, dict(properties)
    currency = properties.get("currency")
    if currency is None:
        currency = DEFAULT_CURRENCY
    data = {
        k: v
        for k, v in properties.items()
        if k not in ("order_id", "products", "revenue", "product_id", "price", "sku")
    }
    data["currency"] = currency
    if event == "purchase":
        if properties.get("order_id") is not None:
            data["orderNum"] = properties["order_id"]
        revenue = properties.get("revenue", properties.get("total"))
        if revenue is not None:
            data["value"] = revenue
    if properties.get("products") is not None:
        data["items"] = _items(properties["products"], currency)
    elif event == "added_to_cart" and any(
        properties.get(k) is not None for k in ("product_id", "sku", "price")
    ):
        data["items"] = [_item(properties, currency)]  # the product itself
    return event, data


def map_message(message: Any, envelope: Envelope, kind: str | None = None) -> Mapped:
    """One Segment message to what Footfall stores; ``kind`` is the endpoint's type
    (``/v1/track``) where the message may leave out ``type``. Raises ApiError (400/422)."""
    if not isinstance(message, dict):
        raise malformed("a message must be a JSON object")
    given = message.get("type")
    if given is not None and (not isinstance(given, str) or given not in TYPES):
        raise invalid("type", f"must be one of {', '.join(TYPES)}")
    kind = given or kind
    if kind is None:
        raise invalid("type", "required in a batch")
    _check_types(message)
    own = _object(message.get("context"), "context")
    context = {**envelope.context, **own} if envelope.context else own
    anonymous = message.get("anonymousId")
    token = None if anonymous is None or anonymous == "" else token_for(anonymous)
    user = None if message.get("userId") in (None, "") else user_id(message["userId"])
    if kind == "alias":
        return Mapped(identity=_alias(message, user))
    if token is None and user is None:
        raise invalid("anonymousId", "a message needs a userId or an anonymousId")
    if kind == "identify":
        traits = _object(message.get("traits"), "traits")
        if not traits:
            traits = _object(context.get("traits"), "context.traits")
        email = traits.get("email")
        if email is not None and not isinstance(email, str):
            raise invalid("traits.email", "must be a string")
        metadata = {k: v for k, v in traits.items() if k != "email"}
        user_identifiers(user, email or None)  # a bad email is this message's 422
        return Mapped(identity=IdentityCall("identify", token, user, email or None, metadata))
    if kind == "group":
        group = message.get("groupId")
        if group is None:
            raise invalid("groupId", "required")
        traits = _object(message.get("traits"), "traits")
        return Mapped(
            identity=IdentityCall(
                "group",
                token,
                user,
                traits={"group_id": user_id(group, "groupId"), "group": traits},
            )
        )
    return Mapped(row=_event(message, envelope, kind, context, token, user))


_TIMES = ("timestamp", "originalTimestamp", "sentAt")
_OBJECTS = ("properties", "traits", "context")


def _check_types(message: Mapping[str, Any]) -> None:
    """Every field the spec types is checked, used or not, so what the API documents is
    what it accepts (a number where a time belongs is refused, not ignored)."""
    for name in _TIMES:
        if message.get(name) is not None and not isinstance(message[name], str):
            raise invalid(name, "must be an ISO 8601 date-time")
    for name in _OBJECTS:
        if message.get(name) is not None and not isinstance(message[name], dict):
            raise invalid(name, "must be an object")
    for name in ("event", "writeKey"):
        if message.get(name) is not None and not isinstance(message[name], str):
            raise invalid(name, "must be a string")
    for name in ("previousId", "groupId"):  # ids the message's type may not use
        if message.get(name) not in (None, ""):
            user_id(message[name], name)
    message_id(message.get("messageId"))


def _alias(message: Mapping[str, Any], user: str | None) -> IdentityCall:
    if user is None:
        raise invalid("userId", "required for alias")
    previous = message.get("previousId")
    if previous is None or previous == "":
        raise invalid("previousId", "required for alias")
    return IdentityCall("alias", client_id=user, previous_id=user_id(previous, "previousId"))


def _event(
    message: Mapping[str, Any],
    envelope: Envelope,
    kind: str,
    context: Mapping[str, Any],
    token: str | None,
    user: str | None,
) -> EventRow:
    properties = _object(message.get("properties"), "properties")
    page = _object(context.get("page"), "context.page")
    custom: str | None = None
    if kind == "track":
        name = message.get("event")
        if name is None:
            raise invalid("event", "required for track")
        if not isinstance(name, str):
            raise invalid("event", "must be a string")
        event, data = _track_data(name.strip(), properties)
        if event is None:
            custom = custom_event_name(name, "event")
            event = "visitor"  # ignored: custom_name makes it a custom event
    else:  # page, screen: a view
        event, data = "visitor", dict(properties)
        name = message.get("name")
        if name is not None:
            data["screen" if kind == "screen" else "name"] = name
        if message.get("category") is not None:
            data["category"] = message["category"]
    if page:
        data["context"] = {"page": page}
    url = page.get("url") if kind != "screen" else None
    if url is None and kind == "page":
        url = properties.get("url")
    agent = context.get("userAgent", envelope.user_agent)
    body = {
        "event": event,
        "token": token if token is not None else user,
        "data": data,
        "url": url if isinstance(url, str) else None,
        "messageId": message.get("messageId"),  # checked by validate_event
    }
    ctx = envelope.context_for(agent if isinstance(agent, str) else None)
    row = validate_event(
        body, ctx, custom_name=custom, id_kind="token" if token is not None else "client_id"
    )
    row.ts_us = corrected_time(message, envelope)
    return row


class FastMessage(msgspec.Struct, gc=False):
    """A track, page or screen message of the common valid shape, for the fast path of
    batches and imports (``fast_decode``): msgspec checks the types ``_check_types`` checks
    while it decodes. UNSET marks a key not sent, so the repeated-key proof counts exactly
    the keys sent; fields the mapping ignores are kept (as sent) for that proof alone, and a
    key not listed here sends the message through ``map_message``."""

    type: Literal["track", "page", "screen"]
    event: str | UnsetType | None = UNSET
    name: Any = UNSET
    category: Any = UNSET
    anonymousId: str | int | UnsetType | None = UNSET
    userId: str | int | UnsetType | None = UNSET
    messageId: str | int | UnsetType | None = UNSET
    timestamp: str | UnsetType | None = UNSET
    originalTimestamp: str | UnsetType | None = UNSET
    sentAt: str | UnsetType | None = UNSET
    properties: dict[str, Any] | UnsetType | None = UNSET
    traits: dict[str, Any] | UnsetType | None = UNSET
    context: dict[str, Any] | UnsetType | None = UNSET
    writeKey: str | UnsetType | None = UNSET
    previousId: Any = UNSET
    groupId: Any = UNSET
    integrations: Any = UNSET
    receivedAt: Any = UNSET
    channel: Any = UNSET
    version: Any = UNSET
    options: Any = UNSET
    metadata: Any = msgspec.field(default=UNSET, name="_metadata")


fast_message_decoder = msgspec.json.Decoder(FastMessage)


def fast_message_row(
    message: FastMessage, envelope: Envelope, derived_id: str | None = None
) -> EventRow | None:
    """The row ``map_message`` makes of a fast-decoded message, or None where a rule
    refuses it (``map_message`` then says why). ``derived_id``: the message id an import
    gives a message without one."""
    try:
        return _fast_row(message, envelope, derived_id)
    except ApiError:
        return None


def _fast_row(message: FastMessage, envelope: Envelope, derived_id: str | None) -> EventRow | None:
    """``map_message`` then ``validate_event`` for a track, page or screen message whose
    field types msgspec checked; everything that may be refused comes before the ``data``
    rules (which log an unknown currency), as there. UNSET (not sent) reads as None."""
    kind = message.type
    own = message.context
    own = {} if own is UNSET or own is None else own
    context = {**envelope.context, **own} if envelope.context else own
    anonymous = message.anonymousId
    token = (
        None if anonymous is UNSET or anonymous is None or anonymous == "" else token_for(anonymous)
    )
    user = message.userId
    user = None if user is UNSET or user is None or user == "" else user_id(user)
    if token is None and user is None:
        return None
    sent = message.messageId
    sent_id = message_id(derived_id if sent is UNSET or sent is None else sent)
    original, timestamp, sent_at = message.originalTimestamp, message.timestamp, message.sentAt
    ts_us = happened_at(
        None if original is UNSET else original,
        None if timestamp is UNSET else timestamp,
        None if sent_at is UNSET else sent_at,
        envelope,
    )
    properties = message.properties
    properties = {} if properties is UNSET or properties is None else properties
    page = context.get("page")
    if page is None:
        page = {}
    elif not isinstance(page, dict):
        return None
    custom: str | None = None
    if kind == "track":
        name = message.event
        if name is UNSET or name is None:
            return None
        event, data = _track_data(name.strip(), properties)
        if event is None:
            custom = custom_event_name(name, "event")
            event = CUSTOM_EVENT
    else:  # page, screen: a view
        event, data = "visitor", dict(properties)
        title = message.name
        if title is not UNSET and title is not None:
            data["screen" if kind == "screen" else "name"] = title
        category = message.category
        if category is not UNSET and category is not None:
            data["category"] = category
    if page:
        data["context"] = {"page": page}
    url = page.get("url") if kind != "screen" else None
    if url is None and kind == "page":
        url = properties.get("url")
    agent = context.get("userAgent", envelope.user_agent)
    agent = agent[:MAX_USER_AGENT_CHARS] if isinstance(agent, str) and agent else None
    return row_with_data(
        envelope.site_id,
        ts_us,
        envelope.received_us,
        event,
        token if token is not None else user,  # type: ignore[arg-type]  # one is set
        data,
        url if isinstance(url, str) else None,
        agent,
        False,
        None,
        "token" if token is not None else "client_id",
        custom,
        sent_id,
    )


def erased(tombstones: set[tuple[str, str, str]], tenant: str, call: IdentityCall) -> bool:
    """Whether an identity call names an identifier erased lately (it is then dropped)."""
    if not tombstones:
        return False
    named = (("token", call.token), ("client_id", call.client_id), ("email", call.email))
    return any(
        (tenant, kind, value.strip().lower() if kind == "email" else value) in tombstones
        for kind, value in named
        if value
    )


def apply_identity(graph: IdentityGraph, tenant: str, call: IdentityCall, actor: str) -> None:
    """Carry out an identity call: identify (wrong-merge rules apply), alias (an explicit
    instruction: merges), group (the group's id and traits on the person)."""
    if call.kind == "identify":
        graph.identify(tenant, call.token, call.client_id, call.email, call.traits, actor=actor)
    elif call.kind == "alias":
        assert call.client_id is not None
        assert call.previous_id is not None
        previous = f"client_id:{call.previous_id}"
        if graph.find(tenant, previous) is None:  # not a user id: an anonymous one
            previous = f"token:{token_for(call.previous_id, 'previousId')}"
        graph.alias(tenant, previous, f"client_id:{call.client_id}", actor)
    else:
        name = f"client_id:{call.client_id}" if call.client_id else f"token:{call.token}"
        graph.set_properties(tenant, name, call.traits)


def apply_identities(
    graph: IdentityGraph, tenant: str, calls: Sequence[IdentityCall], actor: str
) -> None:
    """``apply_identity`` for each call, in order, in one transaction, each seeing the ones
    before as one by one (runs of identify calls through ``identify_many``, which writes
    those of new people in bulk). Should one fail, all are rolled back and applied one by
    one: those before it stay applied and its error is raised, as without the batch."""
    try:
        with graph.batch(tenant) as batch:
            start = 0
            while start < len(calls):
                end = start
                while end < len(calls) and calls[end].kind == "identify":
                    end += 1
                if end > start:
                    requests = [
                        IdentifyRequest(c.token, c.client_id, c.email, c.traits)
                        for c in calls[start:end]
                    ]
                    batch.identify_many(tenant, requests, actor)
                    start = end
                else:
                    apply_identity(batch, tenant, calls[start], actor)
                    start += 1
    except Exception:
        for call in calls:
            apply_identity(graph, tenant, call, actor)


class SegmentBatch(msgspec.Struct, omit_defaults=True):
    """A Segment batch body; its messages stay raw until each is decoded alone."""

    batch: list[msgspec.Raw]
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    writeKey: str | None = None


_segment_batch_decoder = msgspec.json.Decoder(SegmentBatch)


def decode_segment_batch(raw: bytes) -> SegmentBatch:
    """The body of ``/v1/batch``, or ANALYTICS_001 saying what is wrong with it."""
    body = decode_body(_segment_batch_decoder, raw, "the body must be {'batch': [...]}")
    unique_keys(raw, _json_encoder.encode(body), outer_only=True)
    return body


class _EnvelopePeek(msgspec.Struct):
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    writeKey: str | None = None


_envelope_peek_decoder = msgspec.json.Decoder(_EnvelopePeek)


def peek_segment_batch(raw: bytes) -> tuple[bool, str | None, dict[str, Any] | None, str | None]:
    """Whether a Segment batch body looks well formed, and its sentAt, context and
    writeKey, without taking its messages apart (``decode_segment_batch`` does that, and
    says what is wrong with a bad body)."""
    try:
        body = _envelope_peek_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False, None, None, None
    return True, body.sentAt, body.context, body.writeKey
