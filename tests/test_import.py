"""``footfall import``: NDJSON in Segment's and the tracking format, into the file and into a
running server (--server); per-line rejects with their line numbers; idempotent."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import Server

LINES: list[Any] = [
    {
        "type": "identify",
        "userId": "imp-user-1",
        "anonymousId": "imp-anon-0001",
        "traits": {"email": "imp@shop.test"},
        "messageId": "i-1",
    },
    {
        "type": "page",
        "anonymousId": "imp-anon-0001",
        "messageId": "p-1",
        "timestamp": "2025-03-01T10:00:00Z",
        "context": {"page": {"url": "https://shop.test/"}},
    },
    {
        "type": "track",
        "event": "Order Completed",
        "userId": "imp-user-1",
        "messageId": "o-1",
        "timestamp": "2025-03-01T10:05:00Z",
        "properties": {
            "order_id": "IMP-1",
            "currency": "EUR",
            "revenue": 40,
            "products": [{"product_id": "A", "price": 20, "quantity": 2}],
        },
    },
    {
        "type": "track",
        "event": "Signed Up",
        "anonymousId": "imp anon with spaces",
        "messageId": "s-1",
        "timestamp": "2025-03-02T08:00:00Z",
    },
    {
        "event": "message_sent",
        "token": "imp-token-0002",
        "data": {"text": "hello"},
        "ts": 1740823200000,
    },
    {
        "event": "message_sent",
        "token": "imp-token-0002",
        "data": {"text": "hello"},
        "ts": 1740823200000,
    },
    "not an object",
    {"event": "purchase", "token": "imp-token-0003", "data": {"value": -3}},
    {"type": "track", "anonymousId": "imp-anon-0009", "messageId": "x-1"},
]


def write(path: Path, lines: list[Any], zipped: bool = False) -> Path:
    text = "".join(json.dumps(line) + "\n" for line in lines) + "{cut short\n\n"
    path.write_bytes(gzip.compress(text.encode()) if zipped else text.encode())
    return path


def footfall(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )


def test_import_into_the_file_reports_rejects_by_line_and_adds_nothing_twice(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    database = str(tmp_path / "f.duckdb")
    source = write(tmp_path / "events.ndjson.gz", LINES, zipped=True)
    first = footfall("import", str(source), "--database", database, env=env)
    assert first.returncode == 1, first.stderr  # some lines were rejected
    assert "5 events stored" in first.stdout, first.stdout
    rejected = [line for line in first.stderr.splitlines() if line.startswith("line ")]
    assert [r.split(":")[0] for r in rejected] == ["line 7", "line 8", "line 9", "line 10"]
    assert "data.value" in rejected[1]
    assert "event" in rejected[2]
    again = footfall("import", str(source), "--database", database, env=env)
    assert "0 events stored, 5 already there" in again.stdout, again.stdout
    con = duckdb.connect(database, read_only=True)
    try:
        events = con.execute(
            "SELECT event, custom_event, token, id_kind, strftime(ts, '%Y-%m-%d %H:%M') "
            "FROM events ORDER BY ts, event, token"
        ).fetchall()
        nodes = con.execute("SELECT kind, value FROM identity_nodes ORDER BY kind").fetchall()
        revenue = con.execute("SELECT sum(total_value_base) FROM events").fetchone()
    finally:
        con.close()
    hashed = events[4][2]
    assert hashed.startswith("sg-")  # an anonymousId outside the token rule, hashed
    assert events == [  # every line at its own time, however old
        ("message_sent", None, "imp-token-0002", "token", "2025-03-01 10:00"),
        ("message_sent", None, "imp-token-0002", "token", "2025-03-01 10:00"),
        ("visitor", None, "imp-anon-0001", "token", "2025-03-01 10:00"),
        ("purchase", None, "imp-user-1", "client_id", "2025-03-01 10:05"),
        ("custom", "Signed Up", hashed, "token", "2025-03-02 08:00"),
    ]
    assert nodes == [
        ("client_id", "imp-user-1"),
        ("email", "imp@shop.test"),
        ("token", "imp-anon-0001"),
    ]
    assert revenue == (40.0,)


def test_import_to_a_running_server(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv")
    key = server.start_with_key()
    try:
        source = write(tmp_path / "events.ndjson", LINES)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
        sent = footfall("import", str(source), "--server", server.url, "--key", key, env=env)
        assert sent.returncode == 1, sent.stderr
        rejected = [line.split(":")[0] for line in sent.stderr.splitlines() if line[:5] == "line "]
        assert rejected == ["line 7", "line 8", "line 9", "line 10"]
        again = footfall("import", str(source), "--server", server.url, "--key", key, env=env)
        assert again.returncode == 1
        # A byte-order mark, and gzip cut short: what came before the cut is sent.
        whole = gzip.compress(b"\xef\xbb\xbf" + viewed(2_000, "srv"))
        marked = tmp_path / "marked.ndjson.gz"
        marked.write_bytes(whole[: len(whole) // 2])
        cut = footfall("import", str(marked), "--server", server.url, "--key", key, env=env)
        assert cut.returncode == 1, cut.stderr
        found = re.search(
            r"the gzip data is cut short after line (\d+);", " ".join(cut.stderr.split())
        )
        assert found, cut.stderr
        assert "line 1:" not in cut.stderr, cut.stderr
        read = int(found.group(1))
        assert 0 < read < 2_000
    finally:
        server.stop()
    assert server.rows("SELECT count(*) FROM events") == [(5 + read,)]


# A line of Segment's archive: sent 30 s after it happened by a client whose clock ran 2 min
# fast, received by Segment at 10:00:00 (what Segment stores as `timestamp`: 09:59:30).
ARCHIVED = [
    {
        "type": "track",
        "event": "Clicked Help",
        "anonymousId": "arch-anon-0001",
        "messageId": "arch-1",
        "originalTimestamp": "2025-10-01T10:01:30.000Z",
        "sentAt": "2025-10-01T10:02:00.000Z",
        "receivedAt": "2025-10-01T10:00:00.000Z",
        "timestamp": "2025-10-01T09:59:30.000Z",
    },
    {  # a warehouse export: the corrected timestamp alone, no arrival to correct against
        "type": "page",
        "anonymousId": "arch-anon-0002",
        "messageId": "arch-2",
        "originalTimestamp": "2025-10-02T08:00:00.000Z",
        "sentAt": "2025-10-02T08:00:05.000Z",
        "timestamp": "2025-10-02T07:58:00.000Z",
        "context": {"page": {"url": "https://shop.test/p"}},
    },
    {  # the exact path (an identify with traits beside it), the same rule
        "type": "track",
        "event": "Order Completed",
        "userId": "arch-user-1",
        "messageId": "arch-3",
        "properties": {"order_id": "A-1", "revenue": 10, "currency": "EUR", "extra": {"k": 1}},
        "originalTimestamp": "2025-10-03T12:00:10.000Z",
        "sentAt": "2025-10-03T12:00:20.000Z",
        "receivedAt": "2025-10-03T12:00:00.000Z",
        "options": {"x": 1},
        "unknownKey": True,
    },
    {"type": "track", "event": "Bad", "anonymousId": "arch-anon-0003", "receivedAt": "soon"},
]
EXPECTED_TIMES = [
    ("arch-1", "2025-10-01 09:59:30"),
    ("arch-2", "2025-10-02 07:58:00"),
    ("arch-3", "2025-10-03 11:59:50"),
]


def test_archived_lines_land_at_their_own_time_into_the_file_and_through_a_server(
    tmp_path: Path,
) -> None:
    """Segment's correction is made against the line's receivedAt, not the import's time;
    a line without one keeps its timestamp; the same through --server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    source = write(tmp_path / "archive.ndjson", ARCHIVED)
    database = str(tmp_path / "a.duckdb")
    direct = footfall("import", str(source), "--database", database, env=env)
    assert "line 4: receivedAt" in direct.stderr, direct.stderr
    con = duckdb.connect(database, read_only=True)
    try:
        ids = con.execute("SELECT message_id FROM message_ids ORDER BY 1").fetchall()
        by_token = con.execute(
            "SELECT strftime(ts, '%Y-%m-%d %H:%M:%S') FROM events ORDER BY ts"
        ).fetchall()
    finally:
        con.close()
    assert [t for (t,) in by_token] == [t for _, t in EXPECTED_TIMES]
    assert [m for (m,) in ids] == [m for m, _ in EXPECTED_TIMES]

    server = Server(tmp_path / "srv")
    key = server.start_with_key()
    try:
        sent = footfall("import", str(source), "--server", server.url, "--key", key, env=env)
        assert "line 4: receivedAt" in sent.stderr, sent.stderr
    finally:
        server.stop()
    times = server.rows("SELECT strftime(ts, '%Y-%m-%d %H:%M:%S') FROM events ORDER BY ts")
    assert [t for (t,) in times] == [t for _, t in EXPECTED_TIMES]


def viewed(count: int, prefix: str = "m") -> bytes:
    """``count`` good Segment lines, message ids ``prefix-0`` on."""
    return b"".join(
        json.dumps(
            {
                "type": "track",
                "event": "Viewed",
                "anonymousId": f"dmg-anon-{i % 50:04d}",
                "messageId": f"{prefix}-{i}",
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def message_ids(database: Path) -> set[str]:
    con = duckdb.connect(str(database), read_only=True)
    try:
        return {m for (m,) in con.execute("SELECT message_id FROM message_ids").fetchall()}
    finally:
        con.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_gzip_file_keeps_the_lines_before_the_damage_and_says_where(
    tmp_path: Path, workers: int
) -> None:
    """Cut short, or not gzip from some byte on: the whole lines before are stored (with
    the import's workers too, which get a gzip file's lines from the main process), the
    damage is reported by line and byte offset, exit code 1, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    whole = gzip.compress(viewed(3_000))
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    first = gzip.compress(viewed(1_000))
    # A second member whose deflate data is not deflate from its first byte on.
    garbled = tmp_path / "garbled.ndjson.gz"
    garbled.write_bytes(first + gzip.compress(b"more\n")[:10] + b"\xff" * 64)
    for source, pattern in (
        (cut, r"the gzip data is cut short after line (\d+);"),
        (
            garbled,
            rf"the gzip data is not valid at byte offset {len(first) + 10} "
            r"\(invalid block type\), after line (\d+);",
        ),
    ):
        database = tmp_path / f"{source.stem}.duckdb"
        out = footfall(
            "import", str(source), "--database", str(database), "--workers", str(workers), env=env
        )
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        assert "Aborted" not in out.stderr, out.stderr
        found = re.search(pattern, " ".join(out.stderr.split()))
        assert found, out.stderr
        read = int(found.group(1))
        assert 0 < read < 3_000
        assert f"{read:,} events stored" in out.stdout, out.stdout
        assert message_ids(database) == {f"m-{i}" for i in range(read)}
        if source is garbled:
            assert read == 1_000


@pytest.mark.parametrize("workers", [0, 2])
def test_a_byte_order_mark_is_no_part_of_line_1(tmp_path: Path, workers: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    marked = b"\xef\xbb\xbf" + viewed(3)
    for name, data in (("bom.ndjson", marked), ("bom.ndjson.gz", gzip.compress(marked))):
        (tmp_path / name).write_bytes(data)
        database = tmp_path / f"{name}.duckdb"
        out = footfall(
            "import",
            str(tmp_path / name),
            "--database",
            str(database),
            "--workers",
            str(workers),
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert "3 events stored" in out.stdout, out.stdout
        assert message_ids(database) == {"m-0", "m-1", "m-2"}


LONG_LINE = 50 * 1024 * 1024

MEASURED = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as errors:
    done = subprocess.run(sys.argv[3:], stdout=out, stderr=errors)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""
"""Runs a command and prints its peak RSS in KB (the largest of it and the children it
waited for, e.g. the import's workers): from a parent of its own, so that no earlier child
of the test run counts."""


def measured_import(
    source: Path, database: Path, workers: int, env: dict[str, str]
) -> tuple[int, int, str, str]:
    """Peak RSS (KB), exit code, stdout and stderr of ``footfall import``."""
    out, errors = database.with_suffix(".out"), database.with_suffix(".err")
    command = [sys.executable, "-m", "footfall", "import", str(source)]
    command += ["--database", str(database), "--workers", str(workers)]
    probe = subprocess.run(
        [sys.executable, "-c", MEASURED, str(out), str(errors), *command],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=300,
        check=True,
    )
    peak, code = probe.stdout.split()
    return int(peak), int(code), out.read_text(), errors.read_text()


def test_a_line_longer_than_any_message_is_skipped_as_it_is_read(tmp_path: Path) -> None:
    """A 50 MB line between good lines: the good lines are stored, the long one is
    rejected by its number, and the import's peak memory is that of the same import
    without it, give or take far less than the line (plain file, with and without workers,
    and gzip)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    head, tail = viewed(2, "head"), viewed(2, "tail")
    huge = b'{"type":"track","event":"Huge","anonymousId":"long-anon-01","properties":{"b":"'
    plain = tmp_path / "long.ndjson"
    with plain.open("wb") as handle:
        handle.write(head + huge)
        for _ in range(LONG_LINE // (1 << 20)):
            handle.write(b"a" * (1 << 20))
        handle.write(b'"}}\n' + tail)
    zipped = tmp_path / "long.ndjson.gz"
    with plain.open("rb") as read, gzip.open(zipped, "wb") as write:
        while block := read.read(1 << 20):
            write.write(block)
    short = tmp_path / "short.ndjson"
    short.write_bytes(head + tail)
    short_zipped = tmp_path / "short.ndjson.gz"
    short_zipped.write_bytes(gzip.compress(head + tail))
    expected = {"head-0", "head-1", "tail-0", "tail-1"}
    for source, baseline, workers in (
        (plain, short, 0),
        (plain, short, 2),
        (zipped, short_zipped, 0),
    ):
        name = f"{source.name}-{workers}"
        base, code, _, _ = measured_import(baseline, tmp_path / f"base-{name}.duckdb", workers, env)
        assert code == 0
        peak, code, out, errors = measured_import(source, tmp_path / f"{name}.duckdb", workers, env)
        # Read whole, the line would add its size at least (some 80-100 MB, measured).
        assert (peak - base) * 1024 < LONG_LINE // 5, (name, peak, base)
        assert code == 1, errors
        assert "4 events stored" in out, out
        rejected = [line for line in errors.splitlines() if line.startswith("line ")]
        assert rejected == ["line 3: line is larger than 50000 bytes (skipped unread)"], errors
        assert message_ids(tmp_path / f"{name}.duckdb") == expected
