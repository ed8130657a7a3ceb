"""The ACKs of many mailbox sockets that reach an API process together are recorded together: in shared
transactions (app/context.py's `acks` Coalescer, app.services.redelivery.ack_runs), every one of them.

Under gevent (`collab-bus api`'s default worker) nothing else runs while a batch is written, so a caller that wrote
its batch at once found nobody queued behind it: every ACK took a transaction of its own, and bench/fanout.py's 10,000
receivers' ACKs were recorded seconds after they were sent (about 2,000 a second on 2 cores), so the mailboxes still
held un-ACKed entries when it counted them. The ACKs are held back here by stopping the API process (SIGSTOP) while
the clients send them, so they all arrive at once when it goes on (SIGCONT); entries ACKed in one transaction share
its `acked_at`, which GET /api/v1/messages/ID shows per recipient.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.servers import ADMIN_HEADERS, BusProcess, bus_on

RECEIVERS = 100  # more than the 64 sockets libev's epoll reports at first in one poll
RECV_TIMEOUT = 30


@pytest.fixture(scope="module", params=["redis", "embedded"])
def acking_bus(request):
    """`redis`: `collab-bus api` (gevent) + a worker; `embedded`: `collab-bus up` (threads)."""
    process = bus_on(request, request.param)
    yield process
    process.cleanup()


def api_process(bus: BusProcess):
    """The process (group leader) that serves the sockets: the gunicorn master of `collab-bus api`, or `collab-bus
    up`."""
    return bus.apis["api"] if bus.apis else bus.processes[0]


async def register(http: httpx.AsyncClient, sandbox: str, workspace: str) -> str:
    answer = await http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox, "workspace": workspace})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["token"]


async def open_mailbox(bus: BusProcess, sandbox: str, token: str):
    ws = await connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}", additional_headers={"Authorization": f"Bearer {token}"},
                       open_timeout=RECV_TIMEOUT, ping_interval=None, close_timeout=1)
    assert json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))["type"] == "welcome"
    return ws


def test_acks_arriving_together_are_all_recorded_in_shared_transactions(acking_bus, unique):
    bus = acking_bus
    workspace = unique("acks")
    receivers = [f"{workspace}-{n}" for n in range(RECEIVERS)]

    async def scenario() -> list[dict]:
        async with httpx.AsyncClient(base_url=bus.url, headers=ADMIN_HEADERS, timeout=30) as admin:
            tokens = [await register(admin, sandbox, workspace) for sandbox in receivers]
            sender_token = await register(admin, f"{workspace}-sender", workspace)
        sockets = await asyncio.gather(*(open_mailbox(bus, s, t) for s, t in zip(receivers, tokens, strict=True)))
        try:
            async with httpx.AsyncClient(base_url=bus.url, timeout=30,
                                         headers={"Authorization": f"Bearer {sender_token}"}) as sender:
                answer = await sender.post("/api/v1/messages", json={
                    "from_sandbox": f"{workspace}-sender", "from_agent": "a", "to_sandbox": "broadcast",
                    "message_type": "notification", "content": {"n": 1}})
            assert answer.status_code == 202, answer.text
            frames = [json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)) for ws in sockets]
            assert [(f["type"], f["seq"]) for f in frames] == [("message", 1)] * RECEIVERS

            api = api_process(bus)
            os.killpg(api.pid, signal.SIGSTOP)  # the ACKs wait in the API's receive buffers, all at once
            try:
                for ws in sockets:
                    await ws.send(json.dumps({"type": "ack", "seq": 1}))
                assert all(ws.transport.get_write_buffer_size() == 0 for ws in sockets)  # handed to the kernel
                await asyncio.sleep(0.2)  # loopback: in the API's receive buffers
            finally:
                os.killpg(api.pid, signal.SIGCONT)
            return await recorded(answer.json()["message_id"])  # the sockets stay open meanwhile
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    async def recorded(message_id: str) -> list[dict]:
        """The message's deliveries once every receiver's is ACKed (up to 60 s)."""
        async with httpx.AsyncClient(base_url=bus.url, headers=ADMIN_HEADERS, timeout=30) as admin:
            for _ in range(600):
                answer = await admin.get(f"/api/v1/messages/{message_id}")
                assert answer.status_code == 200, answer.text
                found = answer.json()["deliveries"]
                if sum(d["state"] == "acked" for d in found) == RECEIVERS:
                    return found
                await asyncio.sleep(0.1)
        raise AssertionError(f"not every ACK was recorded: {found}")

    acked = asyncio.run(scenario())
    assert sorted(d["sandbox_id"] for d in acked) == sorted(receivers)
    transactions = len({d["acked_at"] for d in acked})
    assert transactions <= RECEIVERS // 10, (
        f"{RECEIVERS} ACKs that reached the API together were recorded in {transactions} transactions")
