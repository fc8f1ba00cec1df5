"""The ingest journal: framing, CRC and replay on real files; the committer on a real DuckDB
file; and real servers killed with SIGKILL, restarted, and read back."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from conftest import CLEAN_EXIT, Server, config_with
from footfall.ingest.encoded import FIELDS
from footfall.ingest.journal import (
    MAGIC,
    Journal,
    JournalCommitter,
    JournalError,
)
from footfall.ingest.validate import now_us
from footfall.store.base import EventRow
from footfall.store.duckdb import DuckDBStore

# --------------------------------------------------------------------------- the log itself


def payload(tokens: list[str]) -> bytes:
    """A record as the writer makes it: parts (here one, of value lists in FIELDS order),
    and duplicate flags."""
    rows = [_values(t) for t in tokens]
    return msgspec.msgpack.encode(([rows], [False] * len(tokens)))


def _values(token: str) -> list[Any]:
    row = EventRow(site_id="default", ts_us=1, received_us=2, event="visitor", token=token)
    return [getattr(row, name) for name in FIELDS]


def tokens_of(journal: Journal, loaded: int) -> list[list[str]]:
    where = FIELDS.index("token")
    return [[row[where] for row in record.rows] for record in journal.recover(loaded)]


def write(directory: Path, groups: list[list[str]], segment_bytes: int = 1 << 20) -> list[int]:
    journal = Journal(directory, segment_bytes)
    assert list(journal.recover(0)) == []
    ends = []
    for group in groups:
        ends.append(journal.append(payload(group)))
    journal.close(0)  # nothing loaded: every segment stays
    return ends


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.journal"))


def test_records_come_back_in_order_after_the_loaded_position(tmp_path: Path) -> None:
    ends = write(tmp_path, [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]])
    assert tokens_of(Journal(tmp_path), 0) == [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]]
    assert tokens_of(Journal(tmp_path), ends[0]) == [["b1"], ["c1", "c2", "c3"]]
    assert tokens_of(Journal(tmp_path), ends[2]) == []
    replayed = Journal(tmp_path)
    list(replayed.recover(ends[1]))
    assert replayed.end == ends[2]  # appends continue after the last record


@pytest.mark.parametrize("damage", ["cut-payload", "cut-frame", "bad-crc", "zeros"])
def test_a_torn_tail_is_truncated_and_the_rest_kept(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    ends = write(tmp_path, [["a1"], ["b1", "b2"]])
    [segment] = segment_files(tmp_path)
    good_size = segment.stat().st_size
    body = payload(["torn-1", "torn-2"])
    frame = struct.pack("<II", len(body), zlib.crc32(body)) + body
    with segment.open("ab") as file:
        if damage == "cut-payload":
            file.write(frame[: len(frame) - 5])
        elif damage == "cut-frame":
            file.write(frame[:5])
        elif damage == "bad-crc":
            file.write(frame[:-1] + bytes([frame[-1] ^ 0xFF]))
        else:
            file.write(bytes(4096))  # a crash can leave the size grown, the blocks unwritten
    journal = Journal(tmp_path)
    assert tokens_of(journal, 0) == [["a1"], ["b1", "b2"]]
    assert segment.stat().st_size == good_size
    assert journal.end == ends[-1]
    assert "journal tail torn" in caplog.text
    # The next append starts cleanly after the last whole record, in a new segment.
    end = journal.append(payload(["after"]))
    journal.close(0)
    assert end > ends[-1]
    assert tokens_of(Journal(tmp_path), 0) == [["a1"], ["b1", "b2"], ["after"]]


def test_after_a_failed_write_the_half_record_is_cut_and_appends_go_on(tmp_path: Path) -> None:
    """What the writer does when a write fails (the group got 503): the record never counts."""
    journal = Journal(tmp_path)
    assert list(journal.recover(0)) == []
    good = journal.append(payload(["kept-1"]))
    journal.append(payload(["failed"]))  # as if this write had failed half-way
    journal.abandon_tail(good)
    journal.append(payload(["kept-2"]))
    journal.close(0)
    assert tokens_of(Journal(tmp_path), 0) == [["kept-1"], ["kept-2"]]
    assert len(segment_files(tmp_path)) == 2  # the next records went to a new segment


def test_a_segment_whose_header_never_reached_disk_is_removed(tmp_path: Path) -> None:
    ends = write(tmp_path, [["a1"]])
    torn = tmp_path / f"{ends[-1]:020d}.journal"
    torn.write_bytes(MAGIC[:5])
    journal = Journal(tmp_path)
    assert tokens_of(journal, 0) == [["a1"]]
    assert not torn.exists()


def test_segments_rotate_by_size_and_are_deleted_once_loaded(tmp_path: Path) -> None:
    groups = [[f"t{i:03d}-{j}" for j in range(20)] for i in range(12)]
    ends = write(tmp_path, groups, segment_bytes=4096)
    files = segment_files(tmp_path)
    assert len(files) >= 3
    # A segment is named by its start position: each starts where the previous ended.
    starts = [int(f.name.split(".")[0]) for f in files]
    assert starts[0] == 0
    assert tokens_of(Journal(tmp_path), 0) == groups
    journal = Journal(tmp_path, 4096)
    list(journal.recover(0))
    journal.release(starts[2])  # everything before the third segment is loaded
    assert segment_files(tmp_path) == files[2:]
    journal.release(ends[-1])
    assert segment_files(tmp_path) == []


def test_journal_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "db.duckdb.journal"
    write(directory, [["a1"]])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [segment] = segment_files(directory)
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600


def test_rows_of_an_older_field_list_are_read_with_defaults(tmp_path: Path) -> None:
    """A segment written before EventRow grew a field still replays (fields are named)."""
    old_fields = [f for f in FIELDS if f != "id_kind"]
    header = msgspec.msgpack.encode({"format": 1, "start": 0, "fields": old_fields})
    known = {"site_id": "default", "token": "old-token", "event": "visitor"}
    body = msgspec.msgpack.encode(([[known.get(f, 0) for f in old_fields]], [False]))
    (tmp_path / f"{0:020d}.journal").write_bytes(
        MAGIC
        + struct.pack("<II", len(header), zlib.crc32(header))
        + header
        + struct.pack("<II", len(body), zlib.crc32(body))
        + body
    )
    [record] = Journal(tmp_path).recover(0)
    [values] = record.rows
    assert values[FIELDS.index("token")] == "old-token"
    assert values[FIELDS.index("id_kind")] == "token"


def test_a_position_inside_a_record_is_refused(tmp_path: Path) -> None:
    """The journal of another database: refuse rather than load half-guessed rows."""
    ends = write(tmp_path, [["a1"], ["b1"]])
    with pytest.raises(JournalError):
        list(Journal(tmp_path).recover(ends[0] + 3))


# --------------------------------------------------------------------------- the committer


def purchase(order: str, token: str, site: str = "default") -> EventRow:
    ts = now_us()
    return EventRow(
        site_id=site, ts_us=ts, received_us=ts, event="purchase", token=token, order_num=order
    )


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckDBStore]:
    store = DuckDBStore(str(tmp_path / "store.duckdb"))
    store.migrate()
    store.upsert_site("default", "Default", ["*"])
    store.upsert_site("shop2", "Shop 2", [])
    yield store
    store.close()


def test_committer_flags_repeats_journaled_loaded_and_after_restart(
    duck: DuckDBStore, tmp_path: Path
) -> None:
    directory = tmp_path / "store.duckdb.journal"

    async def first_run() -> list[list[int]]:
        # A long interval: after the first load, later groups wait in the journal unloaded.
        committer = JournalCommitter(duck, directory, load_interval_seconds=60)
        committer.start()
        try:
            answers = [await committer.submit([purchase("O-1", "buyer-0001")])]
            await committer.settled()
            answers.append(await committer.submit([purchase("O-2", "buyer-0002")]))
            assert committer.health()["unloaded_events"] == 1
            answers.append(  # O-2 is only in the journal, O-1 only in the database
                await committer.submit(
                    [
                        purchase("O-2", "buyer-0003"),
                        purchase("O-1", "buyer-0004"),
                        purchase("O-1", "buyer-0005", site="shop2"),
                        purchase("O-3", "buyer-0006"),
                        purchase("O-3", "buyer-0007"),
                    ]
                )
            )
            return answers
        finally:
            await asyncio.to_thread(committer.stop)

    assert asyncio.run(first_run()) == [[False], [False], [True, True, False, False, True]]
    assert segment_files(directory) == []  # a clean stop loads everything and removes it

    async def second_run() -> list[int]:
        committer = JournalCommitter(duck, directory)
        committer.start()
        try:
            return await committer.submit([purchase("O-3", "buyer-0008"), purchase("O-4", "b-9")])
        finally:
            await asyncio.to_thread(committer.stop)

    assert asyncio.run(second_run()) == [True, False]
    rows = duck.query(
        "SELECT site_id, order_num, count(*), count(*) FILTER (WHERE NOT duplicate) "
        "FROM events GROUP BY ALL ORDER BY ALL"
    )
    assert rows == [
        ("default", "O-1", 2, 1),
        ("default", "O-2", 2, 1),
        ("default", "O-3", 3, 1),
        ("default", "O-4", 1, 1),
        ("shop2", "O-1", 1, 1),
    ]
    assert duck.query("SELECT count(*) FROM orders") == [(5,)]
    assert duck.journal_position() > 0


def test_a_journal_of_the_first_format_is_replayed_after_an_upgrade(
    duck: DuckDBStore, tmp_path: Path
) -> None:
    """A server stopped hard before the upgrade to Arrow parts (format 2) left records of
    format 1 (``[rows, flags]``): the new version loads them, orders and flags included."""
    directory = tmp_path / "store.duckdb.journal"
    directory.mkdir()
    header = msgspec.msgpack.encode({"format": 1, "start": 0, "fields": list(FIELDS)})
    rows = [purchase("O-9", "buyer-0001"), purchase("O-9", "buyer-0002"), purchase("O-8", "b-3")]
    records = [
        msgspec.msgpack.encode(
            ([[getattr(row, f) for f in FIELDS] for row in rows[:2]], [False, True])
        ),
        msgspec.msgpack.encode(([[getattr(row, f) for f in FIELDS] for row in rows[2:]], [False])),
    ]
    (directory / f"{0:020d}.journal").write_bytes(
        MAGIC
        + struct.pack("<II", len(header), zlib.crc32(header))
        + header
        + b"".join(struct.pack("<II", len(r), zlib.crc32(r)) + r for r in records)
    )
    committer = JournalCommitter(duck, directory)
    assert committer.replayed == 3
    assert duck.query("SELECT token, order_num, duplicate FROM events ORDER BY token") == [
        ("b-3", "O-8", False),
        ("buyer-0001", "O-9", False),
        ("buyer-0002", "O-9", True),
    ]
    assert duck.query("SELECT order_num FROM orders ORDER BY 1") == [("O-8",), ("O-9",)]


def test_settled_waits_for_the_load_of_answered_events(duck: DuckDBStore, tmp_path: Path) -> None:
    async def run() -> tuple[int, int]:
        committer = JournalCommitter(duck, tmp_path / "j", load_interval_seconds=60)
        committer.start()
        try:
            await committer.submit([purchase("W-1", "warm-token")])  # loads at once (idle)
            await committer.settled()
            rows = [purchase(f"R-{i}", f"reader-{i:04d}") for i in range(10)]
            await committer.submit(rows)
            before = duck.count_events()  # the interval has not passed: not loaded yet
            await committer.settled()
            return before, duck.count_events()
        finally:
            await asyncio.to_thread(committer.stop)

    assert asyncio.run(run()) == (1, 11)


# --------------------------------------------------------------------------- real servers


SLOW_LOADS = config_with("journal_load_interval_ms = 10000", "rate_limit_per_minute = 0")
"""A server whose loader waits 10 s between loads: acknowledged events sit in the journal."""


def journal_dir(server: Server) -> Path:
    return Path(f"{server.database}.journal")


def post(api: httpx.Client, token: str, **data: Any) -> dict[str, Any]:
    event = "purchase" if "orderNum" in data else "visitor"
    answer = api.post("/api/analytics/track", json={"event": event, "token": token, "data": data})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "srv", config=SLOW_LOADS).start()
    yield srv
    if srv.process is not None:
        srv.stop()


def test_journaled_events_are_replayed_once_after_sigkill(slow_server: Server) -> None:
    with slow_server.client("10.9.0.1") as api:
        post(api, "warm-token-0")  # loaded at once; the next ones wait for the interval
        for i in range(50):
            post(api, f"replay-token-{i:03d}")
        health = api.get("/healthz").json()["ingest"]
    assert health["mode"] == "journal"
    assert health["unloaded_events"] > 0
    assert slow_server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert slow_server.rows("SELECT count(*) FROM events")[0][0] < 51
    slow_server.start()
    assert slow_server.stop() in CLEAN_EXIT
    assert slow_server.rows("SELECT count(*), count(DISTINCT token) FROM events") == [(51, 51)]
    assert "journal replayed" in slow_server.log.read_text()
    assert segment_files(journal_dir(slow_server)) == []


def test_a_torn_journal_tail_is_truncated_and_the_server_starts(slow_server: Server) -> None:
    with slow_server.client("10.9.0.2") as api:
        for i in range(20):
            post(api, f"torn-token-{i:03d}")
    slow_server.stop(signal.SIGKILL)
    [segment] = segment_files(journal_dir(slow_server))
    with segment.open("ab") as file:  # what a crash mid-write leaves: a record cut short
        file.write(struct.pack("<II", 5000, 12345) + b"never acknowledged")
    slow_server.start()
    with slow_server.client("10.9.0.3") as api:
        post(api, "after-restart")
    assert slow_server.stop() in CLEAN_EXIT
    log = [json.loads(line) for line in slow_server.log.read_text().splitlines() if "{" in line]
    assert any(r["message"].startswith("journal tail torn") for r in log if "message" in r)
    stored = slow_server.rows("SELECT token, count(*) FROM events GROUP BY token")
    assert dict(stored) == {**{f"torn-token-{i:03d}": 1 for i in range(20)}, "after-restart": 1}


def test_a_repeated_order_is_flagged_before_load_and_across_a_crash(slow_server: Server) -> None:
    with slow_server.client("10.9.0.4") as api:
        post(api, "warm-token-1")
        assert post(api, "buyer-token-1", orderNum="ORD-77") == {"success": True}
        assert post(api, "buyer-token-2", orderNum="ORD-77") == {"success": True, "duplicate": True}
    slow_server.stop(signal.SIGKILL)  # ORD-77 is in the journal only
    slow_server.start()
    with slow_server.client("10.9.0.5") as api:
        again = post(api, "buyer-token-3", orderNum="ORD-77")
        other_site = api.post(
            "/api/analytics/track?site=other",
            json={"event": "purchase", "token": "buyer-token-4", "data": {"orderNum": "ORD-77"}},
        ).json()
    assert again == {"success": True, "duplicate": True}
    assert other_site == {"success": True}
    slow_server.stop()
    assert slow_server.rows(
        "SELECT site_id, count(*), count(*) FILTER (WHERE NOT duplicate) FROM events "
        "WHERE order_num = 'ORD-77' GROUP BY ALL ORDER BY ALL"
    ) == [("default", 3, 1), ("other", 1, 1)]


def test_a_person_view_sees_the_event_answered_just_before(slow_server: Server) -> None:
    slow_server.stop()
    key = slow_server.new_key("default")
    slow_server.start()
    with slow_server.client("10.9.0.6", headers={"authorization": f"Bearer {key}"}) as api:
        post(api, "warm-token-2")  # the idle loader loads this one at once
        identified = api.post(
            "/api/identify", json={"token": "journey-token-1", "user": {"email": "ryw@example.com"}}
        )
        assert identified.status_code == 200
        post(api, "journey-token-1", text="hello")  # waits for the 10 s interval...
        journey = api.get("/api/persons/ryw@example.com/journey").json()  # ...unless read
    assert [e["data"].get("text") for e in journey["events"]] == ["hello"]


def test_direct_mode_commits_each_group_to_duckdb(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config=config_with("ingest_journal = false")).start()
    try:
        with server.client("10.9.0.7") as api:
            assert api.get("/healthz").json()["ingest"]["mode"] == "direct"
            assert post(api, "direct-token-1", orderNum="D-1") == {"success": True}
            assert post(api, "direct-token-2", orderNum="D-1") == {
                "success": True,
                "duplicate": True,
            }
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not journal_dir(server).exists()
    assert server.rows("SELECT token, duplicate FROM events ORDER BY token") == [
        ("direct-token-1", False),
        ("direct-token-2", True),
    ]


def crash_with_unloaded_events(server: Server, ip: str) -> None:
    with server.client(ip) as api:
        post(api, "warm-token-3")
        for i in range(5):
            post(api, f"left-token-{i}")
    server.stop(signal.SIGKILL)
    assert server.rows("SELECT count(*) FROM events")[0][0] < 6


def test_the_cli_loads_what_a_crashed_server_left(slow_server: Server) -> None:
    """A CLI erase on the file must not be undone by a later replay: the CLI loads first."""
    crash_with_unloaded_events(slow_server, "10.9.0.8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "footfall",
            "sites",
            "list",
            "--database",
            str(slow_server.database),
        ],
        env=slow_server.env,
        capture_output=True,
        check=True,
    )
    assert slow_server.rows("SELECT count(*) FROM events") == [(6,)]
    assert segment_files(journal_dir(slow_server)) == []


def test_a_direct_mode_start_loads_what_journal_mode_left(slow_server: Server) -> None:
    crash_with_unloaded_events(slow_server, "10.9.0.9")
    slow_server.config.write_text(
        config_with("journal_load_interval_ms = 10000", "ingest_journal = false")
    )
    slow_server.start()
    assert slow_server.stop() in CLEAN_EXIT
    assert slow_server.rows("SELECT count(*), count(DISTINCT token) FROM events") == [(6, 6)]


def message(token: str, mid: str, site: str = "default") -> EventRow:
    ts = now_us()
    return EventRow(
        site_id=site, ts_us=ts, received_us=ts, event="visitor", token=token, message_id=mid
    )


def test_committer_stores_a_message_id_once_pending_loaded_restarted_and_rebuilt(
    duck: DuckDBStore, tmp_path: Path
) -> None:
    """The writer's hashes of known ids answer most lookups; each of their states (id
    pending in the journal, loaded, known from the database at start, hashes rebuilt after
    old ids were forgotten) still finds a repeat."""
    directory = tmp_path / "store.duckdb.journal"
    stored, repeat = 0, 2

    async def run(first: bool) -> list[list[int]]:
        committer = JournalCommitter(duck, directory, load_interval_seconds=60)
        committer.start()
        try:
            answers = []
            if first:
                answers.append(await committer.submit([message("tok-msg-001", "m-1")]))
                answers.append(await committer.submit([message("tok-msg-001", "m-1")]))  # pending
                await committer.settled()
                answers.append(await committer.submit([message("tok-msg-001", "m-1")]))  # loaded
            answers.append(await committer.submit([message("tok-msg-001", "m-1")]))
            committer.forget_old_message_ids()
            answers.append(
                await committer.submit(
                    [
                        message("tok-msg-002", "m-1"),
                        message("tok-msg-002", "m-2"),
                        message("tok-msg-002", "m-2"),
                        message("tok-msg-002", "m-1", "shop2"),
                    ]
                )
            )
            return answers
        finally:
            await asyncio.to_thread(committer.stop)

    assert asyncio.run(run(True)) == [
        [stored],
        [repeat],
        [repeat],
        [repeat],
        [repeat, stored, repeat, stored],
    ]
    assert asyncio.run(run(False)) == [[repeat], [repeat, repeat, repeat, repeat]]
    assert duck.count_events() == 3
