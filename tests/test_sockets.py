"""Socket lifecycle against a real bus: peers that stop answering pings are dropped (their sandbox goes offline,
their slot is free again), unauthenticated sockets are bounded in time and number (and audited), and a graceful
stop closes every socket with 1001 "going away"."""

from __future__ import annotations

import base64
import json
import os
import re
import socket

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.servers import TEST_ADMIN_KEY, BusProcess, bus_client, wait_for, ws_connect

RECV_TIMEOUT = 10
UNAUTHENTICATED_CAP = 3

LIFECYCLE_ENV = {
    "WS_PING_INTERVAL": "0.5",
    "MAX_SOCKETS_PER_SANDBOX": "1",
    "AUTH_FRAME_TIMEOUT": "1",
    "MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS": str(UNAUTHENTICATED_CAP),
    "AUTH_FAILURE_LIMIT": "1000",
}


def make_bus(request, mode: str, extra_env: dict | None = None) -> BusProcess:
    if mode == "redis":
        return BusProcess("redis", redis_url=request.getfixturevalue("redis_server").url, extra_env=extra_env)
    return BusProcess("embedded", extra_env=extra_env)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def lifecycle_bus(request):
    """A bus pinging every 0.5 s, with one mailbox socket per sandbox, 1 s to authenticate and a cap of 3
    unauthenticated sockets per address."""
    process = make_bus(request, request.param, LIFECYCLE_ENV)
    yield process
    process.cleanup()


@pytest.fixture
def admin(lifecycle_bus):
    with bus_client(lifecycle_bus.url) as http:
        yield http


def register(admin: httpx.Client, sandbox_id: str) -> str:
    answer = admin.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["token"]


def status(admin: httpx.Client, sandbox_id: str) -> str:
    return admin.get(f"/api/v1/sandboxes/{sandbox_id}").json()["status"]


def silent_socket(port: int, path: str, token: str) -> socket.socket:
    """A WebSocket opened by hand on a raw TCP socket that then never answers anything (not even pings), like
    a container that lost its network. Frames that arrived together with the handshake's answer are in
    `early_frames_of(sock)`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n")
                 .encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"the bus hung up during the handshake: {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101"), answer
    _EARLY_BYTES[sock.fileno()] = answer.split(b"\r\n\r\n", 1)[1]
    return sock


_EARLY_BYTES: dict[int, bytes] = {}  # socket fd -> bytes read past the handshake's answer (a refusal may be there)


def early_frames_of(sock: socket.socket) -> bytes:
    """The bytes `silent_socket` read after the handshake's answer, in the same segment (e.g. a refusal's frames)."""
    return _EARLY_BYTES.pop(sock.fileno(), b"")


def auth_failures(bus: BusProcess) -> float:
    metrics = httpx.get(f"{bus.url}/metrics").text
    found = re.search(r"^collab_bus_auth_failures_total (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def failed_audits(admin: httpx.Client, reason: str) -> int:
    events = admin.get("/api/v1/audit", params={"action": "auth.failed", "limit": 1000}).json()["events"]
    return sum(1 for e in events if e["details"].get("reason") == reason)


def closing_error(ws) -> tuple[dict, int | None]:
    """The `error` frame the bus sends before it closes `ws`, and the close code."""
    frame = json.loads(ws.recv(timeout=RECV_TIMEOUT))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=RECV_TIMEOUT)
    return frame, closed.value.rcvd.code if closed.value.rcvd else None


# ----------------------------------------------------------------- dead peers (pings)

def test_a_peer_that_stops_answering_pings_is_dropped_and_its_sandbox_goes_offline(lifecycle_bus, admin, unique):
    dead, alive = unique("dead"), unique("alive")
    dead_token = register(admin, dead)
    register(admin, alive)
    with ws_connect(f"{lifecycle_bus.ws_url}/ws/sandboxes/{alive}") as healthy:
        assert json.loads(healthy.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        silent = silent_socket(lifecycle_bus.port, f"/ws/sandboxes/{dead}", dead_token)
        try:
            wait_for(lambda: status(admin, dead) == "online", 10, "the silent socket to be accepted")
            wait_for(lambda: status(admin, dead) == "offline", 30, "the bus to drop the silent socket")
            with ws_connect(f"{lifecycle_bus.ws_url}/ws/sandboxes/{dead}") as again:  # its one slot is free
                assert json.loads(again.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        finally:
            silent.close()
        healthy.send(json.dumps({"type": "ping"}))  # a socket that answers the pings is kept
        assert json.loads(healthy.recv(timeout=RECV_TIMEOUT)) == {"type": "pong"}
    wait_for(lambda: status(admin, alive) == "offline", 10, "the healthy socket's sandbox to go offline on close")


# ----------------------------------------------------------------- unauthenticated sockets

def test_unauthenticated_sockets_are_capped_per_address_and_time_out_counted_and_audited(lifecycle_bus, admin,
                                                                                        unique):
    sandbox = unique("later")
    token = register(admin, sandbox)
    url = f"{lifecycle_bus.ws_url}/ws/sandboxes/{sandbox}"
    failures = auth_failures(lifecycle_bus)
    refused, timed_out = failed_audits(admin, "too_many_unauthenticated_sockets"), failed_audits(admin,
                                                                                                 "auth_frame_timeout")
    waiting = [ws_connect(url, token=None) for _ in range(UNAUTHENTICATED_CAP)]
    try:
        with pytest.raises(InvalidStatus) as extra:
            ws_connect(url, token=None)
        assert extra.value.response.status_code == 429
        error = json.loads(extra.value.response.body)["error"]
        assert error["code"] == "too_many_unauthenticated_sockets" and error["details"]["limit"] == UNAUTHENTICATED_CAP
        assert admin.get("/api/v1/sandboxes").status_code == 200  # REST answers meanwhile
        with ws_connect(url, token=token) as authenticated:  # a token in the handshake is not held back
            assert json.loads(authenticated.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        for ws in waiting:  # silent past AUTH_FRAME_TIMEOUT: refused
            frame, code = closing_error(ws)
            assert frame["code"] == "unauthorized" and frame["details"]["reason"] == "auth_frame_timeout"
            assert code == 1008
    finally:
        for ws in waiting:
            ws.close()
    assert auth_failures(lifecycle_bus) == failures + 1 + UNAUTHENTICATED_CAP
    assert failed_audits(admin, "too_many_unauthenticated_sockets") == refused + 1
    assert failed_audits(admin, "auth_frame_timeout") == timed_out + UNAUTHENTICATED_CAP
    with ws_connect(url, token=None) as ws:  # the places are given back: the next one may authenticate
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"


# ----------------------------------------------------------------- graceful stop

@pytest.fixture(params=["embedded", "redis"])
def stoppable_bus(request):
    process = make_bus(request, request.param)
    yield process
    process.cleanup()


def test_a_graceful_stop_closes_every_socket_with_1001(stoppable_bus, unique):
    bus = stoppable_bus
    sandbox = unique("sb")
    with bus_client(bus.url) as admin:
        register(admin, sandbox)
    with ws_connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}") as mailbox, ws_connect(f"{bus.ws_url}/ws/events") as events:
        for ws in (mailbox, events):
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        if bus.mode == "embedded":
            bus.stop()  # SIGTERM to `collab-bus up`
        else:
            bus.stop_api()  # SIGTERM to `collab-bus api`: gunicorn's graceful stop
        for ws in (mailbox, events):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=RECV_TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
    if bus.mode == "embedded":
        bus.start()
    else:
        bus.start_api("api")
    with bus_client(bus.url) as admin:  # the socket ended like a close: its sandbox went offline
        assert status(admin, sandbox) == "offline"


def test_a_client_that_closes_gets_the_closing_reply_with_its_code(lifecycle_bus, admin, unique):
    """The server answers a client's close frame before it ends the connection (it used to cut the connection
    first now and then: the client saw 1006, no close frame). Repeated: the race took a few tries to show."""
    for attempt in range(15):
        sandbox = unique(f"closer-{attempt}")  # one socket per sandbox here: the last one may still be closing
        register(admin, sandbox)
        for path in (f"/ws/sandboxes/{sandbox}?since=0", "/ws/events"):
            ws = ws_connect(f"{lifecycle_bus.ws_url}{path}", open_timeout=10)
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
            ws.close(1000, "bye")
            reply = ws.protocol.close_rcvd
            assert reply is not None and (reply.code, reply.reason) == (1000, "bye"), (attempt, path, reply)


def frames_then_rest(sock: socket.socket) -> tuple[list[tuple[int, bytes]], bytes]:
    """Server frames up to its close frame (answered with a masked close reply), and every byte after it until
    the server hangs up; the frames may have come with the handshake's answer already (`early_frames_of`)."""
    frames, buffer = [], early_frames_of(sock)
    while not frames or frames[-1][0] != 8:
        length, start = (buffer[1] & 127, 2) if len(buffer) >= 2 else (None, 2)
        if length == 126:
            length, start = (int.from_bytes(buffer[2:4], "big"), 4) if len(buffer) >= 4 else (None, 4)
        if length is not None and len(buffer) >= start + length:
            frames.append((buffer[0] & 15, buffer[start:start + length]))
            buffer = buffer[start + length:]
            continue
        chunk = sock.recv(4096)
        assert chunk, f"the bus hung up before its close frame: {frames}"
        buffer += chunk
    mask = os.urandom(4)
    sock.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")))
    while chunk := sock.recv(4096):
        buffer += chunk
    return frames, buffer


def test_nothing_follows_the_close_frame_of_a_refused_socket(lifecycle_bus):
    """Under werkzeug (embedded mode) an HTTP response used to follow the close frame on the upgraded connection;
    a browser read it as a broken frame and dropped frames it had not handed on yet."""
    sock = silent_socket(lifecycle_bus.port, "/ws/events?since=not-an-id", TEST_ADMIN_KEY)
    frames, after_close = frames_then_rest(sock)
    sock.close()
    assert [opcode for opcode, _ in frames] == [1, 8]
    assert json.loads(frames[0][1])["code"] == "validation_error"
    assert after_close == b""
