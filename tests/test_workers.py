"""Ingest worker processes: large batches validated and encoded outside the server process,
with the same rows, the same answers and nothing lost when a worker dies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import platform
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psutil
import pytest

from conftest import CLEAN_EXIT, SHOP, Server, eventually
from footfall.ingest.encoded import array_header, encode_rows, read_ipc
from footfall.ingest.journal import journal_table
from footfall.ingest.segment import (
    Envelope,
    decode_segment_batch,
    fast_message_decoder,
    fast_message_row,
)
from footfall.ingest.validate import (
    MAX_PAYLOAD_BYTES,
    RequestContext,
    fast_decode,
    fast_event_decoder,
    fast_rows,
    now_us,
    parse_batch,
)
from footfall.ingest.workers import (
    WORKER_MIN_BYTES,
    IngestWorkers,
    journal_ipc,
    segment_rows,
    tracking_rows,
)

EVENTS = ("visitor", "bot_open", "convo_started", "message_sent", "added_to_cart", "purchase")


def tracking_events(count: int, run: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for i in range(count):
        name = EVENTS[i % len(EVENTS)]
        data: dict[str, object] = {"chatbot_id": "bot-1", "text": f"question {i}"}
        if name == "purchase":
            data |= {"orderNum": f"{run}-order-{i // 12}", "currency": "EUR", "value": 10 + i}
        events.append({"event": name, "token": f"{run}tok{i:06d}x", "data": data, "ab_test": True})
    return events


def segment_messages(count: int, run: str) -> list[dict[str, object]]:
    return [
        {
            "type": "page" if i % 5 == 0 else "track",
            "event": "Product Added" if i % 3 == 0 else "Clicked Help",
            "anonymousId": f"{run}-anon-{i}",
            "messageId": f"{run}-m-{i}",
            "timestamp": "2026-11-20T10:00:00.000Z",
            "properties": {"product_id": "SKU-1", "price": 12.5, "text": "where is my order?"},
            "context": {"userAgent": "Mozilla/5.0 test", "page": {"url": "https://shop.test/p"}},
        }
        for i in range(count)
    ]


def body(value: object) -> bytes:
    raw = json.dumps(value).encode()
    assert len(raw) >= WORKER_MIN_BYTES  # large enough to be offered to a worker
    return raw


# ------------------------------------------------------------------ the worker functions


def test_tracking_rows_are_the_fast_path_rows() -> None:
    raw = body({"events": tracking_events(400, "unit")})
    ctx = RequestContext(site_id="default", now_us=now_us(), user_agent="UA", page_url=None)
    encoded = tracking_rows(raw, ctx, 10_000)
    assert encoded is not None
    events, _ = parse_batch(raw)
    expected = fast_rows(fast_decode(events, fast_event_decoder, MAX_PAYLOAD_BYTES), ctx)
    assert encoded.rows() == expected
    assert len(encoded) == 400
    assert sum(encoded.events.values()) == 400
    purchases = [row for row in expected if row is not None and row.event == "purchase"]
    assert [(site, order) for _, site, order, _ in encoded.orders] == [
        (row.site_id, row.order_num) for row in purchases
    ]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda events: events[7].update(token="bad token!"), "one invalid event"),
        (lambda events: events[3].update(surprise=1), "a key the fast path does not know"),
        (lambda events: events[9].update(site="other"), "an event naming another site"),
    ],
)
def test_tracking_rows_hand_back_what_the_server_must_decide(change, why) -> None:  # type: ignore[no-untyped-def]
    events = tracking_events(400, "back")
    change(events)
    ctx = RequestContext(site_id="default", now_us=now_us())
    assert tracking_rows(body({"events": events}), ctx, 10_000) is None, why


def test_tracking_rows_hand_back_bad_bodies_and_oversized_batches() -> None:
    ctx = RequestContext(site_id="default", now_us=now_us())
    raw = body({"events": tracking_events(400, "size")})
    assert tracking_rows(raw, ctx, 399) is None
    assert tracking_rows(raw[:-1], ctx, 10_000) is None
    assert (
        tracking_rows(body({"site": "other", "events": tracking_events(400, "s")}), ctx, 10_000)
        is None
    )


def test_segment_rows_are_the_fast_path_rows() -> None:
    raw = body({"batch": segment_messages(300, "seg"), "sentAt": "2026-11-20T10:00:01.000Z"})
    envelope = Envelope(site_id="default", received_us=now_us(), sent_at="2026-11-20T10:00:01.000Z")
    encoded = segment_rows(raw, envelope)
    assert encoded is not None
    items = decode_segment_batch(raw).batch
    expected = [
        fast_message_row(message, envelope)
        for message in fast_decode(items, fast_message_decoder, MAX_PAYLOAD_BYTES)
    ]
    assert encoded.rows() == expected
    assert [(site, message) for _, site, message in encoded.messages] == [
        ("default", f"seg-m-{i}") for i in range(300)
    ]
    with_identify = segment_messages(300, "id")
    with_identify[5] = {"type": "identify", "userId": "u-1", "messageId": "id-x"}
    assert segment_rows(body({"batch": with_identify}), envelope) is None


def test_journal_ipc_is_the_journal_table() -> None:
    """A record of a value-list part and an Arrow part (as a group of a small batch and a
    worker's batch is written) loads as the rows, in order, with the writer's flags."""
    ctx = RequestContext(site_id="default", now_us=now_us(), user_agent="UA")
    events, _ = parse_batch(body({"events": tracking_events(300, "ipc")}))
    rows = [row for row in fast_rows(fast_decode(events, fast_event_decoder, 1 << 20), ctx) if row]
    values_part, arrow_part = encode_rows(rows[:120]), encode_rows(rows[120:], arrow=True)
    assert arrow_part.rows() == rows[120:]  # Arrow back to rows: the rare repeat path
    assert values_part.rows() == rows[:120]
    flags = [i % 50 == 0 for i in range(len(rows))]
    payload = b"".join(
        (
            b"\x92",
            array_header(2),
            values_part.journal_part(),
            arrow_part.journal_part(),
            msgspec.msgpack.encode(flags),
        )
    )
    table = read_ipc(journal_ipc([payload, payload]))
    assert table.equals(journal_table([payload, payload]))
    assert table.num_rows == 2 * len(rows)
    assert table.column("token").to_pylist() == [row.token for row in rows] * 2
    assert table.column("duplicate").to_pylist() == flags + flags
    assert table.column("data").to_pylist() == [row.data for row in rows] * 2


# ------------------------------------------------------------------ a real server


def worker_batches(client: httpx.Client) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("footfall_ingest_worker_batches_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            found[outcome] = float(line.rsplit(" ", 1)[1])
    return found


def post_events(client: httpx.Client, events: list[dict[str, object]]) -> httpx.Response:
    return client.post("/api/analytics/batch", content=body({"events": events}))


def children(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children()]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; any still running when it ends (a failed assert) stopped."""
    started: list[Server] = []
    yield started
    for srv in started:
        if srv.process is not None:
            srv.stop(signal.SIGKILL)


def test_large_batches_go_through_workers_and_store_every_event(
    tmp_path: Path, servers: list[Server]
) -> None:
    srv = Server(tmp_path / "srv", FOOTFALL_INGEST_WORKERS="2")
    servers.append(srv)
    write_key = srv.write_key()
    srv.start()
    auth = {"authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    with srv.client("10.200.0.1", headers={"origin": SHOP}) as client:
        assert client.get("/healthz").json()["ingest_workers"] == 2
        sent = post_events(client, tracking_events(480, "w"))
        assert sent.status_code == 200, sent.text
        answer = sent.json()
        assert answer["accepted"] == 480
        assert answer["rejected"] == 0
        # A repeated order inside the batch is flagged, as the server itself would.
        repeats = [r["index"] for r in answer["results"] if r.get("duplicate")]
        expected_repeats = [i for i in range(480) if i % 12 == 11]  # 2nd purchase per order
        assert repeats == expected_repeats
        bad = tracking_events(480, "b")
        bad[42]["token"] = "no spaces allowed"
        mixed = post_events(client, bad)
        assert mixed.status_code == 200
        assert mixed.json()["accepted"] == 479
        refused = [r for r in mixed.json()["results"] if not r["success"]]
        assert [r["index"] for r in refused] == [42]
        assert refused[0]["error"]["field"] == "token"
        segment = body({"batch": segment_messages(400, "sw")})
        first = client.post("/v1/batch", content=segment, headers=auth)
        again = client.post("/v1/batch", content=segment, headers=auth)
        assert first.json() == {"success": True, "stored": 400}
        assert again.json() == {"success": True, "stored": 0}  # re-sent: stored once
        counts = worker_batches(client)
        assert counts.get("taken", 0) >= 3
        assert counts.get("handed_back", 0) >= 1
    assert srv.stop() in CLEAN_EXIT
    stored = dict(srv.rows("SELECT event, count(*) FROM events GROUP BY ALL"))
    assert sum(stored.values()) == 480 + 479 + 400
    assert stored["purchase"] == 160
    orders = srv.rows("SELECT count(*) FROM orders")[0][0]
    assert orders == len({f"{run}-order-{i // 12}" for run in ("w", "b") for i in range(480)})
    assert srv.rows("SELECT count(*) FROM message_ids")[0][0] == 400


def test_a_dead_worker_costs_nothing_and_workers_end_with_a_killed_server(
    tmp_path: Path, servers: list[Server]
) -> None:
    srv = Server(tmp_path / "srv", FOOTFALL_INGEST_WORKERS="1")
    servers.append(srv)
    srv.start()
    assert srv.process is not None
    with srv.client("10.200.0.2") as client:
        assert post_events(client, tracking_events(300, "a")).status_code == 200
        workers = children(srv.process.pid)
        assert workers, "the batch started a worker process"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        for run in ("c", "d"):
            sent = post_events(client, tracking_events(300, run))
            assert sent.status_code == 200
            assert sent.json()["accepted"] == 300
        assert client.get("/healthz").json()["ingest_workers"] == 0  # on without them
    srv.stop()
    assert "an ingest worker process died" in srv.log.read_text()
    assert srv.rows("SELECT count(*) FROM events")[0][0] == 900

    srv.start()
    assert srv.process is not None
    with srv.client("10.200.0.3") as client:
        assert post_events(client, tracking_events(300, "e")).status_code == 200
    workers = children(srv.process.pid)
    assert workers
    srv.stop(signal.SIGKILL)
    assert eventually(lambda: not any(alive(pid) for pid in workers), 10)

    # Killed while its first worker is still starting (importing its modules): that worker
    # must not wait for a parent that is gone.
    srv.start()
    assert srv.process is not None
    pid = srv.process.pid

    def send() -> None:
        with contextlib.suppress(httpx.TransportError), srv.client("10.200.0.5") as client:
            post_events(client, tracking_events(300, "f"))  # no answer: the server dies

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert eventually(lambda: bool(children(pid)), 10)
    starting = children(pid)
    srv.stop(signal.SIGKILL)
    assert eventually(lambda: not any(alive(child) for child in starting), 10)
    sender.join(30)


def alive(pid: int) -> bool:
    """Running, not ended (an ended process the container's init never reaps stays a zombie)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ------------------------------------------------------------------ workers that die or stall


WRITE_SYSCALL = {"x86_64": 1, "aarch64": 64}.get(platform.machine())


def read_bytes(pid: int) -> int:
    """Bytes the process has read so far (``rchar`` of /proc/PID/io)."""
    with open(f"/proc/{pid}/io") as io:
        return int(io.read().split("rchar:")[1].split()[0])


def blocked_writing(pid: int) -> bool:
    """Asleep in write(2): a pipe the other end does not read."""
    with open(f"/proc/{pid}/stat") as stat:
        state = stat.read().rsplit(")", 1)[1].split()[0]
    with open(f"/proc/{pid}/syscall") as syscall:
        number = syscall.read().split()[0]
    return state == "S" and number == str(WRITE_SYSCALL)


def resource_tracker(pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(pid).children()
        if any("resource_tracker" in part for part in child.cmdline())
    ]


def worker_processes(pid: int) -> list[int]:
    """The server's ingest workers: its children but for multiprocessing's resource tracker."""
    tracker = {child.pid for child in resource_tracker(pid)}
    return [child for child in children(pid) if child not in tracker]


def test_a_worker_killed_halfway_through_its_answer_is_noticed(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Killed while writing its answer (half of it in the pipe), after multiprocessing's
    resource tracker was killed too: the batch it held and every later one are answered
    (handled by the other worker or the server), /healthz counts the one worker left and
    SIGTERM ends the server promptly. With one result pipe shared by all the workers
    (``ProcessPoolExecutor``) the server read the rest of that answer forever: every batch
    hung, /healthz said 2, and SIGTERM hung."""
    if WRITE_SYSCALL is None or not os.path.exists("/proc/self/syscall"):
        pytest.skip("reads /proc/PID/syscall (Linux on x86_64 or aarch64)")
    srv = Server(tmp_path / "srv", FOOTFALL_INGEST_WORKERS="2", FOOTFALL_MAX_BATCH_EVENTS="5000")
    servers.append(srv)
    srv.start()
    assert srv.process is not None
    server = srv.process.pid
    stored = 0

    def post(run: str, count: int) -> httpx.Response:
        """A batch, answered within 20 seconds (or ReadTimeout)."""
        raw = body({"events": tracking_events(count, run)})
        with srv.client("10.200.0.6") as client:
            return client.post("/api/analytics/batch", content=raw, timeout=20)

    warmed: list[int] = []
    warm = [
        threading.Thread(target=lambda n=n: warmed.append(post(f"warm{n}", 300).status_code))
        for n in range(4)
    ]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join(30)
    assert warmed == [200] * 4
    stored += 4 * 300
    assert eventually(lambda: len(worker_processes(server)) == 2, 20), "both workers start"
    workers = worker_processes(server)
    trackers = resource_tracker(server)
    assert trackers, "multiprocessing started its resource tracker with the workers"
    for tracker in trackers:
        tracker.kill()

    # A 5,000-event batch: the worker reads it, the server is stopped, the worker's answer
    # (some 900 KB) fills the pipe and the worker waits to write the rest: killed there.
    answers: dict[str, int | str] = {}

    def send_big(run: str) -> None:
        try:
            answers[run] = post(run, 5000).status_code
        except httpx.TransportError as exc:
            answers[run] = repr(exc)

    size = len(body({"events": tracking_events(5000, "big0")}))
    killed = None
    for attempt in range(5):  # the worker may answer before the server is stopped: again
        run = f"big{attempt}"
        before = {pid: read_bytes(pid) for pid in workers}
        sender = threading.Thread(target=send_big, args=(run,))
        sender.start()
        holder = None
        deadline = time.monotonic() + 10
        while holder is None and time.monotonic() < deadline:
            holder = next((p for p in workers if read_bytes(p) - before[p] >= size), None)
            time.sleep(0.001)  # the worker then works some 30 ms before it answers
        if holder is None:
            sender.join(30)
            continue
        os.kill(server, signal.SIGSTOP)
        try:
            if eventually(functools.partial(blocked_writing, holder), 5):
                os.kill(holder, signal.SIGKILL)
                killed = holder
        finally:
            os.kill(server, signal.SIGCONT)
        sender.join(30)
        assert not sender.is_alive()
        assert answers[run] == 200, f"the batch the killed worker held: {answers[run]}"
        stored += 5000
        if killed is not None:
            break
    assert killed is not None, "a worker was caught writing its answer"

    results: dict[int, int | str] = {}

    def send(n: int) -> None:
        try:
            sent = post(f"after{n}", 400)
            results[n] = sent.status_code if sent.status_code != 200 else sent.json()["accepted"]
        except httpx.TransportError as exc:
            results[n] = repr(exc)

    senders = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(30)
    assert results == dict.fromkeys(range(6), 400)
    stored += 6 * 400
    with srv.client("10.200.0.7") as client:
        assert eventually(lambda: client.get("/healthz").json()["ingest_workers"] == 1, 10)
    started = time.monotonic()
    srv.process.send_signal(signal.SIGTERM)
    code = srv.process.wait(timeout=20)  # TimeoutExpired: shutdown hung
    srv.process = None
    assert code in CLEAN_EXIT
    assert time.monotonic() - started < 15
    assert "an ingest worker process died" in srv.log.read_text()
    assert srv.rows("SELECT count(*) FROM events")[0][0] == stored
    assert not any(alive(pid) for pid in workers)


def test_a_stalled_worker_costs_a_batch_the_timeout_and_is_killed_at_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that does not answer (stopped here) costs a batch or a load ``timeout``:
    then the server does the work; its late answers are dropped, and ``stop`` kills a
    worker that does not end."""
    monkeypatch.setattr("footfall.ingest.workers.STOP_SECONDS", 1.0)
    workers = IngestWorkers(1, timeout=1.0)
    ctx = RequestContext(site_id="default", now_us=now_us())
    raw = body({"events": tracking_events(300, "stall")})
    events, _ = parse_batch(raw)
    rows = [row for row in fast_rows(fast_decode(events, fast_event_decoder, 1 << 20), ctx) if row]
    record = (encode_rows(rows).journal_part(), msgspec.msgpack.encode([False] * len(rows)))
    payloads = [b"".join((b"\x92", array_header(1), *record))]
    pid = None
    try:
        # The first batch also waits for the worker to start: more than a second at times.
        for _ in range(20):
            if asyncio.run(workers.tracking_batch(raw, ctx, 10_000)) is not None:
                break
        else:
            pytest.fail("the worker never answered")
        (pid,) = [
            child.pid
            for child in psutil.Process().children()
            if any("spawn_main" in part for part in child.cmdline())
        ]
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        assert asyncio.run(workers.tracking_batch(raw, ctx, 10_000)) is None
        assert workers.journal_table(payloads).equals(journal_table(payloads))
        assert 2.0 <= time.monotonic() - started < 10
        assert workers.health() == 1  # slow, not dead
        os.kill(pid, signal.SIGCONT)
        assert eventually(
            lambda: asyncio.run(workers.tracking_batch(raw, ctx, 10_000)) is not None, 20
        ), "answers again once it runs"
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        workers.stop()
        assert time.monotonic() - started < 10
        assert not alive(pid)
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        workers.stop()
