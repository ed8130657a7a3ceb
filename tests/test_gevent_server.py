"""`collab-bus api` on gunicorn's gevent worker (the default): hundreds of open mailbox sockets cost greenlets, not
OS threads, REST still answers and live messages still arrive while they are held; the gthread worker stays
selectable (API_WORKER_CLASS) and also closes its sockets with 1001 at a graceful stop; a bad value is refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.servers import BIN, BusProcess, bus_client, ws_connect

SOCKETS = 300
SANDBOXES = SOCKETS // 4  # MAX_SOCKETS_PER_SANDBOX is 4 by default
THREAD_CEILING = 50  # OS threads of the whole API (master + worker) with SOCKETS sockets open: gthread needs > 600
RECV_TIMEOUT = 20


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the gunicorn master and its workers)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.extend(int(child) for child in children)
        i += 1
    return pids


def os_thread_count(pid: int) -> int:
    """OS threads of `pid` and its descendants."""
    return sum(len(list(Path(f"/proc/{p}/task").iterdir())) for p in process_tree(pid))


@pytest.fixture(scope="module")
def gevent_bus(redis_server):
    process = BusProcess("redis", redis_url=redis_server.url)
    yield process
    process.cleanup()


def register_all(bus: BusProcess, sandboxes: list[str]) -> dict[str, str]:
    tokens = {}
    with bus_client(bus.url) as admin:
        for sandbox in sandboxes:
            answer = admin.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
            assert answer.status_code in (200, 201), answer.text
            tokens[sandbox] = answer.json()["token"]
    return tokens


async def open_mailboxes(bus: BusProcess, tokens: dict[str, str], per_sandbox: int) -> list:
    """Open `per_sandbox` authenticated mailbox sockets for every sandbox; each has received its welcome."""
    async def one(sandbox: str, token: str):
        ws = await connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}", additional_headers={
            "Authorization": f"Bearer {token}"}, open_timeout=30, ping_interval=None)
        assert json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))["type"] == "welcome"
        return ws

    opened = []
    for _ in range(per_sandbox):  # a batch per round: the server answers at its pace
        opened += await asyncio.gather(*(one(sandbox, token) for sandbox, token in tokens.items()))
    return opened


def test_hundreds_of_sockets_cost_no_os_threads_and_rest_and_delivery_go_on(gevent_bus, unique):
    bus = gevent_bus
    sandboxes = [unique(f"g{n}") for n in range(SANDBOXES)]
    tokens = register_all(bus, sandboxes)

    async def scenario():
        sockets = await open_mailboxes(bus, tokens, per_sandbox=SOCKETS // SANDBOXES)
        try:
            assert len(sockets) == SOCKETS
            threads = os_thread_count(bus.apis["api"].pid)
            assert threads < THREAD_CEILING, f"{threads} OS threads for {SOCKETS} open sockets"

            def rest_and_send():
                with bus_client(bus.url) as admin:
                    listed = admin.get("/api/v1/sandboxes")
                    assert listed.status_code == 200, listed.text
                    sent = admin.post("/api/v1/messages", json={
                        "from_sandbox": sandboxes[1], "to_sandbox": sandboxes[0], "from_agent": "t",
                        "message_type": "notification", "content": {"hello": "gevent"}})
                    assert sent.status_code == 202, sent.text
                    return sent.json()["message_id"]

            message_id = await asyncio.to_thread(rest_and_send)
            for ws in sockets[:1]:  # the first socket is sandboxes[0]'s
                frame = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
                assert frame["type"] == "message" and frame["message"]["message_id"] == message_id, frame
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    asyncio.run(scenario())
    logs = bus.logs()
    assert "Using worker: gevent" in logs and "MonkeyPatchWarning" not in logs


def test_the_gthread_worker_stays_selectable_and_closes_sockets_with_1001(redis_server, unique):
    bus = BusProcess("redis", redis_url=redis_server.url, extra_env={"API_WORKER_CLASS": "gthread"})
    try:
        sandbox = unique("gt")
        tokens = register_all(bus, [sandbox])
        with ws_connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}", token=tokens[sandbox]) as mailbox:
            assert json.loads(mailbox.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
            assert os_thread_count(bus.apis["api"].pid) > 2  # gthread: a thread pool, a reader per socket
            bus.stop_api()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    mailbox.recv(timeout=RECV_TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
        assert "gthread" in (bus.dir / "api.log").read_text()
    finally:
        bus.cleanup()


def test_an_unknown_worker_class_is_refused_at_start(tmp_path):
    env = {**os.environ, "MESSAGE_BACKEND": "redis", "API_WORKER_CLASS": "eventlet", "DATA_DIR": str(tmp_path)}
    result = subprocess.run([str(BIN / "collab-bus"), "api", "--no-migrate"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result
    assert "API_WORKER_CLASS must be one of gevent, gthread; got 'eventlet'" in result.stderr


def test_sockets_negotiate_permessage_deflate_only_when_configured(gevent_bus, redis_server, unique):
    sandbox = unique("pd")
    tokens = register_all(gevent_bus, [sandbox])
    url = f"{gevent_bus.ws_url}/ws/sandboxes/{sandbox}"
    with ws_connect(url, token=tokens[sandbox]) as ws:  # websockets offers permessage-deflate
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        assert "Sec-WebSocket-Extensions" not in ws.response.headers  # off by default: no zlib state per socket
    bus = BusProcess("redis", redis_url=redis_server.url, extra_env={"WS_PERMESSAGE_DEFLATE": "true"})
    try:
        tokens = register_all(bus, [sandbox])
        with ws_connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}", token=tokens[sandbox]) as ws:
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
    finally:
        bus.cleanup()
