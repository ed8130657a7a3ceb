"""The agent SDK against a real bus: register, send, broadcast, collaborate_with, NACK, reconnect and resume."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import httpx
import pytest

from aintandem_agent_sdk import (
    AgentMessage,
    Backoff,
    BaseAgent,
    BusRejected,
    CollaborationFailed,
    CollaborationTimeout,
    ConnectionStatus,
    ContainerAgent,
    ContainerAgentConfig,
    MessageType,
    PermissionDenied,
    RetryPolicy,
)
from tests.servers import ADMIN_HEADERS, TEST_ADMIN_KEY, BusProcess

EVENTUALLY = 30.0


@pytest.fixture(scope="module")
def sdk_bus():
    """A bus of its own for the SDK tests (embedded: collab-bus up)."""
    process = BusProcess("embedded")
    yield process
    process.cleanup()


def run(coroutine):
    """Run one async test body to completion."""
    return asyncio.run(asyncio.wait_for(coroutine, 120))


async def eventually(predicate, what: str, timeout: float = EVENTUALLY) -> None:
    """Wait until `predicate()` is true (polling), failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def report(bus_url: str, message_id: str) -> dict:
    async with httpx.AsyncClient(base_url=bus_url, headers=ADMIN_HEADERS) as http:
        return (await http.get(f"/api/v1/messages/{message_id}")).json()


class Recorder(BaseAgent):
    """Records every message; answers requests with the task upper-cased; raises on task "fail"."""

    def __init__(self, name: str, delay: float = 0.0):
        super().__init__(name, capabilities=["record"])
        self.received: list[AgentMessage] = []
        self.delay = delay

    async def handle(self, message: AgentMessage) -> dict | None:
        self.received.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        task = message.content.get("task")
        if task == "fail":
            raise RuntimeError("cannot do that")
        return {"answer": str(task).upper()} if message.message_type is MessageType.REQUEST else None


def grant_commands(bus: BusProcess, sender: str, receiver: str) -> None:
    """An operator's grant: `sender` may send commands to `receiver` (commands need one)."""
    rule = httpx.post(f"{bus.url}/api/v1/policies", headers=ADMIN_HEADERS, json={
        "effect": "allow", "from_sandbox": sender, "to_sandbox": receiver, "message_types": ["command"]})
    assert rule.status_code == 201, rule.text


def agent_for(bus: BusProcess, sandbox_id: str, agent: BaseAgent | None = None, **config) -> ContainerAgent:
    """An agent that registers with the tests' admin key and then works with its own sandbox token."""
    config.setdefault("token", TEST_ADMIN_KEY)
    return ContainerAgent(sandbox_id, bus.url, agent or Recorder(sandbox_id), ContainerAgentConfig(**config))


def test_start_registers_the_sandbox_and_its_agent_and_goes_online(sdk_bus, unique):
    async def scenario():
        sandbox = unique("sb")
        async with agent_for(sdk_bus, sandbox, workspace="sdk-tests", metadata={"team": "a"}) as bus:
            assert bus.status is ConnectionStatus.CONNECTED
            registration = httpx.get(f"{sdk_bus.url}/api/v1/sandboxes/{sandbox}", headers=ADMIN_HEADERS).json()
        assert registration["workspace"] == "sdk-tests" and registration["metadata"] == {"team": "a"}
        assert registration["agents"] == [{"name": sandbox, "capabilities": ["record"]}]
        assert registration["status"] == "online"
        assert bus.status is ConnectionStatus.DISCONNECTED

    run(scenario())


def test_send_message_reaches_the_handler_and_is_acknowledged(sdk_bus, unique):
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, alice) as a, agent_for(sdk_bus, bob) as b:
            with pytest.raises(PermissionDenied) as refused:  # commands need a grant
                await a.send_message(bob, {"note": "hi"}, MessageType.COMMAND)
            assert refused.value.code == "policy_denied" and refused.value.status == 403
            grant_commands(sdk_bus, alice, bob)
            message_id = await a.send_message(bob, {"note": "hi"}, MessageType.COMMAND, to_agent=bob, priority=8,
                                              ttl=600, metadata={"k": "v"})
            await eventually(lambda: b.agent.received, "bob to receive the command")
            got = b.agent.received[0]
            assert (got.message_id, got.from_sandbox, got.from_agent, got.to_agent) == (message_id, alice, alice, bob)
            assert (got.message_type, got.content, got.priority, got.ttl, got.metadata) == (
                MessageType.COMMAND, {"note": "hi"}, 8, 600,
                {"k": "v", "trace": {"trace_id": message_id, "parent_id": None, "hops": 0}})  # the bus's trace
            assert got.seq == 1 and not got.redelivered
            await eventually(lambda: b.last_seq == 1, "bob's cursor to pass seq 1")

        async def acked():
            return (await report(sdk_bus.url, message_id))["deliveries"][0]["state"] == "acked"
        deadline = time.monotonic() + EVENTUALLY
        while not await acked():
            assert time.monotonic() < deadline, "the command was never acknowledged"
            await asyncio.sleep(0.05)

    run(scenario())


def test_broadcast_reaches_every_other_agent_but_not_the_sender(sdk_bus, unique):
    async def scenario():
        ids = [unique(f"member{n}") for n in range(3)]
        async with agent_for(sdk_bus, ids[0]) as sender, agent_for(sdk_bus, ids[1]) as one, \
                agent_for(sdk_bus, ids[2]) as two:
            message_id = await sender.broadcast({"announce": "standup"})
            for member in (one, two):
                await eventually(lambda m=member: any(x.message_id == message_id for x in m.agent.received),
                                 f"{member.sandbox_id} to receive the broadcast")
            mine = [x for x in one.agent.received if x.message_id == message_id]
            assert mine[0].message_type is MessageType.NOTIFICATION and mine[0].to_sandbox == "broadcast"
            await asyncio.sleep(0.3)
            assert not any(x.message_id == message_id for x in sender.agent.received)

    run(scenario())


def test_collaborate_with_returns_the_response_content(sdk_bus, unique):
    async def scenario():
        planner, researcher = unique("planner"), unique("researcher")
        async with agent_for(sdk_bus, planner) as p, agent_for(sdk_bus, researcher) as r:
            answers = [await p.collaborate_with(researcher, f"topic {n}", timeout=20) for n in range(5)]
            assert answers == [{"answer": f"TOPIC {n}"} for n in range(5)]
            request = r.agent.received[0]
            assert request.requires_response and request.correlation_id and request.ttl == 20
            state = await report(sdk_bus.url, request.message_id)
            assert state["response_state"] == "answered" and len(state["responses"]) == 1
            assert p.agent.received == []  # responses go to collaborate_with, not to the planner's handler

    run(scenario())


def test_a_handler_may_collaborate_while_handling(sdk_bus, unique):
    """The researcher asks a librarian while answering the planner: its response arrives although its one handler
    is busy."""
    async def scenario():
        planner, researcher, librarian = unique("planner"), unique("researcher"), unique("librarian")
        helper = BaseAgent("researcher")
        async with agent_for(sdk_bus, planner) as p, agent_for(sdk_bus, librarian) as lib, \
                agent_for(sdk_bus, researcher, helper) as r:
            @helper.on(MessageType.REQUEST)
            async def ask_the_librarian(message):
                book = await r.collaborate_with(librarian, message.content["task"], timeout=20)
                return {"summary": f"read {book['answer']}"}

            assert await p.collaborate_with(researcher, "dune", timeout=30) == {"summary": "read DUNE"}
            assert [m.content for m in lib.agent.received] == [{"task": "dune"}]

    run(scenario())


def test_collaborate_with_times_out_when_nobody_answers(sdk_bus, unique):
    async def scenario():
        asker, sleeper = unique("asker"), unique("sleeper")
        async with agent_for(sdk_bus, asker) as a, agent_for(sdk_bus, sleeper, Recorder("sleeper", delay=5)):
            started = time.monotonic()
            with pytest.raises(CollaborationTimeout) as caught:
                await a.collaborate_with(sleeper, "slow", timeout=1)
            assert time.monotonic() - started >= 1
            assert caught.value.target_sandbox == sleeper and caught.value.timeout == 1
            assert not a.pending_requests()  # the request is forgotten: a late answer goes to the handler

    run(scenario())


def test_a_raising_handler_nacks_and_the_requester_learns_why(sdk_bus, unique):
    async def scenario():
        asker, worker = unique("asker"), unique("worker")
        async with agent_for(sdk_bus, asker) as a, agent_for(sdk_bus, worker) as w:
            with pytest.raises(CollaborationFailed) as caught:
                await a.collaborate_with(worker, "fail", timeout=20)
            assert caught.value.error == {"type": "RuntimeError", "message": "cannot do that"}
            notification_id = await a.send_message(worker, {"task": "fail"}, MessageType.NOTIFICATION)
            await eventually(lambda: w.last_seq == 2, "the worker to process both entries")
            request_id = w.agent.received[0].message_id
        async with httpx.AsyncClient(base_url=sdk_bus.url, headers=ADMIN_HEADERS) as http:
            letters = (await http.get("/api/v1/dead-letters", params={"sandbox_id": worker})).json()["dead_letters"]
        by_message = {d["message_id"]: d for d in letters}
        assert set(by_message) == {request_id, notification_id}
        for letter in by_message.values():
            assert letter["reason"] == "nacked" and letter["last_error"] == "RuntimeError: cannot do that"

    run(scenario())


def test_sending_to_an_unknown_sandbox_is_rejected_with_the_server_code(sdk_bus, unique):
    async def scenario():
        async with agent_for(sdk_bus, unique("lonely")) as a:
            with pytest.raises(BusRejected) as caught:
                await a.send_message(unique("nobody"), {"x": 1})
            assert caught.value.status == 404 and caught.value.code == "unknown_sandbox"
            with pytest.raises(BusRejected) as caught:
                await a.send_message(a.sandbox_id, {"x": 1}, priority=42)
            assert caught.value.code == "validation_error" and "priority" in caught.value.details

    run(scenario())


def test_a_restarted_agent_resumes_after_what_it_processed(sdk_bus, unique, tmp_path):
    """A new ContainerAgent for the same sandbox (a restarted container) skips what was handled: from the cursor
    file, or without one from what the bus knows was acknowledged."""
    async def scenario(cursor_file):
        kind = "file" if cursor_file else "bus"
        sender, receiver = unique(f"sender-{kind}"), unique(f"receiver-{kind}")
        async with agent_for(sdk_bus, sender) as s:
            async with agent_for(sdk_bus, receiver, cursor_file=cursor_file) as first:
                for n in range(3):
                    await s.send_message(receiver, {"n": n}, MessageType.NOTIFICATION)
                await eventually(lambda: first.last_seq == 3, "the first run to process 3 entries")
            for n in range(3, 5):
                await s.send_message(receiver, {"n": n}, MessageType.NOTIFICATION)
            async with agent_for(sdk_bus, receiver, cursor_file=cursor_file) as second:
                await eventually(lambda: second.last_seq == 5, "the second run to process 2 entries")
                await asyncio.sleep(0.3)
        assert [m.content["n"] for m in first.agent.received] == [0, 1, 2]
        assert [m.content["n"] for m in second.agent.received] == [3, 4]

    run(scenario(str(tmp_path / "cursor.json")))
    run(scenario(None))


@pytest.fixture(params=["embedded", "redis"])
def restartable_bus(request):
    """A bus of its own, to be stopped and started again by the test."""
    if request.param == "redis":
        process = BusProcess("redis", redis_url=request.getfixturevalue("redis_server").url, with_beat=True)
    else:
        process = BusProcess("embedded")
    yield process
    process.cleanup()


def test_agents_reconnect_after_a_bus_restart_and_get_every_message_exactly_once(restartable_bus, unique):
    bus = restartable_bus

    async def scenario():
        sender, receiver = unique("sender"), unique("receiver")
        patient = dict(reconnect=Backoff(initial=0.2, maximum=1.0), connect_timeout=60,
                       retry=RetryPolicy(max_attempts=60, backoff=Backoff(initial=0.2, maximum=1.0)))
        statuses: list[ConnectionStatus] = []
        async with agent_for(bus, sender, **patient) as s, agent_for(bus, receiver, **patient) as r:
            r.add_status_listener(lambda status, detail: statuses.append(status))
            for n in range(20):
                await s.send_message(receiver, {"n": n}, MessageType.REQUEST if n % 2 else MessageType.NOTIFICATION)
            await eventually(lambda: len(r.agent.received) >= 10, "some messages before the restart")

            await asyncio.to_thread(bus.stop)
            during = asyncio.ensure_future(s.send_message(receiver, {"n": 20}, MessageType.NOTIFICATION))
            await asyncio.sleep(1.0)
            assert not during.done()  # retrying against a bus that is down
            await asyncio.to_thread(bus.start)
            await during
            for n in range(21, 40):
                await s.send_message(receiver, {"n": n}, MessageType.REQUEST if n % 2 else MessageType.NOTIFICATION)
            await eventually(lambda: r.last_seq == 40, "the receiver to process all 40 entries", timeout=90)
            await asyncio.sleep(0.5)  # anything handled twice would show up now
        counts = Counter(m.content["n"] for m in r.agent.received)
        assert sorted(counts) == list(range(40)) and set(counts.values()) == {1}, counts
        assert [m.seq for m in r.agent.received] == list(range(1, 41))  # mailbox order, nothing skipped
        assert ConnectionStatus.RECONNECTING in statuses
        assert statuses[statuses.index(ConnectionStatus.RECONNECTING):].count(ConnectionStatus.CONNECTED) >= 1

    run(scenario())


def test_an_agent_reconnects_at_once_when_its_bus_node_goes_away(redis_server, unique):
    """A reload of `collab-bus api` (SIGHUP: new gunicorn workers, the old ones stop gracefully) closes the
    socket with 1001: the agent reconnects at once, not after its (here very long) reconnection back-off."""
    bus = BusProcess("redis", redis_url=redis_server.url)

    async def scenario():
        sender, receiver = unique("sender"), unique("receiver")
        statuses: list[tuple[ConnectionStatus, str]] = []
        patient = Backoff(initial=300, maximum=300)  # a reconnection after back-off would come far too late
        async with agent_for(bus, sender) as s, agent_for(bus, receiver, reconnect=patient) as r:
            r.add_status_listener(lambda status, detail: statuses.append((status, detail)))
            os.kill(bus.apis["api"].pid, signal.SIGHUP)
            await eventually(lambda: ConnectionStatus.RECONNECTING in [st for st, _ in statuses], "the socket to close")
            await eventually(lambda: r.status is ConnectionStatus.CONNECTED, "the agent to reconnect", timeout=60)
            await s.send_message(receiver, {"after": "reload"}, MessageType.NOTIFICATION)
            await eventually(lambda: [m.content for m in r.agent.received] == [{"after": "reload"}],
                             "the message sent after the reload")
        assert "going away" in statuses[0][1]

    try:
        run(scenario())
    finally:
        bus.cleanup()


def test_a_replayed_dead_letter_is_handled_again(sdk_bus, unique):
    async def scenario():
        sender, receiver = unique("sender"), unique("receiver")
        flaky = BaseAgent("flaky")
        attempts: list[AgentMessage] = []

        @flaky.on(MessageType.COMMAND)
        def run_command(message):
            attempts.append(message)
            if len(attempts) == 1:
                raise ConnectionError("tool server down")

        grant_commands(sdk_bus, sender, receiver)
        async with agent_for(sdk_bus, sender) as s, agent_for(sdk_bus, receiver, flaky) as r:
            message_id = await s.send_message(receiver, {"do": "it"}, MessageType.COMMAND)
            await eventually(lambda: r.last_seq == 1, "the first (failing) attempt")
            async with httpx.AsyncClient(base_url=sdk_bus.url, headers=ADMIN_HEADERS) as http:
                letters = (await http.get("/api/v1/dead-letters", params={"message_id": message_id})).json()
                [letter] = letters["dead_letters"]
                assert letter["last_error"] == "ConnectionError: tool server down"
                assert (await http.post(f"/api/v1/dead-letters/{letter['id']}/replay")).status_code == 202
            await eventually(lambda: len(attempts) == 2, "the replayed entry to be handled again")
            assert attempts[1].seq == 1 and attempts[1].redelivered

        deadline = time.monotonic() + EVENTUALLY
        while (await report(sdk_bus.url, message_id))["deliveries"][0]["state"] != "acked":
            assert time.monotonic() < deadline, "the replayed entry was never acknowledged"
            await asyncio.sleep(0.05)

    run(scenario())


@pytest.fixture(scope="module")
def impatient_bus():
    """A bus that pushes an unacknowledged request again after one second."""
    process = BusProcess("embedded", extra_env={"ACK_TIMEOUT": "1", "MAX_DELIVERY_ATTEMPTS": "10"})
    yield process
    process.cleanup()


def test_a_request_pushed_again_while_its_handler_runs_is_handled_once(impatient_bus, unique):
    async def scenario():
        asker, slow = unique("asker"), unique("slow")
        async with agent_for(impatient_bus, asker) as a, agent_for(impatient_bus, slow, Recorder("slow", delay=4)) as s:
            assert await a.collaborate_with(slow, "think", timeout=30) == {"answer": "THINK"}
            await asyncio.sleep(1.5)  # a push after the ACK would be handled now if the SDK did not dedupe
            assert len(s.agent.received) == 1
        state = await report(impatient_bus.url, s.agent.received[0].message_id)
        assert state["deliveries"][0]["attempts"] >= 2, state  # the bus did push it again meanwhile
        assert state["deliveries"][0]["state"] == "acked"

    run(scenario())


def test_the_agent_refreshes_its_token_and_recovers_when_it_is_revoked(sdk_bus, unique):
    async def scenario():
        sender, receiver = unique("sender"), unique("receiver")
        async with agent_for(sdk_bus, sender) as s, agent_for(sdk_bus, receiver) as r:
            first = s._session.token
            assert first != TEST_ADMIN_KEY and first.count(".") == 2  # registered with the key, works as itself
            await s.refresh_token()
            assert s._session.token != first and s._session.token_expires_at > time.time()
            rotated = httpx.post(f"{sdk_bus.url}/api/v1/sandboxes/{sender}/token", headers=ADMIN_HEADERS,
                                 json={"rotate": True})  # an operator revokes every token of the sender
            assert rotated.status_code == 200
            await s.send_message(receiver, {"after": "rotation"}, MessageType.NOTIFICATION)  # re-registers, retries
            await eventually(lambda: [m.content for m in r.agent.received] == [{"after": "rotation"}],
                             "the message sent after the rotation")
            assert s._session.token not in (first, rotated.json()["token"])

    run(scenario())
