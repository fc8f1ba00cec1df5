"""What only the PostgreSQL store has to get right: several clients (processes) on one
database at once, placeholder translation, connection errors."""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from footfall.identity import Identifier, IdentityGraph
from footfall.ingest.validate import now_us
from footfall.store import open_store, redact
from footfall.store.base import HASH_JOINS, EventRow, StoreUnavailableError
from footfall.store.migrations import MIGRATIONS
from footfall.store.postgres import PostgresStore, translate
from pgserver import PostgresServer

CLIENTS = 4


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("SELECT ? , ?", "SELECT %s , %s"),
        ("SELECT '?', 'it''s ?', ?", "SELECT '?', 'it''s ?', %s"),
        ("SELECT E'\\'?', ?", "SELECT E'\\'?', %s"),
        ('SELECT "odd?name" FROM t WHERE a = ?', 'SELECT "odd?name" FROM t WHERE a = %s'),
        ("SELECT 1 -- why?\n, ?", "SELECT 1 -- why?\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT $$?$$, $q$ ? $q$, ?", "SELECT $$?$$, $q$ ? $q$, %s"),
        ("SELECT x LIKE 'a%' AND y % 2 = ?", "SELECT x LIKE 'a%%' AND y %% 2 = %s"),
    ],
)
def test_placeholders_are_translated_outside_literals(written: str, sent: str) -> None:
    assert translate(written) == sent


def test_unreachable_server_fails_clearly_without_the_password() -> None:
    from conftest import free_port

    url = f"postgresql://footfall:s3cret-pw@127.0.0.1:{free_port()}/footfall"
    with pytest.raises(StoreUnavailableError, match="cannot connect") as caught:
        open_store(url)
    assert "s3cret-pw" not in str(caught.value)
    assert redact(url) == url.replace("s3cret-pw", "***")


@pytest.fixture
def empty_url(postgres: PostgresServer) -> Iterator[str]:
    """A database with nothing in it, not even the schema."""
    name = f"footfall_empty_{random.randrange(10**9)}"
    yield postgres.create_database(name)
    postgres.drop_database(name)


def run_together(work: list[Callable[[], Any]]) -> list[Any]:
    """Run each callable on its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    if errors:
        raise errors[0]
    return results


def test_clients_migrating_together_apply_each_migration_once(empty_url: str) -> None:
    stores = [PostgresStore(empty_url.replace("postgresql://", "postgres://"))] + [
        PostgresStore(empty_url) for _ in range(CLIENTS - 1)
    ]
    try:
        applied = run_together([store.migrate for store in stores])
        assert sorted(v for versions in applied for v in versions) == [
            m.version for m in MIGRATIONS
        ]
        rows = stores[0].query("SELECT version, count(*) FROM schema_migrations GROUP BY version")
        assert sorted(rows) == [(m.version, 1) for m in MIGRATIONS]
    finally:
        for store in stores:
            store.close()


def test_an_order_counts_once_whichever_client_writes_it(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(CLIENTS)]
    orders = [f"ORD-{n}" for n in range(60)]

    def client(seed: int) -> list[tuple[str, int]]:
        rnd = random.Random(seed)
        out: list[tuple[str, int]] = []
        for _ in range(15):
            batch = rnd.sample(orders, 8)
            ts = now_us()
            rows = [
                EventRow("default", ts, ts, "purchase", f"buyer-{seed}-tok", order_num=o)
                for o in batch
            ]
            out += zip(batch, stores[seed].insert_events(rows), strict=True)
        return out

    try:
        flags = [
            f
            for part in run_together([functools.partial(client, s) for s in range(CLIENTS)])
            for f in part
        ]
        counted = sorted(order for order, duplicate in flags if not duplicate)
        assert counted == sorted({order for order, _ in flags})
        stored = stores[0].query(
            "SELECT order_num, count(*) FROM events WHERE NOT duplicate GROUP BY order_num"
        )
        assert {count for _, count in stored} == {1}
        assert len(stored) == len(counted)
    finally:
        for store in stores:
            store.close()


def test_concurrent_merges_from_several_clients_stay_one_graph(postgres_url: str) -> None:
    """Clients race to create the same identifiers and merge the same persons: every
    identifier must end up as exactly one node, every person as one component."""
    stores = [PostgresStore(postgres_url) for _ in range(CLIENTS)]
    graphs = [IdentityGraph(store) for store in stores]
    people = 25
    ops: list[tuple[str, str]] = []
    for p in range(people):
        names = [f"p{p}-token-a", f"p{p}-token-b", f"p{p}-token-c", f"email:p{p}@example.com"]
        ops += [(names[0], names[1]), (names[1], names[2]), (names[2], names[3])]
        ops += [(names[0], names[3]), (names[3], names[1])]
    random.Random(7).shuffle(ops)

    def client(i: int) -> None:
        for a, b in ops[i::CLIENTS]:
            graphs[i].alias("default", a, b)

    try:
        run_together([functools.partial(client, i) for i in range(CLIENTS)])
        nodes = stores[0].query(
            "SELECT kind, value, count(*) FROM identity_nodes GROUP BY kind, value"
        )
        assert len(nodes) == people * 4
        assert {count for *_, count in nodes} == {1}
        persons = graphs[0].persons("default")
        for p in range(people):
            ids = {persons[Identifier("token", f"p{p}-token-{x}")] for x in "abc"} | {
                persons[Identifier("email", f"p{p}@example.com")]
            }
            assert len(ids) == 1, f"person {p} is split over {ids}"
        assert len(set(persons.values())) == people
        links = stores[0].query("SELECT count(*) FROM links WHERE removed_at IS NULL")
        assert links == [(people * 5,)]
    finally:
        for store in stores:
            store.close()


def test_cli_on_postgresql(empty_url: str) -> None:
    """``footfall migrate`` and ``sites`` work on a URL; a dead server is one clear line."""
    from conftest import free_port

    def footfall(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "footfall", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200", "FOOTFALL_CONFIG": ""},
        )

    migrated = footfall("migrate", "--database", empty_url)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema version {max(m.version for m in MIGRATIONS)}" in migrated.stdout
    added = footfall(
        "sites", "add", "shop", "--origin", "https://shop.test", "--database", empty_url
    )
    assert added.returncode == 0, added.stderr
    listed = footfall("sites", "list", "--database", empty_url)
    assert "https://shop.test" in listed.stdout
    dead = f"postgresql://footfall:s3cret-pw@127.0.0.1:{free_port()}/footfall"
    failed = footfall("migrate", "--database", dead)
    assert failed.returncode == 1
    assert "cannot connect to PostgreSQL" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert "s3cret-pw" not in failed.stderr


def test_tenant_locks_serialise_one_tenant_and_let_others_through(postgres_url: str) -> None:
    """While a transaction of tenant A is open, B's go through, A's and unscoped ones wait."""
    holder, other = PostgresStore(postgres_url), PostgresStore(postgres_url)
    release = threading.Event()
    held = threading.Event()
    done: list[str] = []

    def hold_a() -> None:
        with holder.transaction("tenant-a"):
            held.set()
            release.wait(timeout=60)

    def run(scope: str | None, name: str) -> threading.Thread:
        def body() -> None:
            with other.transaction(scope) as tx:
                tx.query("SELECT 1")
            done.append(name)

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    def waiting_for_locks() -> int:
        rows = holder.query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        return int(rows[0][0])

    keeper = threading.Thread(target=hold_a)
    keeper.start()
    try:
        assert held.wait(timeout=30)
        run("tenant-b", "b").join(timeout=30)
        assert done == ["b"]
        blocked = [run("tenant-a", "a again"), run(None, "all tenants")]
        deadline = time.monotonic() + 30
        while waiting_for_locks() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_for_locks() == 2
        assert done == ["b"]
        release.set()
        for thread in blocked:
            thread.join(timeout=30)
        assert sorted(done) == ["a again", "all tenants", "b"]
    finally:
        release.set()
        keeper.join(timeout=30)
        holder.close()
        other.close()


def test_hash_join_hint_turns_nested_loops_off_for_that_statement_only(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, pool_max=2)
    try:
        setting = "SELECT current_setting('enable_nestloop')"
        assert store.query(HASH_JOINS + setting) == [("off",)]
        assert {store.query(setting)[0][0] for _ in range(10)} == {"on"}
    finally:
        store.close()
