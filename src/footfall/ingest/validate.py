"""The first step of the write path: a tracking call's body becomes a normalised row.

Validation follows the tracking API's contract exactly (limits, codes, normalisations), so
every route that takes events (tracking, batch, legacy GET) rejects the same input with the
same status, code and field.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import parse_qsl

import msgspec
from msgspec import UNSET, UnsetType

from footfall.errors import ApiError, invalid, malformed, too_large
from footfall.store.base import EventRow

log = logging.getLogger("footfall.ingest")

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "visitor",
        "popup_displayed",
        "popup_opened",
        "bot_open",
        "convo_started",
        "message_sent",
        "message_like",
        "message_dislike",
        "click_through",
        "added_to_cart",
        "go_to_cart",
        "purchase",
        "error",
        "form_viewed",
        "answer_shown",
        "ticket_submitted",
    }
)
FORM_EVENT_TYPES: frozenset[str] = frozenset({"form_viewed", "answer_shown", "ticket_submitted"})
"""The support form's lifecycle (the deflection report): a form seen, an answer the deflector
showed in it, a ticket filed through it. Their ``data`` keys ``form``, ``question`` and
``answer_id`` have rules (``form_fields``); the 13 types before them keep theirs."""
EVENT_ALIASES: Mapping[str, str] = {"tracktrans": "purchase"}

EUR_RATES: Mapping[str, float] = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CZK": 0.041,
    "PLN": 0.23,
    "RON": 0.20,
    "HUF": 0.0026,
    "UAH": 0.024,
    "CHF": 1.05,
    "DKK": 0.134,
    "SEK": 0.088,
    "NOK": 0.086,
    "BGN": 0.51,
    "HRK": 0.133,
    "RSD": 0.0085,
}

MAX_PAYLOAD_BYTES = 50_000
MAX_EVENT_CHARS = 50
MAX_ID_CHARS = 512
MAX_ITEMS = 50
MAX_ITEM_ID_CHARS = 128
MAX_CURRENCY_CHARS = 3
MAX_URL_CHARS = 2_048
MAX_USER_AGENT_CHARS = 1_024
MAX_QUANTITY = 1_000_000_000
MAX_AMOUNT = 1e12
"""Bounds that keep sums of quantities and amounts finite and inside the store's BIGINT."""
OPEN_WAYS = frozenset({"popup", "chat_button"})
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,128}")
CUSTOM_EVENT = "custom"
"""The ``event`` column of a custom event (a name outside the 13 types, kept in
``custom_event``): no report of the 13 types ever counts it."""
MAX_CUSTOM_EVENT_CHARS = 255
MAX_MESSAGE_ID_CHARS = 255
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""Control characters, line and paragraph separators, lone surrogates: never in a name."""
MAX_FORM_CHARS = 512
MAX_QUESTION_CHARS = 2_000
_FORM_FIELDS: Mapping[str, int] = {
    "form": MAX_FORM_CHARS,
    "question": MAX_QUESTION_CHARS,
    "answer_id": MAX_ID_CHARS,
}
CLIENT_TIME_PAST_US = 7 * 24 * 3600 * 1_000_000
CLIENT_TIME_FUTURE_US = 5 * 60 * 1_000_000

# Keys of ``data`` that become columns; everything else stays in the properties blob.
_COLUMN_KEYS = frozenset({"chatbot_id", "popup_version", "open_way", "orderNum", "items"})

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class RequestContext:
    """What the HTTP layer knows about a tracking call, besides its body (not frozen: a
    frozen dataclass's __init__ costs twice as much, on every request)."""

    site_id: str
    now_us: int
    user_agent: str | None = None
    page_url: str | None = None
    """Fallback page URL (the Referer) when the body names none."""
    message_scope: str = ""
    """Prefix of the message ids this call's events carry: the public tracking routes give
    ``PUBLIC_MESSAGE_SCOPE``, so a page that needs no key cannot claim an id beforehand that
    the site's own Segment sender (write key) or an import uses later."""


PUBLIC_MESSAGE_SCOPE = "web:"


def now_us() -> int:
    return time.time_ns() // 1_000


def decode_json(raw: bytes | str | msgspec.Raw, what: str = "body") -> Any:
    """Decode JSON or raise ANALYTICS_001 (also for a repeated key, see ``unique_keys``);
    size is checked by the caller on the raw bytes."""
    try:
        value = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise malformed(f"{what} is not valid JSON: {json_problem(exc, raw)}") from None
    except RecursionError:  # e.g. 40,000 '[' fit in the size cap
        raise malformed(f"{what} is nested too deeply") from None
    if isinstance(value, dict | list):
        unique_keys(raw, _encoder.encode(value), what)
    return value


# A \u escape of half a UTF-16 surrogate pair without its other half (after an even run of
# backslashes, so an escaped backslash followed by "ud800" is plain text).
_LONE_SURROGATE = re.compile(
    r"(?<!\\)(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2})(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\)(?:\\\\)*(?<!\\u[dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


def json_problem(exc: Exception, raw: bytes | str | msgspec.Raw) -> str:
    """What is wrong with a body the decoder refused, in words that name it: msgspec reports a
    lone surrogate as "Input data was truncated" (it looked for the pair's second half)."""
    if isinstance(exc, UnicodeDecodeError):  # its position is inside one string: find it
        return _utf8_problem(raw)
    said = str(exc)
    if "truncated" in said or "surrogate" in said or "hex escape" in said:
        text = raw if isinstance(raw, str) else bytes(raw).decode("latin-1")
        lone = _LONE_SURROGATE.search(text)
        if lone is not None:
            which = 1 if lone.group(1) else 2
            return (
                f"invalid \\u escape at offset {lone.start(which)}: lone surrogate "
                f"{lone.group(which)} (UTF-16 surrogates come in pairs: \\uD800-\\uDBFF "
                "then \\uDC00-\\uDFFF)"
            )
    if said == "Input data was truncated":
        return "it ends before the JSON value does (truncated)"
    return said


def _utf8_problem(raw: bytes | str | msgspec.Raw) -> str:
    if not isinstance(raw, str):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as whole:
            bad = whole.object[whole.start]
            return f"it is not valid UTF-8 (byte 0x{bad:02x} at offset {whole.start})"
    return "it is not valid UTF-8"


def unique_keys(
    raw: bytes | str | msgspec.Raw,
    reencoded: bytes,
    what: str = "body",
    *,
    outer_only: bool = False,
) -> None:
    """Raise ANALYTICS_001 if an object in ``raw`` repeats a key (two readers of such a body
    disagree on what it says: msgspec keeps the last, others the first); ``outer_only``
    looks at the outermost object alone (a batch's envelope: its events are checked one by
    one, so one event's fault stays its own).

    ``reencoded`` is what msgspec writes for the decoded value. Outside strings a colon
    follows every key, and msgspec writes a colon inside a string as it is; so when ``raw``
    holds no ``\\u003a`` escape, its colons number the keys it spells plus the colons in its
    strings, and the re-encoding's the keys kept plus the same string colons: equal counts
    prove no key was dropped. Only on a mismatch (rare: a dropped duplicate, an escaped
    colon, a field a typed decode skipped) is the body parsed again to find the repeat.
    """
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if data.count(b":") == reencoded.count(b":") and b"\\u003" not in data:
        return
    repeated = _repeated_key(data, outer_only)
    if repeated is not None:
        raise malformed(f"{what} repeats the key {_encoder.encode(repeated[:64]).decode()}")


def _repeated_key(data: bytes, outer_only: bool) -> str | None:
    """The first repeated key of a body msgspec already decoded, or None (exact, slower).

    The pairs hook runs for inner objects before the object holding them, so the outermost
    object's pairs come last."""
    repeats: list[str | None] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        repeat = None
        if len(found) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    repeat = key
                    break
                seen.add(key)
        repeats.append(repeat)
        return found

    try:
        json.loads(data, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):  # msgspec's reading decides validity
        return None
    if outer_only:
        return repeats[-1] if repeats else None
    return next((key for key in repeats if key is not None), None)


def check_size(raw: bytes | str | msgspec.Raw, limit: int = MAX_PAYLOAD_BYTES) -> None:
    size = len(raw.encode()) if isinstance(raw, str) else len(raw)
    if size > limit:
        raise too_large(limit)


class BatchEnvelope(msgspec.Struct, omit_defaults=True):
    """``{"events": [...], "site"?}``; each event stays raw until validated on its own."""

    events: list[msgspec.Raw]
    site: str | None = None


_batch_decoder = msgspec.json.Decoder(BatchEnvelope | list[msgspec.Raw])
_Body = TypeVar("_Body")


def decode_body(decoder: msgspec.json.Decoder[_Body], raw: bytes, shape: str) -> _Body:
    """A body decoded into its typed envelope, or ANALYTICS_001: not JSON, nested too
    deeply, or not of the ``shape`` the message names."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise malformed(f"{shape}: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise malformed(f"body is not valid JSON: {json_problem(exc, raw)}") from None
    except RecursionError:
        raise malformed("body is nested too deeply") from None


def parse_batch(raw: bytes) -> tuple[list[msgspec.Raw], str | None]:
    """A batch body: its events (raw) and the site it names; ANALYTICS_001 otherwise."""
    body = decode_body(_batch_decoder, raw, "batch must be {'events': [...]} or an array")
    if isinstance(body, list):
        return body, None
    # The events are written back as they came: this checks the envelope's own keys.
    unique_keys(raw, _encoder.encode(body), outer_only=True)
    return body.events, body.site


class _SitePeek(msgspec.Struct):
    site: str | None = None


_site_peek_decoder = msgspec.json.Decoder(_SitePeek | list[msgspec.Raw])


def peek_batch_site(raw: bytes) -> tuple[bool, str | None]:
    """Whether a batch body looks well formed, and the site it names, without taking its
    events apart (``parse_batch`` does that, and says what is wrong with a bad body)."""
    try:
        body = _site_peek_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False, None
    return True, None if isinstance(body, list) else body.site


def decode_items(
    raw: bytes,
    items: Sequence[bytes | msgspec.Raw],
    outer: bytes,
    limit: int = MAX_PAYLOAD_BYTES,
) -> list[Any]:
    """Each item of a batch decoded, or the ApiError it alone gets (over ``limit`` bytes,
    not JSON, a repeated key), as a single POST of it would.

    One proof of unique keys serves every item (see ``unique_keys``): the body's colons
    less those of ``outer`` (the envelope re-encoded without its items) against the colons
    of all decoded items re-encoded at once. Only when that fails is each item checked
    alone, to find the ones at fault."""
    values: list[Any] = []
    decoded: list[Any] = []
    for item in items:
        if len(item) > limit:
            values.append(too_large(limit))
            continue
        try:
            value = _decoder.decode(item)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            values.append(malformed(f"body is not valid JSON: {json_problem(exc, item)}"))
            continue
        except RecursionError:
            values.append(malformed("body is nested too deeply"))
            continue
        values.append(value)
        decoded.append(value)
    if (
        len(decoded) == len(items)
        and raw.count(b":") - outer.count(b":") == _encoder.encode(decoded).count(b":")
        and b"\\u003" not in raw
    ):
        return values
    for index, (item, value) in enumerate(zip(items, values, strict=True)):
        if isinstance(value, dict | list):
            try:
                unique_keys(item, _encoder.encode(value))
            except ApiError as error:
                values[index] = error
    return values


def parse_track_body(raw: bytes, ctx: RequestContext) -> EventRow:
    """Bytes of one POSTed event to a row; raises ApiError with the documented code."""
    check_size(raw)
    return validate_event(decode_json(raw), ctx)


def strict_query(query_string: bytes) -> dict[str, str]:
    """A query string's parameters (the last of a repeated name wins), refusing with
    ANALYTICS_001 any that is not UTF-8 once percent-decoded, as the POST routes refuse such
    a body (a lenient reader would turn the bytes into U+FFFD and store that)."""
    try:
        text = query_string.decode()
        return dict(parse_qsl(text, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:
        raise malformed("the query string is not valid UTF-8 once percent-decoded") from None


def parse_legacy_query(params: Mapping[str, str], ctx: RequestContext) -> EventRow:
    """The legacy GET form: ``e`` event, ``u`` token, ``d`` URL-encoded JSON data."""
    body: dict[str, Any] = {}
    if "e" in params:
        body["event"] = params["e"]
    if "u" in params:
        body["token"] = params["u"]
    raw_data = params.get("d")
    if raw_data is not None and raw_data != "":
        check_size(raw_data)
        body["data"] = decode_json(raw_data, "d")
    if "ab_test" in params:
        flag = params["ab_test"].strip(" \t\r\n").lower()
        if flag not in ("true", "false", "1", "0"):
            raise invalid("ab_test", "must be true or false")
        body["ab_test"] = flag in ("true", "1")
    if "url" in params:
        body["url"] = params["url"]
    check_size(_encoder.encode(body))
    return validate_event(body, ctx)


def _string(value: Any, field: str, limit: int, coerce_numbers: bool = False) -> str:
    """Identifiers may arrive as numbers from some integrations; they are kept as text."""
    if isinstance(value, str):
        text = value
    elif coerce_numbers and isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        raise invalid(field, "must be a string")
    if len(text) > limit:
        raise invalid(field, f"at most {limit} characters")
    return text


def amount(value: Any, field: str) -> float:
    """An amount (value, price, revenue) is a JSON number from 0 to ``MAX_AMOUNT``: text
    such as "12" is refused, not guessed at, and a negative one would lower revenue."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, "must be a JSON number (not text)")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise invalid(field, "must be a finite number") from None
    if not math.isfinite(number):
        raise invalid(field, "must be a finite number")
    if number < 0:
        raise invalid(field, "must be at least 0")
    if number > MAX_AMOUNT:
        raise invalid(field, f"must be at most {MAX_AMOUNT:.0e}")
    return number


def printable(text: str, field: str) -> str:
    """``text``, or a 422 naming ``field`` if it holds a control character, line separator
    or lone surrogate: names and ids are shown to operators (the CLI, the dashboard), where
    such characters could rewrite the terminal or the page."""
    if _UNPRINTABLE.search(text):
        raise invalid(field, "must not contain control characters")
    return text


def form_fields(data: Mapping[str, Any], event: str) -> None:
    """A form event's ``form`` (form id or page path), ``question`` and ``answer_id``, where
    sent, are text of bounded length (an answer id may come as a number, like chatbot ids):
    the deflection report groups by them and the dashboard shows them. Other keys, and
    these keys on other types, are kept as sent."""
    if event not in FORM_EVENT_TYPES:
        return
    for key, limit in _FORM_FIELDS.items():
        value = data.get(key)
        if value is not None:
            text = _string(value, f"data.{key}", limit, key == "answer_id")
            if key != "question":
                printable(text, f"data.{key}")


def custom_event_name(value: Any, field: str) -> str:
    """A custom event's name: 1-255 characters once trimmed, none of them a control
    character, line separator or lone surrogate; kept as sent otherwise (case too)."""
    if value is None:
        raise invalid(field, "required")
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if len(value) > MAX_CUSTOM_EVENT_CHARS:  # as sent, so the documented maxLength holds
        raise invalid(field, f"at most {MAX_CUSTOM_EVENT_CHARS} characters")
    name = value.strip()
    if not name:
        raise invalid(field, "must not be empty")
    return printable(name, field)


def message_id(value: Any, field: str = "messageId") -> str | None:
    """A client's id for one message: a repeat of it on the same site is stored once."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if not value or len(value) > MAX_MESSAGE_ID_CHARS:
        raise invalid(field, f"must be 1-{MAX_MESSAGE_ID_CHARS} characters")
    return value


def _scoped_message_id(value: Any, ctx: RequestContext) -> str | None:
    checked = message_id(value)
    return None if checked is None else ctx.message_scope + checked


def _currency(value: Any, field: str) -> str:
    code = _string(value, field, MAX_CURRENCY_CHARS).strip().upper()
    if not code:
        raise invalid(field, "must not be empty")
    return code


def validate_token(value: Any, field: str = "token") -> str:
    if value is None:
        raise invalid(field, "required")
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    if TOKEN_PATTERN.fullmatch(value) is None:
        raise invalid(field, "must be 8-128 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def flag(body: Mapping[str, Any], field: str) -> bool:
    """An optional JSON boolean, false when absent; anything but true/false is a 422."""
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise invalid(field, "must be true or false")
    return value


_AB_GROUPS: Mapping[str, str] = {"0": "control", "1": "test"}
_ABSENT: Any = object()


def ab_group(token: str, enabled: bool) -> str | None:
    """The token's last character picks the group: 0 control, 1 test, else none."""
    if not enabled:
        return None
    return _AB_GROUPS.get(token[-1])


@dataclass(slots=True)
class _Items:
    items: list[dict[str, Any]]
    total_eur: float | None
    unknown_currencies: list[str]


def _items(raw: Any, default_currency: str) -> _Items:
    if not isinstance(raw, list):
        raise invalid("data.items", "must be an array")
    if len(raw) > MAX_ITEMS:
        raise invalid("data.items", f"at most {MAX_ITEMS} items")
    items: list[dict[str, Any]] = []
    total = 0.0
    unknown: list[str] = []
    for index, item in enumerate(raw):
        where = f"data.items[{index}]"
        if not isinstance(item, dict):
            raise invalid(where, "must be an object")
        out = {k: v for k, v in item.items() if k not in ("id", "item_id", "price", "value")}
        # Both spellings are checked when sent (the schema bounds both); the newer one wins.
        ids = [
            _string(item[key], f"{where}.{key}", MAX_ITEM_ID_CHARS, True)
            for key in ("item_id", "id")
            if item.get(key) is not None
        ]
        out["item_id"] = ids[0] if ids else None
        values = [
            amount(item[key], f"{where}.{key}")
            for key in ("value", "price")
            if item.get(key) is not None
        ]
        value = values[0] if values else None
        out["value"] = value
        quantity = item.get("quantity", 1)
        if isinstance(quantity, float) and quantity.is_integer():
            quantity = int(quantity)
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise invalid(f"{where}.quantity", "must be an integer")
        if quantity < 1:
            raise invalid(f"{where}.quantity", "must be at least 1")
        if quantity > MAX_QUANTITY:
            raise invalid(f"{where}.quantity", f"at most {MAX_QUANTITY:,}")
        out["quantity"] = quantity
        currency = (
            _currency(item["currency"], f"{where}.currency")
            if item.get("currency") is not None
            else default_currency
        )
        out["currency"] = currency
        rate = EUR_RATES.get(currency)
        if rate is None:
            unknown.append(currency)
        elif value is not None:
            total += value * quantity * rate
        items.append(out)
    return _Items(items, None if unknown else round(total, 6), unknown)


DataColumns = tuple[str | None, str | None, str | None, str | None, float | None, str | None]
"""What an event's ``data`` gives the columns: chatbot_id, popup_version, orderNum (the
caller keeps it for purchases only), open_way, total_value_base and the items' JSON."""


def data_columns(data: dict[str, Any], event: str) -> DataColumns:
    """The column values of an event's ``data`` (the tracking API's rules for them); the
    unknown-currency warning is logged last, after every check that may refuse."""
    chatbot_id = data.get("chatbot_id")
    if chatbot_id is not None:
        chatbot_id = _string(chatbot_id, "data.chatbot_id", MAX_ID_CHARS, True)
    popup_version = data.get("popup_version")
    if popup_version is not None:
        popup_version = _string(popup_version, "data.popup_version", MAX_ID_CHARS, True)
    order_num = data.get("orderNum")
    if order_num is not None:
        order_num = _string(order_num, "data.orderNum", MAX_ID_CHARS, True)
    open_way = data.get("open_way")
    # A type check first: an object or array is unhashable and would fail the set lookup.
    if open_way is not None and (not isinstance(open_way, str) or open_way not in OPEN_WAYS):
        raise invalid("data.open_way", "must be 'popup' or 'chat_button'")

    currency = "EUR"
    if data.get("currency") is not None:
        currency = _currency(data["currency"], "data.currency")

    # Checked whenever it is sent (the OpenAPI schema bounds it), even when items decide.
    value = None if data.get("value") is None else amount(data["value"], "data.value")
    items_json: str | None = None
    total: float | None = None
    if data.get("items") is not None:
        parsed = _items(data["items"], currency)
        items_json = _encoder.encode(parsed.items).decode()
        total = parsed.total_eur
        if parsed.unknown_currencies:
            log.warning(
                "unknown currency, total_value_base left empty",
                extra={"currencies": sorted(set(parsed.unknown_currencies)), "event": event},
            )
    elif value is not None:
        rate = EUR_RATES.get(currency)
        if rate is None:
            log.warning(
                "unknown currency, total_value_base left empty",
                extra={"currencies": [currency], "event": event},
            )
        else:
            total = round(value * rate, 6)
    return chatbot_id, popup_version, order_num, open_way, total, items_json


def validate_event(
    body: Any,
    ctx: RequestContext,
    *,
    custom_name: str | None = None,
    id_kind: str = "token",
) -> EventRow:
    """A decoded event object to a row, applying every rule of the tracking API.

    ``custom_name`` (already checked by ``custom_event_name``) makes it a custom event
    whatever ``event`` says; ``id_kind`` other than ``token`` takes ``token`` as that kind
    of identifier, already normalised by the caller (the Segment mapping's ``userId``)."""
    if not isinstance(body, dict):
        raise malformed("event payload must be a JSON object")

    event: Any
    if custom_name is not None:
        event = CUSTOM_EVENT
    else:
        event = body.get("event")
        if event is None:
            raise invalid("event", "required")
        if not isinstance(event, str):
            raise invalid("event", "must be a string")
        if len(event) > MAX_EVENT_CHARS:
            raise invalid("event", f"at most {MAX_EVENT_CHARS} characters")
        event = EVENT_ALIASES.get(event, event)
        if event not in EVENT_TYPES:
            raise invalid("event", f"unknown event type '{event}'")

    token = validate_token(body.get("token")) if id_kind == "token" else body["token"]

    ab_test = body.get("ab_test", False)
    if ab_test is None:
        ab_test = False
    if not isinstance(ab_test, bool):
        raise invalid("ab_test", "must be true or false")
    ephemeral = flag(body, "ephemeral")

    data = body.get("data", _ABSENT)
    if data is _ABSENT:
        data = {}
    elif not isinstance(data, dict):  # null too: data is an object or absent
        raise malformed("data must be a JSON object (or left out)")

    form_fields(data, event)
    chatbot_id, popup_version, order_num, open_way, total, items_json = data_columns(data, event)

    url = body.get("url")
    if url is not None and not isinstance(url, str):
        raise invalid("url", "must be a string")
    url = url or ctx.page_url
    user_agent = ctx.user_agent

    ts_us = ctx.now_us
    client_ts = body.get("ts")
    if client_ts is not None:
        if isinstance(client_ts, bool) or not isinstance(client_ts, int | float):
            raise invalid("ts", "must be milliseconds since the epoch")
        candidate = client_ts * 1000  # compared before int(): 1e308 * 1000 is infinite
        # Queued events keep their own time; clocks far off are not trusted.
        if ctx.now_us - CLIENT_TIME_PAST_US <= candidate <= ctx.now_us + CLIENT_TIME_FUTURE_US:
            ts_us = min(int(candidate), ctx.now_us)

    rest = {k: v for k, v in data.items() if k not in _COLUMN_KEYS}
    return EventRow(
        site_id=ctx.site_id,
        ts_us=ts_us,
        received_us=ctx.now_us,
        event=event,
        token=token,
        ephemeral=ephemeral,
        ab_group=ab_group(token, ab_test),
        chatbot_id=chatbot_id,
        popup_version=popup_version,
        open_way=open_way,
        order_num=order_num if event == "purchase" else None,
        total_value_base=total,
        items=items_json,
        url=url[:MAX_URL_CHARS] if url else None,
        user_agent=user_agent[:MAX_USER_AGENT_CHARS] if user_agent else None,
        data=_encoder.encode(rest).decode() if rest else "{}",
        id_kind=id_kind,
        custom_event=custom_name,
        message_id=_scoped_message_id(body.get("messageId"), ctx),
    )


# ----------------------------------------------------------------------------- fast path
#
# A batch's events mostly have one common, valid shape. msgspec's C decoder checks that
# shape (types, the 13 names, lengths) while it decodes, into a Struct; the few rules left
# run in lean Python below. Whatever the fast path refuses, or cannot prove, goes through
# ``decode_items`` and ``validate_event`` as before, so every decision, error code, message
# and field stays theirs: the fast path only ever accepts what they accept, as they would
# store it (tests/test_fastpath.py compares the two on generated events).

EventName = Literal[
    "visitor",
    "popup_displayed",
    "popup_opened",
    "bot_open",
    "convo_started",
    "message_sent",
    "message_like",
    "message_dislike",
    "click_through",
    "added_to_cart",
    "go_to_cart",
    "purchase",
    "error",
    "form_viewed",
    "answer_shown",
    "ticket_submitted",
    "tracktrans",
]
if set(get_args(EventName)) != EVENT_TYPES | EVENT_ALIASES.keys():  # pragma: no cover
    raise RuntimeError("EventName must list the event types and their aliases")


class FastEvent(msgspec.Struct, gc=False):
    """A tracking event of the common valid shape. UNSET marks a key that was not sent, so
    re-encoding writes exactly the keys the client sent (the repeated-key proof counts
    them); a key this Struct does not know makes the proof fail, and the exact path runs."""

    event: EventName
    token: Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
    """Its characters are checked for a whole batch at once (``fast_rows``)."""
    ab_test: bool | UnsetType | None = UNSET
    ephemeral: bool | UnsetType = UNSET
    data: dict[str, Any] | UnsetType = UNSET
    url: str | UnsetType | None = UNSET
    ts: int | float | UnsetType | None = UNSET
    messageId: str | int | UnsetType | None = UNSET
    site: str | UnsetType | None = UNSET


fast_event_decoder = msgspec.json.Decoder(FastEvent)
_RULE_KEYS = frozenset(
    {"chatbot_id", "popup_version", "orderNum", "open_way", "currency", "value", "items"}
)
"""Keys of ``data`` with rules (``data_columns``); data without them is stored as sent."""
_NO_COLUMNS: DataColumns = (None, None, None, None, None, None)
_TOKENS = re.compile(r"(?:[A-Za-z0-9_-]+\n)*")
"""Tokens (already 8-128 characters), each followed by a line feed."""


def fast_decode(
    items: Sequence[bytes | msgspec.Raw], decoder: msgspec.json.Decoder[Any], limit: int
) -> list[Any]:
    """Each item decoded by ``decoder`` (a typed decoder of a common valid shape), or None
    where it refuses the item, the item is over ``limit`` bytes, or its keys cannot be
    proven unique (``unique_keys``'s colon count: one for all items, then item by item)."""
    decode = decoder.decode
    values: list[Any] = []
    if max(map(len, items), default=0) <= limit:
        try:  # all at once, the common case; else item by item
            values = list(map(decode, items))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            values = []
    if len(values) != len(items):
        values = []
        for item in items:
            if len(item) > limit:
                values.append(None)
                continue
            try:
                values.append(decode(item))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                values.append(None)
    if None in values:
        decoded = [value for value in values if value is not None]
        if not decoded:
            return values
        spelled = b"".join(
            [item for item, value in zip(items, values, strict=True) if value is not None]
        )
    else:
        decoded, spelled = values, b"".join(items)
    if b"\\u003" not in spelled and spelled.count(b":") == _encoder.encode(decoded).count(b":"):
        return values
    for index, (item, value) in enumerate(zip(items, values, strict=True)):
        if value is not None:
            data = bytes(item)
            if b"\\u003" in data or data.count(b":") != _encoder.encode(value).count(b":"):
                values[index] = None
    return values


def fast_rows(events: Sequence[FastEvent | None], ctx: RequestContext) -> list[EventRow | None]:
    """The rows ``validate_event`` makes of fast-decoded events, or None where an event
    needs the exact path (not decoded, naming another site, or breaking a rule checked
    here): that path then says why. One loop, no call per event but the row's own: this
    runs for every event of every batch."""
    tokens = [event.token for event in events if event is not None]
    joined = "\n".join(tokens) + "\n"
    # One match for all tokens; the count rules out a token holding a line feed itself.
    checked = _TOKENS.fullmatch(joined) is not None and joined.count("\n") == len(tokens)
    agent = ctx.user_agent[:MAX_USER_AGENT_CHARS] if ctx.user_agent else None
    site_id = ctx.site_id
    now = ctx.now_us
    page_url = ctx.page_url
    scope = ctx.message_scope
    earliest, latest = now - CLIENT_TIME_PAST_US, now + CLIENT_TIME_FUTURE_US
    rows: list[EventRow | None] = []
    append = rows.append
    for event in events:
        if event is None or not (checked or TOKEN_PATTERN.fullmatch(event.token)):
            append(None)
            continue
        site = event.site
        if site is not UNSET and site is not None and site != site_id:
            append(None)
            continue
        sent_id = event.messageId
        if sent_id is UNSET:
            sent_id = None
        elif sent_id is not None:
            if isinstance(sent_id, int):
                sent_id = str(sent_id)
            if not sent_id or len(sent_id) > MAX_MESSAGE_ID_CHARS:
                append(None)
                continue
            sent_id = scope + sent_id
        name: str = event.event
        if name == "tracktrans":
            name = EVENT_ALIASES[name]
        ts_us = now
        client_ts = event.ts
        if client_ts is not UNSET and client_ts is not None:
            candidate = client_ts * 1000  # as validate_event: compared before int()
            if earliest <= candidate <= latest:
                ts_us = min(int(candidate), now)
        url = event.url
        url = (None if url is UNSET else url) or page_url
        token = event.token
        data = event.data
        try:
            append(
                row_with_data(
                    site_id,
                    ts_us,
                    now,
                    name,
                    token,
                    {} if data is UNSET else data,
                    url,
                    agent,
                    event.ephemeral is True,
                    _AB_GROUPS.get(token[-1]) if event.ab_test is True else None,
                    "token",
                    None,
                    sent_id,
                )
            )
        except ApiError:
            append(None)
    return rows


def row_with_data(
    site_id: str,
    ts_us: int,
    received_us: int,
    event: str,
    token: str,
    data: dict[str, Any],
    url: str | None,
    user_agent: str | None,
    ephemeral: bool = False,
    ab_group: str | None = None,
    id_kind: str = "token",
    custom_event: str | None = None,
    message_id: str | None = None,
) -> EventRow:
    """The row ``validate_event`` makes once everything but ``data`` is checked: ``data``'s
    rules (ApiError as there; an unknown currency logged last), its rest as JSON, the URL
    cut to length (``user_agent`` comes cut). Fast paths only: the checks before are theirs."""
    chatbot_id = popup_version = order_num = open_way = items_json = None
    total = None
    if event in FORM_EVENT_TYPES:
        form_fields(data, event)
    if not data:
        rest = "{}"
    else:
        if _RULE_KEYS.isdisjoint(data):
            pass
        elif _HEAVY_KEYS.isdisjoint(data) and _plain_ids(data):
            data = data.copy()  # its only column keys: chatbot_id, popup_version
            chatbot_id = data.pop("chatbot_id", None)
            popup_version = data.pop("popup_version", None)
        else:
            columns = data_columns(data, event)
            chatbot_id, popup_version, order_num, open_way, total, items_json = columns
            if not _COLUMN_KEYS.isdisjoint(data):
                data = {k: v for k, v in data.items() if k not in _COLUMN_KEYS}
        rest = _encoder.encode(data).decode() if data else "{}"
    # Positional: a dataclass's keyword call costs a microsecond more (EventRow's order).
    return EventRow(
        site_id,
        ts_us,
        received_us,
        event,
        token,
        ephemeral,
        ab_group,
        chatbot_id,
        popup_version,
        open_way,
        order_num if event == "purchase" else None,
        total,
        items_json,
        url[:MAX_URL_CHARS] if url else None,
        user_agent,
        rest,
        id_kind,
        custom_event,
        message_id,
    )


_HEAVY_KEYS = _RULE_KEYS - {"chatbot_id", "popup_version"}


def _plain_ids(data: dict[str, Any]) -> bool:
    """Whether ``data``'s chatbot_id and popup_version, where sent, are strings of allowed
    length (kept as they are; ``data_columns`` coerces and refuses the rest)."""
    chatbot_id = data.get("chatbot_id")
    popup_version = data.get("popup_version")
    return (
        chatbot_id is None or (type(chatbot_id) is str and len(chatbot_id) <= MAX_ID_CHARS)
    ) and (
        popup_version is None or (type(popup_version) is str and len(popup_version) <= MAX_ID_CHARS)
    )
