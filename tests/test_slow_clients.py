"""Slow and stalled clients against a real server: a request whose headers or body stall is
answered 408 in the JSON error shape and closed (one whose body never finished was once held
forever), and at the bound on open connections the connection waiting longest for its client
makes room, so stalled clients cannot keep others out."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import re
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from conftest import CLEAN_EXIT, Server, config_with

TRACK = "/api/analytics/track"
EVENT = {"event": "visitor", "token": "slow-client-token"}
STALLS = {
    "headers": b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nContent-Le",
    "body": b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"
    b'{"event":"visitor"',
    "chunked body": b"POST /api/analytics/track HTTP/1.1\r\nHost: t\r\n"
    b'Transfer-Encoding: chunked\r\n\r\n40\r\n{"event":"visitor",',
}


_clients = itertools.count()


def stall(server: Server, kind: str) -> socket.socket:
    """A connection that sends part of a request, each from a client IP of its own (through
    the trusted loopback proxy), so the rate limit answers none of them early."""
    n = next(_clients)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    forwarded = b"X-Forwarded-For: 10.65.%d.%d\r\n" % (n // 250, n % 250 + 1)
    sock.sendall(STALLS[kind].replace(b"Host: t\r\n", b"Host: t\r\n" + forwarded))
    return sock


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return answer


def json_error(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert re.search(rb"(?im)^content-type: application/json", head), head
    assert re.search(rb"(?im)^connection: close", head), head
    payload = json.loads(body)
    assert payload["success"] is False
    return int(head.split(b" ", 2)[1]), payload["error"]


def waiting(socks: list[socket.socket]) -> bool:
    """None of the sockets has anything to read: the server holds them, unanswered."""
    readable, _, _ = select.select(socks, [], [], 0)
    return not readable


def metric(server: Server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_stalled_requests_get_408_and_others_are_served_meanwhile(tmp_path: Path) -> None:
    config = config_with("header_timeout_seconds = 5", "body_timeout_seconds = 6")
    server = Server(tmp_path / "srv", config).start()
    try:
        stalled = [(kind, stall(server, kind)) for kind in STALLS for _ in range(100)]
        # Normal tracking calls, each on a connection of its own, while 300 stall.
        for n in range(10):
            answer = httpx.post(
                server.url + TRACK, json=EVENT, headers={"x-forwarded-for": f"10.64.0.{n}"}
            )
            assert answer.status_code == 200, answer.text
        assert waiting([sock for _, sock in stalled])
        for kind, sock in stalled:
            status, error = json_error(read_to_close(sock))
            assert (status, error["code"]) == (408, "REQUEST_TIMEOUT"), (kind, error)
            part = "headers" if kind == "headers" else "body"
            assert f"request {part} did not arrive within" in error["message"], error
        assert metric(server, 'footfall_http_connections_cut_total{reason="header_timeout"}') == 100
        assert metric(server, 'footfall_http_connections_cut_total{reason="body_timeout"}') == 200
    finally:
        assert server.stop() in CLEAN_EXIT
    assert "unhandled error" not in server.log.read_text()
    assert server.rows("SELECT count(*) FROM events") == [(10,)]


def test_a_new_connection_that_sends_nothing_is_closed_without_an_answer(tmp_path: Path) -> None:
    server = Server(tmp_path / "srv", config_with("header_timeout_seconds = 1")).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as silent:
            assert silent.recv(100) == b""
    finally:
        server.stop()


def test_at_the_bound_the_longest_waiting_connection_makes_room(tmp_path: Path) -> None:
    """Idle keep-alive connections go first, then the requests that stalled longest (503);
    requests the app is answering are never cut, and new clients are served."""
    config = config_with(
        "max_connections = 30", "header_timeout_seconds = 60", "body_timeout_seconds = 60"
    )
    server = Server(tmp_path / "srv", config).start()
    try:
        stalled = [stall(server, ("headers", "body")[n % 2]) for n in range(29)]
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        idle.request("GET", "/healthz")
        assert idle.getresponse().read()  # now an idle keep-alive connection: 30 open
        assert idle.sock is not None
        served = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        served.request("POST", TRACK, json.dumps(EVENT), {"content-type": "application/json"})
        assert served.getresponse().status == 200
        # The idle connection made room: closed, no answer; every stalled one still waits.
        assert idle.sock.recv(100) == b""
        assert waiting(stalled)
        late = [stall(server, "headers") for _ in range(5)]
        # The first newcomer closes the idle one just served; the next four, the oldest stalls.
        for sock in stalled[:4]:
            status, error = json_error(read_to_close(sock))
            assert (status, error["code"]) == (503, "SERVICE_UNAVAILABLE"), error
            assert "limit of 30 open connections" in error["message"]
        assert waiting(stalled[4:] + late)
        assert metric(server, 'footfall_http_connections_cut_total{reason="made_room"}') == 5
        for sock in stalled[4:] + late:
            sock.close()
        started = time.monotonic()
        while metric(server, "footfall_http_connections_open") > 1:
            assert time.monotonic() - started < 30, "closed connections were not let go"
            time.sleep(0.05)
    finally:
        server.stop()


def test_shutdown_answers_stalled_requests_at_once(tmp_path: Path) -> None:
    """SIGTERM answers stalled requests at once, without waiting for their deadlines
    (uvicorn alone closed them without an answer)."""
    config = config_with("header_timeout_seconds = 120", "body_timeout_seconds = 120")
    server = Server(tmp_path / "srv", config).start()
    stalled = [stall(server, kind) for kind in STALLS]
    assert httpx.post(server.url + TRACK, json=EVENT).status_code == 200  # all three are read
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    for sock in stalled:
        status, error = json_error(read_to_close(sock))
        assert (status, error["code"]) == (503, "SERVICE_UNAVAILABLE"), error
        assert "shutting down" in error["message"]
    assert server.stop() in CLEAN_EXIT
    assert "stopped; every acknowledged event is committed" in server.log.read_text()


def test_when_every_connection_is_busy_a_newcomer_is_refused_503() -> None:
    """Requests the app is answering are never cut to make room: with all of them busy, a
    new connection is answered 503 and closed (the protocol over real sockets, in-process,
    with an app that answers only when told to)."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from footfall.config import Settings
    from footfall.http.connection import protocol_class

    async def scenario() -> None:
        release = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})

        protocol = protocol_class(Settings(max_connections=3))
        config = Config(app, http=protocol, ws="none", lifespan="off", proxy_headers=False)
        config.load()
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(
            lambda: protocol(config=config, server_state=state, app_state={}), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        request = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
        busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, writer in busy:
            writer.write(request)
        while len(state.tasks) < 3:  # every request has reached the app
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        status, error = json_error(await asyncio.wait_for(reader.read(), 30))
        assert (status, error["code"]) == (503, "SERVICE_UNAVAILABLE"), error
        assert "all of them busy" in error["message"]
        release.set()
        for busy_reader, busy_writer in busy:
            answer = await asyncio.wait_for(busy_reader.readuntil(b"done"), 30)
            assert answer.startswith(b"HTTP/1.1 200 ")
            busy_writer.close()
        writer.close()
        server.close()

    asyncio.run(scenario())
