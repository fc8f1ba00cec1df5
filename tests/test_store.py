"""The Store contract, once per backend (DuckDB file and a real PostgreSQL server)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from footfall.ingest.validate import now_us
from footfall.store.base import HASH_JOINS, EventRow, Store
from footfall.store.migrations import MIGRATIONS


def purchase(order: str | None, site: str = "default", who: str = "buyer-token-1") -> EventRow:
    ts = now_us()
    return EventRow(
        site_id=site,
        ts_us=ts,
        received_us=ts,
        event="purchase",
        token=who,
        order_num=order,
        total_value_base=10.5,
        items='[{"item_id": "SKU-1", "value": 10.5, "quantity": 1}]',
    )


def test_migrations_are_applied_once(store: Store) -> None:
    assert store.schema_version() == max(m.version for m in MIGRATIONS)
    assert store.migrate() == []
    versions = store.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == sorted(m.version for m in MIGRATIONS)


def test_repeated_order_numbers_are_flagged_within_and_across_batches(store: Store) -> None:
    store.upsert_site("shop2", "Second shop", [])
    first = store.insert_events(
        [purchase("A-1"), purchase("A-2"), purchase("A-1"), purchase(None), purchase("A-2")]
    )
    assert first == [False, False, True, False, True]
    second = store.insert_events(
        [purchase("A-2"), purchase("A-3"), purchase("A-1", site="shop2"), purchase("A-3")]
    )
    assert second == [True, False, False, True]
    counted = store.query(
        "SELECT site_id, count(*) FROM events WHERE event = 'purchase' AND NOT duplicate "
        "AND order_num IS NOT NULL GROUP BY site_id ORDER BY site_id"
    )
    assert counted == [("default", 3), ("shop2", 1)]
    assert store.count_events() == 9
    assert store.count_events("shop2") == 1


def test_values_come_back_as_python_types(store: Store) -> None:
    row = purchase("B-1")
    row.data = json.dumps({"text": "where is my order?", "n": 3})
    row.ab_group = "test"
    store.insert_events([row])
    [(ts, data, items, total, duplicate, event_id)] = store.query(
        "SELECT ts, data, items, total_value_base, duplicate, event_id FROM events"
    )
    assert isinstance(ts, datetime)
    assert ts.tzinfo is None
    assert abs((ts - datetime(1970, 1, 1)).total_seconds() * 1e6 - row.ts_us) < 1
    assert isinstance(data, str)
    assert json.loads(data) == {"text": "where is my order?", "n": 3}
    assert isinstance(items, str)
    assert json.loads(items)[0]["item_id"] == "SKU-1"
    assert total == 10.5
    assert duplicate is False
    assert isinstance(event_id, int)
    [(count, total_sum, average, int_sum)] = store.query(
        "SELECT count(*), sum(total_value_base), avg(total_value_base), sum(event_id) FROM events"
    )
    assert (count, total_sum, average, int_sum) == (1, 10.5, 10.5, event_id)
    assert type(int_sum) is int
    assert type(average) is float


def test_placeholders_outside_literals_only(store: Store) -> None:
    store.insert_events([purchase("C-1", who="percent-token")])
    rows = store.query(
        "SELECT '?' AS mark, 'it''s 100%' AS text, ? AS given, count(*) FROM events "
        "WHERE token LIKE 'percent%' AND order_num = ? -- a comment with ? in it\n",
        ["yes", "C-1"],
    )
    assert rows == [("?", "it's 100%", "yes", 1)]
    assert store.query("SELECT 'no parameters: 5%'") == [("no parameters: 5%",)]


def test_writes_report_their_row_count(store: Store) -> None:
    store.insert_events([purchase(None), purchase(None)])
    assert store.query("UPDATE events SET url = ? WHERE url IS NULL", ["https://x.test"]) == [(2,)]
    assert store.query("DELETE FROM events WHERE url = ?", ["https://none.test"]) == [(0,)]


def test_nul_characters_do_not_fail_a_write(store: Store) -> None:
    """DuckDB stores NUL characters; PostgreSQL cannot, so they become U+FFFD there."""
    row = purchase("D-\x001")
    row.url = "https://shop.test/\x00page"
    row.data = json.dumps({"text": "nul \x00 inside", "plain": "a\\u0000b"})
    assert store.insert_events([row]) == [False]
    [(url, data, order)] = store.query("SELECT url, data, order_num FROM events")
    assert url.replace("\ufffd", "\x00") == "https://shop.test/\x00page"
    assert order.replace("\ufffd", "\x00") == "D-\x001"
    decoded = json.loads(data)
    assert decoded["text"].replace("\ufffd", "\x00") == "nul \x00 inside"
    assert decoded["plain"] == "a\\u0000b"
    assert store.query("SELECT count(*) FROM sites WHERE name = ?", ["x\x00y"]) == [(0,)]


def test_transaction_commits_or_rolls_back_whole(store: Store) -> None:
    with store.transaction("default") as tx:
        tx.query("INSERT INTO tombstones VALUES (?, ?, ?, ?, ?)", ["t", "token", "a", _t(), _t()])

    def abandoned() -> None:
        with store.transaction() as tx:
            tx.query(
                "INSERT INTO tombstones VALUES (?, ?, ?, ?, ?)", ["t", "token", "b", _t(), _t()]
            )
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        abandoned()
    assert store.query("SELECT value FROM tombstones") == [("a",)]


def _t() -> datetime:
    return datetime(2030, 1, 1, 12, 30, 15, 123456)


def test_sites_and_keys(store: Store) -> None:
    site = store.upsert_site("help", "Help", ["https://help.test"], tenant="acme")
    assert site.scope == "acme"
    assert store.get_site("help") == site
    store.upsert_site("help", "Help centre", ["https://help.test", "https://*.help.test"])
    updated = store.get_site("help")
    assert updated is not None
    assert updated.name == "Help centre"
    assert updated.allowed_origins == ("https://help.test", "https://*.help.test")
    assert [s.id for s in store.list_sites()] == ["default", "help"]
    assert store.get_site("nope") is None
    store.add_api_key("k1", "help", "hash-1", "backend")
    store.add_api_key("k2", "help", "hash-2", "")
    key = store.get_api_key("k1")
    assert key is not None
    assert (key.site_id, key.key_hash, key.label, key.revoked) == (
        "help",
        "hash-1",
        "backend",
        False,
    )
    assert store.revoke_api_key("k1") is True
    assert store.revoke_api_key("k1") is False
    assert [(k.key_id, k.revoked) for k in store.list_api_keys("help")] == [
        ("k1", True),
        ("k2", False),
    ]
    store.ping()


def test_bulk_load_from_arrow(store: Store) -> None:
    n = 2_500
    stamp = pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "site_id": ["default"] * n,
            "ts": stamp,
            "received_at": stamp,
            "event": ["visitor"] * n,
            "token": [f"bulk-token-{i % 100}" for i in range(n)],
            "ephemeral": [False] * n,
            "duplicate": [False] * n,
            "data": ['{"bulk": true}'] * (n - 1) + ['{"text": "nul \\u0000, \\"quoted\\""}'],
            "id_kind": ["token"] * n,
            "url": ["", None, 'https://x.test/"a",b\n', "https://x.test/\x00"] * (n // 4),
        }
    )
    store.load_arrow("events", table)
    store.insert_events([purchase("E-1")])
    rows = store.query(
        "SELECT count(*), count(DISTINCT token), min(ts), count(DISTINCT event_id) FROM events"
    )
    assert rows == [(n + 1, 101, datetime(2023, 11, 14, 22, 13, 20), n + 1)]
    urls = dict(store.query("SELECT url, count(*) FROM events GROUP BY url"))
    assert urls.pop("") == n // 4
    assert urls.pop(None) == n // 4 + 1  # and the purchase
    # PostgreSQL cannot store NUL: it becomes U+FFFD there.
    assert {u.replace("\ufffd", "\x00"): c for u, c in urls.items()} == {
        'https://x.test/"a",b\n': n // 4,
        "https://x.test/\x00": n // 4,
    }
    [(text,)] = store.query("SELECT data FROM events WHERE CAST(data AS VARCHAR) LIKE '%quoted%'")
    assert json.loads(text)["text"].replace("\ufffd", "\x00") == 'nul \x00, "quoted"'
    with pytest.raises(ValueError, match="not supported"):
        store.load_arrow("api_keys", table)


def test_the_hash_join_hint_is_only_a_hint(store: Store) -> None:
    assert store.query(HASH_JOINS + "SELECT ? + 1", [41]) == [(42,)]


def test_setup_tokens_and_the_admin_password(store: Store) -> None:
    now = datetime(2030, 1, 1, 12, 0, 0)
    hour = timedelta(hours=1)
    store.add_setup_token("hash-a", now, now + hour)
    store.add_setup_token("hash-b", now, now + hour)
    store.add_setup_token("hash-old", now - 2 * hour, now - hour)
    assert store.admin_password_hash() is None
    assert store.setup_token_usable("hash-a", now)
    assert not store.setup_token_usable("hash-old", now)  # expired
    assert not store.setup_token_usable("hash-a", now + hour)  # expires exactly then
    assert not store.setup_token_usable("unknown", now)
    assert not store.claim_setup_token("hash-old", "scrypt$first", now)
    assert store.admin_password_hash() is None
    assert store.claim_setup_token("hash-a", "scrypt$first", now)
    assert store.admin_password_hash() == "scrypt$first"
    # Used once; and with a password stored, no other link is usable either.
    assert not store.setup_token_usable("hash-a", now)
    assert not store.claim_setup_token("hash-a", "scrypt$again", now)
    assert not store.setup_token_usable("hash-b", now)
    assert not store.claim_setup_token("hash-b", "scrypt$second", now)
    assert store.admin_password_hash() == "scrypt$first"
    store.set_admin_password("scrypt$changed")
    assert store.admin_password_hash() == "scrypt$changed"
    # Nothing kept the tokens themselves: the table holds the hashes it was given.
    assert sorted(r[0] for r in store.query("SELECT token_hash FROM setup_tokens")) == [
        "hash-a",
        "hash-b",
        "hash-old",
    ]


def test_two_setup_links_used_at_once_set_one_password(store: Store) -> None:
    """Two processes each printed a link; both are used in the same instant."""
    now = datetime(2030, 1, 1, 12, 0, 0)
    tokens = [f"hash-{n}" for n in range(8)]
    for token in tokens:
        store.add_setup_token(token, now, now + timedelta(hours=1))
    with ThreadPoolExecutor(len(tokens)) as pool:
        claimed = list(pool.map(lambda t: store.claim_setup_token(t, f"scrypt${t}", now), tokens))
    assert claimed.count(True) == 1
    winner = tokens[claimed.index(True)]
    assert store.admin_password_hash() == f"scrypt${winner}"
    used = store.query("SELECT token_hash FROM setup_tokens WHERE used_at IS NOT NULL")
    assert used == [(winner,)]


def test_key_records_carry_their_times(store: Store) -> None:
    store.add_api_key("k9", "default", "hash-9", "backend")
    key = store.get_api_key("k9")
    assert key is not None
    assert key.created_at is not None
    assert key.revoked_at is None
    assert store.revoke_api_key("k9")
    revoked = store.get_api_key("k9")
    assert revoked is not None
    assert revoked.revoked
    assert revoked.revoked_at is not None
    assert revoked.revoked_at >= key.created_at
