"""Realistic synthetic traffic for trying Footfall and for benchmarks at scale.

Visitors arrive on a shop with a chat widget and on a help site with a support form (one
tenant, so identities merge across both). Each visit walks down the widget funnel with
probabilities that depend on the popup version and the A/B group (the test group really
converts better), asks questions drawn from a pool written in many spellings, leaves
feedback, fills carts and buys in several currencies, sometimes re-sending an order. A share
of visitors identify themselves (email, client id) on both sites, so their tokens merge into
one person. Help-site visits use the support form with its deflector: the form is viewed,
a question typed, an answer shown (never to the holdout's control group), liked or not,
and a ticket filed in the visit, days later (deferred) or not at all (deflected). Some visits
also send custom events (sign-ups, coupons, articles read), drawn from a generator of their
own so the rest of the traffic is the same with or without them. Everything
is generated column-wise with numpy and bulk-loaded through the
store in large Arrow batches, so ten million events take about a minute.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from footfall.ingest.segment import iso_time
from footfall.ingest.validate import CUSTOM_EVENT, EUR_RATES
from footfall.store.base import EVENT_COLUMNS, Store

HELP_SITE = "help"
EPOCH = datetime(1970, 1, 1)
QUESTIONS = (
    "How do I reset my password?",
    "Where is my order?",
    "Can I return an item?",
    "Do you ship to Austria?",
    "How long does delivery take?",
    "What payment methods do you accept?",
    "Is this product in stock?",
    "How do I change my delivery address?",
    "Can I cancel my order?",
    "Do you have a discount code?",
    "What size should I choose?",
    "How do I contact support?",
    "Is there a warranty?",
    "Why was my card declined?",
    "How do I track my parcel?",
    "Can I pay in instalments?",
)
# The same question typed by different people: case, spacing and trailing punctuation vary.
_SPELLINGS = (
    lambda q: q,
    lambda q: q.lower(),
    lambda q: q.rstrip("?"),
    lambda q: q.upper(),
    lambda q: "  " + q.replace(" ", "  ") + "??",
    lambda q: q.lower().rstrip("?") + "!",
)
ITEMS = tuple(
    (f"SKU-{i:03d}", price)
    for i, price in enumerate((9.9, 19.5, 24.0, 49.99, 89.0, 120.0, 4.5, 15.0), 1)
)
CHATBOTS = ("support-bot", "sales-bot")
CURRENCIES_SHOP = ("EUR", "EUR", "EUR", "USD", "GBP", "CZK", "PLN", "CHF")
ERRORS = ("widget failed to load", "network timeout", "message could not be sent")
CUSTOM_EVENTS: tuple[tuple[str, str, float, int, tuple[dict[str, Any], ...]], ...] = (
    ("shop", "Wishlist Added", 0.08, 120, ({"item_id": "SKU-003"}, {"item_id": "SKU-005"})),
    ("shop", "Newsletter Subscribed", 0.05, 240, ({"source": "footer"}, {"source": "popup"})),
    ("shop", "Coupon Applied", 0.04, 280, ({"code": "WELCOME10"}, {"code": "SPRING"})),
    ("shop", "Signed Up", 0.03, 320, ({"plan": "free"}, {"plan": "plus"})),
    ("help", "Article Read", 0.3, 20, tuple({"article": f"kb-{n}"} for n in range(8))),
    ("help", "Callback Requested", 0.02, 90, ({},)),
)
"""(site kind, name, share of that site's visits, seconds into the visit, properties to
pick from) of the demo's custom events."""


@dataclass(frozen=True, slots=True)
class DemoPlan:
    events: int = 100_000
    tokens: int | None = None
    """Distinct anonymous tokens; by default one per ten events."""
    merged_share: float = 0.2
    """Share of tokens that end up in a person with an email (two tokens and an email)."""
    days: int = 60
    site: str = "default"
    seed: int = 7
    end: datetime | None = None

    @property
    def token_count(self) -> int:
        return self.tokens or max(10, self.events // 10)


@dataclass(slots=True)
class DemoResult:
    events: int
    tokens: int
    persons: int
    orders: int
    start: datetime
    end: datetime
    custom: int = 0
    """Custom events, written besides ``events`` (the 13 types)."""


def _tokens(rng: np.random.Generator, count: int) -> list[str]:
    """Base64url ids like the tracker's; the last character carries the A/B group."""
    alphabet = np.frombuffer(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype="S1"
    )
    body = alphabet[rng.integers(0, 64, size=(count, 21))]
    last = np.where(rng.random(count) < 0.5, b"0", b"1").astype("S1")
    joined = np.concatenate([body, last[:, None]], axis=1).view("S22").ravel()
    return [t.decode() for t in joined]


class _Chunk:
    """The events of one slice of visitors, column by column."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {c: [] for c in EVENT_COLUMNS}

    def add(self, **columns: np.ndarray) -> None:
        size = len(columns["ts"])
        for name in EVENT_COLUMNS:
            value = columns.get(name)
            if value is None:
                value = np.full(size, None, dtype=object)
            self.parts[name].append(value)

    def table(self) -> pa.Table:
        arrays = {}
        for name in EVENT_COLUMNS:
            merged = np.concatenate(self.parts[name]) if self.parts[name] else np.array([])
            arrays[name] = merged
        order = np.argsort(arrays["ts"], kind="stable")
        types = {
            "ts": pa.timestamp("us"),
            "received_at": pa.timestamp("us"),
            "ephemeral": pa.bool_(),
            "duplicate": pa.bool_(),
            "total_value_base": pa.float64(),
        }
        return pa.table(
            {
                # from_pandas: a NaN total (unknown currency) is stored as NULL, like ingest.
                name: pa.array(
                    arrays[name][order], type=types.get(name, pa.string()), from_pandas=True
                )
                for name in EVENT_COLUMNS
            }
        )


def generate(
    store: Store, plan: DemoPlan, progress: Callable[[int], None] | None = None
) -> DemoResult:
    """Write exactly ``plan.events`` events from ``plan.token_count`` tokens into ``store``.

    Visits per token adapt after every slice so the events come out right with every token
    used; if the tokens run out first, returning visitors make up the rest.
    """
    rng = np.random.default_rng(plan.seed)
    end = (plan.end or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)
    start = end - timedelta(days=plan.days)
    _ensure_sites(store, plan.site)
    tokens_total = plan.token_count
    written = orders = persons = tokens_used = 0
    chunk_tokens = max(1000, min(50_000, tokens_total // 20 or 1000))
    numbering = _OrderNumbers(f"ORD-{secrets.token_hex(3).upper()}")
    start_us = (start - EPOCH) // timedelta(microseconds=1)
    span_us = plan.days * 86_400 * 1_000_000
    seen: list[np.ndarray] = []
    events_per_visit = 3.2
    # Custom events come from their own generator: the numpy one draws as it did before.
    custom_rng = random.Random(plan.seed)  # noqa: S311 - demo traffic, not secrets
    custom = 0
    while written < plan.events:
        left = plan.events - written
        if tokens_used < tokens_total:
            count = min(chunk_tokens, tokens_total - tokens_used)
            tokens = np.array(_tokens(rng, count), dtype=object)
            tokens_used += count
            seen.append(tokens)
            fresh = True
            per_token = left / (tokens_total - tokens_used + count)
        else:
            pool = np.concatenate(seen)
            count = min(chunk_tokens, max(1, int(left / events_per_visit)))
            tokens = pool[rng.integers(0, len(pool), count)]
            fresh = False
            per_token = events_per_visit
        visits = 1 + rng.poisson(max(0.0, per_token / events_per_visit - 1), count)
        table = _visits(rng, plan, tokens, visits, start_us, span_us, numbering)
        events_per_visit = max(1.0, table.num_rows / int(visits.sum()))
        if table.num_rows > left:
            table = table.slice(0, left)
        store.load_arrow("events", table)
        extra = _custom_events(custom_rng, table, start_us + span_us)
        if extra is not None:
            store.load_arrow("events", extra)
            custom += extra.num_rows
        orders += _load_orders(store, table)
        if fresh:
            persons += _identities(store, rng, plan, tokens)
        written += table.num_rows
        if progress:
            progress(table.num_rows)
    return DemoResult(written, tokens_used, persons, orders, start, end, custom)


def _custom_events(rng: random.Random, table: pa.Table, end_us: int) -> pa.Table | None:
    """Custom events of the visits in ``table`` (one per ``visitor`` event), a few seconds
    or minutes into the visit, by ``CUSTOM_EVENTS``; None when there are none (an empty
    chunk has no column types)."""
    visits = table.filter(pc.equal(table["event"], "visitor"))
    sites = visits["site_id"].to_pylist()
    times = visits["ts"].cast(pa.int64()).to_pylist()
    rows: list[int] = []
    names: list[str] = []
    at: list[int] = []
    data: list[str] = []
    for row, (site, ts) in enumerate(zip(sites, times, strict=True)):
        kind = "help" if site == HELP_SITE else "shop"
        for on, name, share, after_s, choices in CUSTOM_EVENTS:
            if on == kind and rng.random() < share:
                rows.append(row)
                names.append(name)
                at.append(min(end_us, ts + (after_s + rng.randrange(60)) * 1_000_000))
                data.append(json.dumps(rng.choice(choices)))
    if not rows:
        return None
    chunk = _Chunk()
    picked = np.array(rows)
    size = len(rows)
    ts_us = np.array(at, dtype=np.int64)

    def column(name: str) -> np.ndarray:
        values: np.ndarray = np.array(visits[name].to_pylist(), dtype=object)[picked]
        return values

    chunk.add(
        site_id=column("site_id"),
        token=column("token"),
        ab_group=column("ab_group"),
        url=column("url"),
        ts=ts_us,
        received_at=ts_us,
        event=np.full(size, CUSTOM_EVENT, dtype=object),
        custom_event=np.array(names, dtype=object),
        ephemeral=np.zeros(size, dtype=bool),
        duplicate=np.zeros(size, dtype=bool),
        data=np.array(data, dtype=object),
        id_kind=np.full(size, "token", dtype=object),
    )
    return chunk.table()


class _OrderNumbers:
    """Order numbers unique to this run, so demo data can be added to a store twice."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.issued = 0

    def take(self, count: int) -> np.ndarray:
        first = self.issued + 1
        self.issued += count
        return np.array(
            [f"{self.prefix}-{n:08d}" for n in range(first, first + count)], dtype=object
        )


def _ensure_sites(store: Store, site: str) -> None:
    existing = store.get_site(site)
    if existing is None:
        existing = store.upsert_site(site, "Demo shop", ["*"])
    if store.get_site(HELP_SITE) is None:
        store.upsert_site(HELP_SITE, "Help centre", ["*"], existing.scope)


def _visits(
    rng: np.random.Generator,
    plan: DemoPlan,
    tokens: np.ndarray,
    visits_per_token: np.ndarray,
    start_us: int,
    span_us: int,
    numbering: _OrderNumbers,
) -> pa.Table:
    """The events of every visit of ``tokens``, ordered by time."""
    chunk = _Chunk()
    n_tokens = len(tokens)
    owner = np.repeat(np.arange(n_tokens), visits_per_token)
    v = len(owner)
    # A visitor's visits follow each other at exponential gaps of four days on average.
    starts = np.cumsum(visits_per_token) - visits_per_token
    nth = np.arange(v) - np.repeat(starts, visits_per_token)
    gaps = rng.exponential(4 * 86_400e6, v).astype(np.int64)
    gaps[nth == 0] = 0
    elapsed = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts] - gaps[starts], visits_per_token)
    offset = rng.integers(0, span_us, n_tokens)[owner] + elapsed
    # Returns that would fall after the end of the range never happened (yet).
    kept = offset < span_us
    owner, offset = owner[kept], offset[kept]
    v = len(owner)
    when = start_us + offset
    on_help = (rng.random(n_tokens) < 0.2)[owner]
    in_test = rng.random(n_tokens) < 0.6
    last = np.array([t[-1] for t in tokens], dtype=object)
    group = np.where(last == "0", "control", "test").astype(object)
    group[~in_test] = None
    group = group[owner]
    visit = {
        "site_id": np.where(on_help, HELP_SITE, plan.site).astype(object),
        "token": tokens[owner],
        "ab_group": group,
        "chatbot_id": np.array(CHATBOTS, dtype=object)[rng.integers(0, 2, n_tokens)][owner],
        "url": np.where(on_help, "https://help.demo.test/contact", "https://shop.demo.test/"),
    }

    def emit(rows: np.ndarray, event: str, after_s: np.ndarray | int, **extra: np.ndarray) -> None:
        """Events for the visits ``rows`` (indices, may repeat), ``after_s`` into the visit."""
        if not len(rows):
            return
        ts = when[rows] + (np.asarray(after_s) * 1_000_000).astype(np.int64)
        size = len(rows)
        columns = {name: values[rows] for name, values in visit.items()}
        if event == "visitor":
            columns["chatbot_id"] = np.full(size, None, dtype=object)
        columns.update(
            ts=ts,
            received_at=ts,
            event=np.full(size, event, dtype=object),
            ephemeral=np.zeros(size, dtype=bool),
            duplicate=np.zeros(size, dtype=bool),
            data=np.full(size, "{}", dtype=object),
            id_kind=np.full(size, "token", dtype=object),
        )
        columns.update(extra)
        chunk.add(**columns)

    def where(mask: np.ndarray) -> np.ndarray:
        return np.nonzero(mask)[0]

    emit(np.arange(v), "visitor", 0)
    _form_sessions(rng, emit, where(on_help), group, when, start_us + span_us)
    on_shop = ~on_help
    version = np.where(rng.random(v) < 0.5, "v1", "v2").astype(object)
    shown = where(on_shop & (rng.random(v) < 0.6))
    emit(shown, "popup_displayed", 5, popup_version=version[shown])
    # Version 2 of the popup is opened more often.
    opens = rng.random(v) < np.where(version == "v2", 0.32, 0.18)
    popup_open = np.zeros(v, dtype=bool)
    popup_open[shown] = opens[shown]
    emit(where(popup_open), "popup_opened", 9, popup_version=version[popup_open])
    opened = popup_open | (rng.random(v) < 0.25)
    rows = where(opened)
    way = np.where(popup_open, "popup", "chat_button").astype(object)
    emit(rows, "bot_open", 10, open_way=way[rows], popup_version=version[rows])
    convo = opened & (rng.random(v) < 0.75)
    emit(where(convo), "convo_started", 15)

    n_messages = np.where(convo, 1 + rng.poisson(1.2, v), 0)
    asked = np.repeat(np.arange(v), n_messages)
    if len(asked):
        nth_message = np.arange(len(asked)) - np.repeat(
            np.cumsum(n_messages) - n_messages, n_messages
        )
        after = 20 + 40 * nth_message
        question = (rng.zipf(1.6, len(asked)) - 1) % len(QUESTIONS)
        spelling = rng.integers(0, len(_SPELLINGS), len(asked))
        texts = np.array(
            [
                json.dumps({"text": _SPELLINGS[s](QUESTIONS[q])})
                for q, s in zip(question.tolist(), spelling.tolist(), strict=True)
            ],
            dtype=object,
        )
        emit(asked, "message_sent", after, data=texts)
        # Feedback on answers: the sales bot is liked less than the support bot.
        roll = rng.random(len(asked))
        like_rate = np.where(visit["chatbot_id"][asked] == "support-bot", 0.3, 0.18)
        liked = roll < like_rate
        disliked = (roll >= like_rate) & (roll < like_rate + 0.08)
        emit(asked[liked], "message_like", after[liked] + 8)
        emit(asked[disliked], "message_dislike", after[disliked] + 8)

    emit(where(convo & (rng.random(v) < 0.3)), "click_through", 200)
    # The A/B effect: the test variant puts more into carts; a conversation helps too.
    cart_rate = np.where(group == "test", 0.16, 0.11) + np.where(convo, 0.08, 0.0)
    cart = on_shop & (rng.random(v) < cart_rate)
    emit(where(cart), "added_to_cart", 260)
    to_cart = cart & (rng.random(v) < 0.75)
    emit(where(to_cart), "go_to_cart", 300)
    bought = where(to_cart & (rng.random(v) < 0.55))
    made = len(bought)
    if made:
        numbers = numbering.take(made)
        currency = np.array(CURRENCIES_SHOP, dtype=object)[
            rng.integers(0, len(CURRENCIES_SHOP), made)
        ]
        currency[rng.random(made) < 0.005] = "JPY"  # not in the rate table: no EUR total
        items, totals = _baskets(rng, currency)
        order = {"order_num": numbers, "items": items, "total_value_base": totals}
        emit(bought, "purchase", 330, **order)
        # A few shops re-send the confirmation page: the same orderNum again.
        again = rng.random(made) < 0.03
        repeat = {k: values[again] for k, values in order.items()}
        emit(
            bought[again],
            "purchase",
            400,
            duplicate=np.ones(int(again.sum()), dtype=bool),
            **repeat,
        )
    failed = where(rng.random(v) < 0.006)
    if len(failed):
        picked = rng.integers(0, len(ERRORS), len(failed))
        payload = np.array([json.dumps({"message": ERRORS[i]}) for i in picked], dtype=object)
        emit(failed, "error", 2, data=payload)
    return chunk.table()


FORM = "support-form"
_FORM_DATA = json.dumps({"form": FORM})
_ASKED = tuple(
    (q, s, json.dumps({"form": FORM, "question": _SPELLINGS[s](text)}))
    for q, text in enumerate(QUESTIONS)
    for s in range(len(_SPELLINGS))
)


def _form_sessions(
    rng: np.random.Generator,
    emit: Callable[..., None],
    rows: np.ndarray,
    group: np.ndarray,
    when: np.ndarray,
    end_us: int,
) -> None:
    """The support form's deflector on help-site visits ``rows``: some questions are hard
    (the later ones of the pool), so their answers defer or fail more often."""
    if not len(rows):
        return
    n = len(rows)
    emit(rows, "form_viewed", 2, data=np.full(n, _FORM_DATA, dtype=object))
    asked = rng.random(n) < 0.85
    question = (rng.zipf(1.6, n) - 1) % len(QUESTIONS)
    spelling = rng.integers(0, len(_SPELLINGS), n)
    texts = np.array([entry[2] for entry in _ASKED], dtype=object)[
        question * len(_SPELLINGS) + spelling
    ]
    control = group[rows] == "control"
    answered = asked & ~control & (rng.random(n) < 0.8)
    shown = rows[answered]
    answers = np.array(
        [
            json.dumps(
                {"form": FORM, "question": _SPELLINGS[s](QUESTIONS[q]), "answer_id": f"kb-{q}"}
            )
            for q, s in zip(question[answered].tolist(), spelling[answered].tolist(), strict=True)
        ],
        dtype=object,
    )
    emit(shown, "answer_shown", 30, data=answers)
    hard = question >= 8
    roll = rng.random(n)
    liked = answered & (roll < np.where(hard, 0.1, 0.3))
    disliked = answered & ~liked & (roll < np.where(hard, 0.35, 0.38))
    emit(rows[liked], "message_like", 45, data=np.full(int(liked.sum()), _FORM_DATA, dtype=object))
    emit(
        rows[disliked],
        "message_dislike",
        45,
        data=np.full(int(disliked.sum()), _FORM_DATA, dtype=object),
    )
    outcome = rng.random(n)
    now_rate = np.where(answered, np.where(hard, 0.35, 0.12), np.where(asked, 0.55, 0.25))
    now = outcome < now_rate
    later_rate = np.where(answered, np.where(hard, 0.15, 0.06), 0.05)
    later_s = rng.uniform(3 * 3600, 6 * 86400, n)
    later = ~now & (outcome < now_rate + later_rate)
    later &= when[rows] + (later_s * 1e6).astype(np.int64) < end_us
    emit(rows[now], "ticket_submitted", 120, data=texts[now])
    emit(rows[later], "ticket_submitted", later_s[later], data=texts[later])


def _baskets(rng: np.random.Generator, currency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items of each order (1-3 lines) as the tracker sends them, and the EUR total."""
    out: list[str] = []
    totals = np.empty(len(currency))
    lines = rng.integers(1, 4, len(currency))
    picks = rng.integers(0, len(ITEMS), (len(currency), 3))
    quantities = rng.integers(1, 3, (len(currency), 3))
    for i, code in enumerate(currency.tolist()):
        rate = EUR_RATES.get(code)
        factor = 1.0 / (rate or 0.0066)  # prices in the shop's currency; JPY at about 150
        items = []
        total = 0.0
        for j in range(int(lines[i])):
            item_id, eur_price = ITEMS[int(picks[i, j])]
            price = round(eur_price * factor, 2)
            qty = int(quantities[i, j])
            items.append({"item_id": item_id, "quantity": qty, "currency": code, "value": price})
            total += price * qty * (rate or 0.0)
        out.append(json.dumps(items, separators=(",", ":")))
        totals[i] = round(total, 6) if rate is not None else np.nan
    return np.array(out, dtype=object), totals


def _load_orders(store: Store, table: pa.Table) -> int:
    """The orders table de-duplicates live ingest; demo orders go in with their events."""
    purchases = table.filter(
        pc.and_(
            pc.equal(table["event"], "purchase"),
            pc.invert(table["duplicate"]),
        )
    )
    if purchases.num_rows:
        store.load_arrow(
            "orders",
            pa.table(
                {
                    "site_id": purchases["site_id"],
                    "order_num": purchases["order_num"],
                    "first_seen": purchases["ts"],
                }
            ),
        )
    return int(purchases.num_rows)


def _ids(store: Store, sequence: str, count: int) -> list[int]:
    if count == 0:
        return []
    rows = store.query(f"SELECT nextval('{sequence}') FROM generate_series(1, ?)", [count])  # noqa: S608 - constant names
    return sorted(int(r[0]) for r in rows)


def _identities(store: Store, rng: np.random.Generator, plan: DemoPlan, tokens: np.ndarray) -> int:
    """Pairs of tokens (shop and help site) joined through the person's email.

    Mirrors what identify calls from the widget and the support form would have written:
    nodes, links (token-email) and the link log, with some profile metadata.
    """
    pairs = int(len(tokens) * plan.merged_share) // 2
    if pairs == 0:
        return 0
    chosen = rng.permutation(len(tokens))[: pairs * 2].reshape(pairs, 2)
    tenant = _tenant(store, plan.site)
    person_ids = _ids(store, "person_seq", pairs)
    node_ids = _ids(store, "identity_node_seq", pairs * 3)
    link_ids = _ids(store, "link_seq", pairs * 2)
    log_ids = _ids(store, "link_log_seq", pairs * 2)
    now = datetime.now(UTC).replace(tzinfo=None)
    beginning = datetime(1970, 1, 1)
    end_of_time = datetime(9999, 12, 31)
    kinds: list[str] = []
    values: list[str] = []
    owners: list[int] = []
    links_a: list[int] = []
    links_b: list[int] = []
    log_rows: list[tuple[str, str, str, str]] = []
    for p in range(pairs):
        first, second = tokens[chosen[p, 0]], tokens[chosen[p, 1]]
        email = f"visitor-{secrets.token_hex(5)}@example.test"
        base = 3 * p
        kinds += ["token", "token", "email"]
        values += [first, second, email]
        owners += [person_ids[p]] * 3
        links_a += [node_ids[base], node_ids[base + 1]]
        links_b += [node_ids[base + 2], node_ids[base + 2]]
        log_rows += [("token", first, "email", email), ("token", second, "email", email)]
    n = len(kinds)
    store.load_arrow(
        "identity_nodes",
        pa.table(
            {
                "node_id": pa.array(node_ids, pa.int64()),
                "tenant": pa.array([tenant] * n),
                "kind": pa.array(kinds),
                "value": pa.array(values),
                "valid_from": pa.array([beginning] * n, pa.timestamp("us")),
                "person_id": pa.array(owners, pa.int64()),
                "created_at": pa.array([now] * n, pa.timestamp("us")),
                "valid_to": pa.array([end_of_time] * n, pa.timestamp("us")),
            }
        ),
    )
    m = len(links_a)
    store.load_arrow(
        "links",
        pa.table(
            {
                "link_id": pa.array(link_ids, pa.int64()),
                "tenant": pa.array([tenant] * m),
                "a_node": pa.array(links_a, pa.int64()),
                "b_node": pa.array(links_b, pa.int64()),
                "source": pa.array(["identify"] * m),
                "rule": pa.array(["identify"] * m),
                "actor": pa.array(["demo"] * m),
                "created_at": pa.array([now] * m, pa.timestamp("us")),
                "removed_at": pa.array([None] * m, pa.timestamp("us")),
            }
        ),
    )
    store.load_arrow(
        "link_log",
        pa.table(
            {
                "seq": pa.array(log_ids, pa.int64()),
                "tenant": pa.array([tenant] * m),
                "action": pa.array(["link"] * m),
                "a_kind": pa.array([r[0] for r in log_rows]),
                "a_value": pa.array([r[1] for r in log_rows]),
                "b_kind": pa.array([r[2] for r in log_rows]),
                "b_value": pa.array([r[3] for r in log_rows]),
                "source": pa.array(["identify"] * m),
                "rule": pa.array(["identify"] * m),
                "actor": pa.array(["demo"] * m),
                "logged_at": pa.array([now] * m, pa.timestamp("us")),
            }
        ),
    )
    return pairs


def _tenant(store: Store, site: str) -> str:
    found = store.get_site(site)
    return found.scope if found else site


def api_messages(store: Store, run: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The demo traffic ``generate`` wrote into ``store`` (a scratch store) as a running
    server's batch APIs take it, for ``footfall demo --server``: the 13 types as tracking
    events (``tracking``; their ``ts`` is kept within the API's seven days), custom events
    and the identify calls that merge tokens as Segment messages (``segment``: the tracking
    API takes neither). ``run`` makes the message ids unique to this run, so a retried batch
    is stored once and a second run adds a second set."""
    rows = store.query(
        "SELECT event, token, epoch_us(ts), ab_group, chatbot_id, popup_version, open_way, "
        "order_num, items, url, data, custom_event FROM events ORDER BY ts, event_id"
    )
    for n, row in enumerate(rows):
        event, token, ts_us, group, chatbot, popup, way, order, items, url, data, name = row
        properties: dict[str, Any] = json.loads(data) if data else {}
        message_id = f"demo-{run}-{n}"
        if event == CUSTOM_EVENT:
            yield (
                "segment",
                {
                    "type": "track",
                    "event": name,
                    "anonymousId": token,
                    "properties": properties,
                    "timestamp": iso_time(ts_us),
                    "context": {"page": {"url": url}},
                    "messageId": message_id,
                },
            )
            continue
        for key, value in (
            ("chatbot_id", chatbot),
            ("popup_version", popup),
            ("open_way", way),
            ("orderNum", order),
        ):
            if value is not None:
                properties[key] = value
        if items:
            properties["items"] = json.loads(items)
        yield (
            "tracking",
            {
                "event": event,
                "token": token,
                "ts": ts_us // 1000,
                "url": url,
                "ab_test": group is not None,
                "data": properties,
                "messageId": message_id,
            },
        )
    links = store.query(
        "SELECT a_value, b_value FROM link_log WHERE a_kind = 'token' AND b_kind = 'email' "
        "ORDER BY seq"
    )
    for n, (token, email) in enumerate(links):
        yield (
            "segment",
            {
                "type": "identify",
                "anonymousId": token,
                "traits": {"email": email},
                "messageId": f"demo-{run}-identify-{n}",
            },
        )
