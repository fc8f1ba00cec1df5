"""``footfall import``'s parallel reading and batched writing give what one reader and one
call at a time give: the same rows, message ids, rejects and identity graph; a worker that
dies loses and repeats nothing; Ctrl-C leaves no process behind."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from footfall.errors import ApiError
from footfall.identity import IdentityGraph
from footfall.ingest.import_workers import (
    ImportJob,
    PartReader,
    import_to_store,
    import_workers,
)
from footfall.ingest.imports import BOM, Chunk, LineReader, LineSplitter, line_chunks, open_lines
from footfall.ingest.segment import IdentityCall, apply_identities, apply_identity
from footfall.store.base import Store
from footfall.store.duckdb import DuckDBStore

TENANT = "default"


def open_db(path: Path) -> DuckDBStore:
    store = DuckDBStore(str(path))
    store.migrate()
    store.upsert_site(TENANT, TENANT, [])
    return store


def identity_state(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The graph's tables, times left out but for whether a node's validity is bounded."""

    def moment(value: datetime) -> str:
        return value.isoformat() if value.year in (1970, 9999) else "a moment"

    nodes = [
        (*row[:4], moment(row[4]), moment(row[5]), row[6])
        for row in store.query(
            "SELECT node_id, tenant, kind, value, valid_from, valid_to, person_id "
            "FROM identity_nodes ORDER BY node_id"
        )
    ]
    return {
        "nodes": nodes,
        "links": store.query(
            "SELECT link_id, tenant, a_node, b_node, source, rule, actor, removed_at IS NULL "
            "FROM links ORDER BY link_id"
        ),
        "log": store.query(
            "SELECT seq, tenant, action, a_kind, a_value, b_kind, b_value, source, rule, actor "
            "FROM link_log ORDER BY seq"
        ),
        "properties": store.query(
            "SELECT node_id, key, value FROM identity_properties ORDER BY node_id, key"
        ),
    }


def calls_of_every_kind() -> list[IdentityCall]:
    """New people (every combination of ids), repeats, people met again with another
    token, a conflicting email (token moved), aliases and groups between them."""
    calls = []
    for i in range(12):
        calls.append(
            IdentityCall(
                "identify",
                token=f"tok-{i:05d}" if i % 4 != 3 else None,
                client_id=f"user-{i}" if i % 3 != 2 else None,
                email=f"User{i}@Shop.test" if i % 2 == 0 else None,
                traits={"plan": "pro", "n": i} if i % 5 == 0 else {},
            )
        )
    calls += [
        IdentityCall("identify", token="tok-00000", client_id="user-0", email="user0@shop.test"),
        IdentityCall("identify", token="tok-99999", client_id="user-1"),  # a second device
        IdentityCall("identify", token="tok-00001", email="other@shop.test"),
        IdentityCall("alias", client_id="user-40", previous_id="tok-00004"),
        IdentityCall("identify", token="tok-00040", client_id="user-40", email="x40@shop.test"),
        IdentityCall("group", client_id="user-5", traits={"group_id": "g1", "group": {}}),
        IdentityCall("identify", token="tok-00050", client_id="user-50", traits={"k": 1}),
        IdentityCall("identify", token="tok-00060", email="user2@shop.test"),  # known email
        IdentityCall("identify", token="tok-00070", client_id="User-70", email=""),  # clears
        IdentityCall("identify", token="tok-00080", client_id="user-80", email="user-80"),
        IdentityCall("identify", token="tok-00090", client_id="x", email="x@y.test"),
        IdentityCall("identify", token="tok-00091", client_id="x@y.test", email="z@y.test"),
    ]
    return calls


def test_batched_identity_calls_leave_the_graph_one_call_at_a_time_leaves(
    tmp_path: Path,
) -> None:
    calls = calls_of_every_kind()
    one = open_db(tmp_path / "one.duckdb")
    batched = open_db(tmp_path / "batched.duckdb")
    try:
        for store in (one, batched):  # a person the graph knows before
            IdentityGraph(store).identify(TENANT, "tok-00002", "user-2", "user2@shop.test")
        graph = IdentityGraph(one)
        for call in calls:
            # The bad email fails alone (the batch below raises it too).
            with contextlib.suppress(ApiError):
                apply_identity(graph, TENANT, call, "import")
        good = [c for c in calls if c.email != "user-80"]
        apply_identities(IdentityGraph(batched), TENANT, good[:10], "import")
        apply_identities(IdentityGraph(batched), TENANT, good[10:], "import")
        with pytest.raises(ApiError, match="email"):
            apply_identities(
                IdentityGraph(batched),
                TENANT,
                [c for c in calls if c.email == "user-80"],
                "import",
            )
        expected = identity_state(one)
        assert len(expected["nodes"]) > 30  # the calls did make a graph
        assert identity_state(batched) == expected
    finally:
        one.close()
        batched.close()


def test_a_failing_call_leaves_the_calls_before_it_applied(tmp_path: Path) -> None:
    store = open_db(tmp_path / "f.duckdb")
    try:
        calls = [
            IdentityCall("identify", token="tok-00001", client_id="u1"),
            IdentityCall("identify", token="tok-00002", email="not an email"),
            IdentityCall("identify", token="tok-00003", client_id="u3"),
        ]
        with pytest.raises(ApiError, match="email"):
            apply_identities(IdentityGraph(store), TENANT, calls, "import")
        values = {v for (v,) in store.query("SELECT value FROM identity_nodes")}
        assert values == {"tok-00001", "u1"}
    finally:
        store.close()


def children_of(pid: int) -> list[int]:
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in listed.read_text().split()]
    except OSError:
        return []


def workers_of(pid: int) -> list[int]:
    """The worker processes among a process's children (not multiprocessing's tracker)."""
    found = []
    for child in children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(child)
    return found


def lines_file(path: Path, count: int) -> Path:
    """Segment and tracking lines, some without a message id and repeated (derived ids
    that count earlier identical lines), identifies, and rejects."""
    out = []
    for i in range(count):
        if i % 97 == 0:
            out.append(json.dumps({"type": "track", "anonymousId": "anon-0000001"}))
        elif i % 89 == 0:  # the same line many times, no message id
            out.append(json.dumps({"type": "page", "anonymousId": "anon-00000002"}))
        elif i % 83 == 0:
            out.append(
                json.dumps(
                    {
                        "type": "identify",
                        "anonymousId": f"anon-{i % 7:08d}",
                        "userId": f"user-{i % 11}",
                        "traits": {"email": f"u{i % 11}@shop.test"},
                    }
                )
            )
        elif i % 79 == 0:
            out.append(json.dumps({"event": "visitor", "token": "tracking-token-1", "ts": 1}))
        elif i % 71 == 0:  # a message id seen before
            out.append(json.dumps({"type": "page", "anonymousId": "a-12345678", "messageId": "m"}))
        else:
            out.append(
                json.dumps(
                    {
                        "type": "track",
                        "event": "Order Completed" if i % 13 == 0 else "Product Viewed",
                        "anonymousId": f"anon-{i % 500:08d}",
                        "messageId": f"msg-{i}",
                        "timestamp": "2026-10-01T10:00:00Z",
                        "properties": {"order_id": f"o-{i % 40}", "revenue": 5, "price": 2},
                    }
                )
            )
    path.write_text("\n".join(out) + "\n")
    return path


def one_reader(path: Path) -> tuple[list[str | None], list[tuple[int, str]], int]:
    """Message ids, rejects and line count as one ``LineReader`` has them."""
    reader = LineReader(TENANT)
    ids: list[str | None] = []
    rejects: list[tuple[int, str]] = []
    lines = 0
    with open_lines(path) as handle:
        for numbered in line_chunks(handle, 20_000):
            chunk = Chunk()
            reader.read(iter(numbered), chunk)
            ids += [row.message_id for row in chunk.rows]
            rejects += [(r.line, r.message) for r in chunk.rejects]
            lines += chunk.lines
    return ids, rejects, lines


def one_reader_calls(path: Path) -> list[IdentityCall]:
    reader = LineReader(TENANT)
    calls: list[IdentityCall] = []
    with open_lines(path) as handle:
        for numbered in line_chunks(handle, 20_000):
            chunk = Chunk()
            reader.read(iter(numbered), chunk)
            calls += chunk.calls
    return calls


@pytest.mark.parametrize(("workers", "zipped"), [(0, False), (2, False), (2, True)])
def test_runs_read_apart_are_settled_as_one_reader_reads_the_file(
    tmp_path: Path, workers: int, zipped: bool
) -> None:
    path = lines_file(tmp_path / "lines.ndjson", 3_000)
    if zipped:  # inflated here, the lines sent to the workers
        path = path.rename(tmp_path / "lines.ndjson.gz")
        path.write_bytes(gzip.compress(path.read_bytes()))
    ids, rejects, lines = one_reader(path)
    got_ids: list[str | None] = []
    got_rejects: list[tuple[int, str]] = []
    got_lines = 0
    with import_workers(workers) as pool:
        for part in PartReader(path, ImportJob(TENANT, "auto", TENANT), pool, run_bytes=8_192):
            got_ids += part.table.column("message_id").to_pylist()
            got_rejects += [(r.line, r.message) for r in part.rejects]
            got_lines += part.lines
    assert got_lines == lines == 3_000
    assert got_rejects == rejects
    assert len(rejects) > 10
    assert got_ids == ids
    assert any(i and i.endswith(":5") for i in ids)  # a line repeated, counted across runs


def test_a_worker_killed_mid_import_loses_and_repeats_nothing(tmp_path: Path) -> None:
    path = lines_file(tmp_path / "lines.ndjson", 20_000)
    expected_ids, _, _ = one_reader(path)
    store = open_db(tmp_path / "k.duckdb")
    killed: list[int] = []

    def kill_a_worker(part: Any, lines: int) -> None:
        if not killed:
            pid = workers_of(os.getpid())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        with import_workers(2) as pool:
            result = import_to_store(
                path,
                ImportJob(TENANT, "auto", TENANT),
                store,
                IdentityGraph(store),
                pool,
                kill_a_worker,
                8_192,
            )
        stored = store.query("SELECT count(*) FROM events")[0][0]
        ids = {m for (m,) in store.query("SELECT message_id FROM message_ids")}
    finally:
        store.close()
    assert killed
    assert stored == result.stored == len(set(expected_ids))
    assert ids == set(expected_ids)


def test_ctrl_c_ends_the_import_and_its_workers(tmp_path: Path) -> None:
    path = lines_file(tmp_path / "lines.ndjson", 150_000)
    database = tmp_path / "c.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "footfall",
            "import",
            str(path),
            "--database",
            str(database),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        for _ in range(600):  # the workers start with the first runs
            if len(workers_of(process.pid)) >= 2 or process.poll() is not None:
                break
            time.sleep(0.05)
        assert len(workers_of(process.pid)) >= 2, "the import should have started its workers"
        children = children_of(process.pid)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) != 0
    finally:
        process.kill()
    for pid in children:
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the import"
    # What the interrupted import stored is whole: a re-run completes it, once each.
    again = subprocess.run(
        [sys.executable, "-m", "footfall", "import", str(path), "--database", str(database)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 1  # the file has rejects
    expected, _, _ = one_reader(path)
    con = duckdb.connect(str(database), read_only=True)
    try:
        stored = con.execute("SELECT count(*) FROM events").fetchone()
    finally:
        con.close()
    assert stored == (len(set(expected)),)


def test_an_import_stores_what_one_reader_reads_once_on_each_store(
    store: Store, tmp_path: Path
) -> None:
    """Every row once, repeated message ids and orders as the API treats them, on DuckDB
    and PostgreSQL alike; the same file again stores nothing."""
    path = lines_file(tmp_path / "lines.ndjson", 2_000)
    expected, _, _ = one_reader(path)
    graph = IdentityGraph(store)
    first = import_to_store(
        path, ImportJob(TENANT, "auto", TENANT), store, graph, None, run_bytes=16_384
    )
    again = import_to_store(
        path, ImportJob(TENANT, "auto", TENANT), store, graph, None, run_bytes=16_384
    )
    assert first.rows == again.rows == len(expected)
    assert first.stored == len(set(expected)) == store.count_events()
    assert again.stored == 0
    ids = {m for (m,) in store.query("SELECT message_id FROM message_ids")}
    assert ids == set(expected)
    orders = store.query(
        "SELECT count(*), sum(CASE WHEN duplicate THEN 0 ELSE 1 END) FROM events "
        "WHERE event = 'purchase'"
    )
    assert orders[0][1] == 40 < orders[0][0]  # 40 order numbers, each counted once
    # The graph one call at a time makes (on a DuckDB file of its own), the file's calls
    # applied twice too (an import applies them again: a token moved between two users on
    # a shared computer moves again).
    reference = open_db(tmp_path / "reference.duckdb")
    try:
        one_by_one = IdentityGraph(reference)
        for call in one_reader_calls(path) * 2:
            apply_identity(one_by_one, TENANT, call, "import")
        expected_graph = identity_state(reference)
    finally:
        reference.close()
    graph_now = identity_state(store)
    assert len({node[3] for node in graph_now["nodes"]}) == 29  # 7 tokens, 11 ids, 11 emails
    assert graph_now["nodes"] == expected_graph["nodes"]
    assert graph_now["links"] == expected_graph["links"]


def test_erased_people_are_left_out(tmp_path: Path) -> None:
    path = lines_file(tmp_path / "lines.ndjson", 2_000)
    store = open_db(tmp_path / "e.duckdb")
    try:
        erased = frozenset({(TENANT, "token", "anon-00000007"), (TENANT, "client_id", "user-3")})
        job = ImportJob(TENANT, "auto", TENANT, erased)
        with import_workers(2) as pool:
            result = import_to_store(path, job, store, IdentityGraph(store), pool, run_bytes=16_384)
        tokens = {t for (t,) in store.query("SELECT DISTINCT token FROM events")}
        values = {v for (v,) in store.query("SELECT value FROM identity_nodes")}
    finally:
        store.close()
    assert "anon-00000007" not in tokens
    assert "anon-00000008" in tokens
    assert result.stored < result.rows  # the erased person's rows were made, not stored
    assert "user-3" not in values
    assert "anon-00000007" not in values  # its identify calls are dropped too
    assert "user-4" in values


def test_a_killed_import_leaves_no_worker_behind(tmp_path: Path) -> None:
    """Killed outright (no Ctrl-C to shut the pool down), even while its workers are still
    starting: they end themselves."""
    path = lines_file(tmp_path / "lines.ndjson", 400_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    command = [sys.executable, "-m", "footfall", "import", str(path)]
    workers: list[int] = []
    for round_ in range(2):  # at once, and once the workers are at work
        database = tmp_path / f"k{round_}.duckdb"
        process = subprocess.Popen(
            [*command, "--database", str(database), "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(600):
                if len(workers_of(process.pid)) >= 2:
                    break
                time.sleep(0.01)
            if round_:
                time.sleep(2)
            workers += workers_of(process.pid)
        finally:
            process.kill()
            process.wait(timeout=60)
    assert len(workers) >= 4
    for pid in workers:
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the import"


def test_line_files_read_gzip_as_gzip_does_and_lines_in_bounded_pieces(tmp_path: Path) -> None:
    """Concatenated gzip members with zero padding read as ``gzip`` reads them; the
    splitter gives the lines ``bytes.split`` gives, a line over the limit as None and a
    leading byte-order mark dropped, however the blocks cut them."""
    lines = [json.dumps({"n": i, "pad": "x" * (i % 7)}).encode() for i in range(2_000)]
    data = b"\n".join(lines) + b"\n"
    half = len(data) // 2
    path = tmp_path / "members.ndjson.gz"
    path.write_bytes(gzip.compress(data[:half]) + b"\0" * 3 + gzip.compress(data[half:]) + b"\0")
    assert gzip.decompress(path.read_bytes()) == data
    with open_lines(path) as source:
        assert list(source) == lines
        assert source.damage is None
    rng = random.Random(27)
    for _ in range(2_000):
        limit = rng.randint(0, 12)
        body = b"\n".join(
            bytes(rng.choice(b"ab\xef") for _ in range(rng.randint(0, 20)))
            for _ in range(rng.randint(0, 6))
        ) + rng.choice([b"", b"\n"])
        raw = (BOM if rng.random() < 0.3 else b"") + body
        body = raw.removeprefix(BOM)
        expected = body.split(b"\n")
        if expected and not expected[-1]:
            expected.pop()
        splitter = LineSplitter(limit)
        got: list[bytes | None] = []
        cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, 3))) if raw else []
        for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
            got += splitter.feed(raw[start:end])
        got += splitter.finish()
        assert got == [None if len(line) > limit else line for line in expected], raw
