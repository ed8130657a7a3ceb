"""Durable collaborate_with, against a real bus (embedded, and on Redis and RabbitMQ brokers): a requester that is
stopped before its response arrives and starts again (same sandbox id, same cursor file) lists the request in
pending_requests() and gets the response with wait_for_response(correlation_id), or with collaborate_with and the same
idempotency_key."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from aintandem_agent_sdk import (
    AgentMessage,
    CollaborationFailed,
    ConfigurationError,
    ContainerAgent,
    MessageType,
    PendingRequest,
    UnknownCorrelationId,
)
from aintandem_agent_sdk._requests import MAX_KEPT_ANSWERS, RequestRecord, requests_file
from tests.servers import ADMIN_HEADERS, BROKER_KINDS, bus_on
from tests.test_sdk import agent_for, eventually, run


@pytest.fixture(scope="module", params=BROKER_KINDS)
def sdk_bus(request):
    """The bus the restarted requesters talk to: embedded, and API + worker on each real broker."""
    process = bus_on(request, request.param)
    yield process
    process.cleanup()


def response(correlation_id: str, content: dict, failed: bool = False) -> AgentMessage:
    return AgentMessage("m-" + correlation_id, "sb-other", "sb-me", "other", "any", MessageType.RESPONSE, content,
                        0.0, correlation_id=correlation_id, metadata={"status": "error"} if failed else {})


def test_the_record_keeps_pending_requests_and_their_answers_beside_the_cursor(tmp_path):
    path = requests_file(str(tmp_path / "cursor.json"))
    assert path == tmp_path / "cursor.requests.json" and requests_file(None) is None
    record = RequestRecord("sb-me", path)
    record.add(PendingRequest("c1", "sb-other", {"task": "a"}, 100.0, 30.0))
    record.add(PendingRequest("c2", "sb-other", {"task": "b"}, 101.0, 30.0))
    assert record.answered(response("c1", {"ok": 1}), keep=True)
    assert not record.answered(response("stranger", {"ok": 2}), keep=True)  # kept, in memory only
    again = RequestRecord("sb-me", path)
    assert list(again.pending) == ["c2"] and again.pending["c2"].deadline == 131.0
    assert list(again.answers) == ["c1"] and again.answers["c1"].result() == {"ok": 1}
    assert again.take_answer("c1").content == {"ok": 1} and again.take_answer("c1") is None
    assert "c1" not in RequestRecord("sb-me", path).answers  # taken: gone from the file too
    for n in range(MAX_KEPT_ANSWERS + 5):
        record.answered(response(f"x{n}", {}), keep=True)
    assert len(record.answers) == MAX_KEPT_ANSWERS and "x0" not in record.answers
    with pytest.raises(ConfigurationError):
        RequestRecord("sb-someone-else", path)
    path.write_text("{not json")
    with pytest.raises(ConfigurationError):
        RequestRecord("sb-me", path)


async def head_seq(bus_url: str, sandbox: str) -> int:
    async with httpx.AsyncClient(base_url=bus_url, headers=ADMIN_HEADERS) as http:
        return int((await http.get(f"/api/v1/sandboxes/{sandbox}")).json()["head_seq"])


async def ask_and_die(bus: ContainerAgent, target: str, tasks: list[str], bus_url: str, **kwargs) -> list[str]:
    """Start `bus`, start collaborate_with for each task, wait until the target's mailbox holds them, then cancel the
    calls and stop (as a dying process would)."""
    await bus.start()
    before = await head_seq(bus_url, target)
    asks = [asyncio.create_task(bus.collaborate_with(target, task, timeout=120, **kwargs)) for task in tasks]
    deadline = asyncio.get_running_loop().time() + 30
    while await head_seq(bus_url, target) < before + len(tasks):
        assert asyncio.get_running_loop().time() < deadline, "the requests did not reach the target's mailbox"
        await asyncio.sleep(0.05)
    for ask in asks:
        ask.cancel()
    await asyncio.gather(*asks, return_exceptions=True)
    pending = bus.pending_requests()
    await bus.stop()
    assert [p.task for p in pending] == [{"task": task} for task in tasks]
    return [p.correlation_id for p in pending]


def test_a_restarted_requester_awaits_the_response_to_a_request_of_its_earlier_process(sdk_bus, unique, tmp_path):
    """The responder starts only after the requester died: the new requester lists the request, waits for it,
    and gets the answer when it comes."""
    async def scenario():
        requester, responder = unique("requester"), unique("responder")
        cursor = str(tmp_path / "cursor.json")
        await agent_for(sdk_bus, responder).register()  # known to the bus, not running yet
        [cid] = await ask_and_die(agent_for(sdk_bus, requester, cursor_file=cursor), responder, ["report"],
                                  sdk_bus.url)
        assert (tmp_path / "cursor.requests.json").exists()
        again = agent_for(sdk_bus, requester, cursor_file=cursor)
        [pending] = again.pending_requests()
        assert (pending.correlation_id, pending.target_sandbox, pending.timeout) == (cid, responder, 120)
        assert pending.sent_at < pending.deadline
        async with again:
            waiting = asyncio.create_task(again.wait_for_response(cid, timeout=30))
            async with agent_for(sdk_bus, responder) as r:
                assert await waiting == {"answer": "REPORT"}
                assert [m.content for m in r.agent.received] == [{"task": "report"}]
            assert again.pending_requests() == [] and again.agent.received == []  # not handed to the handler
            with pytest.raises(UnknownCorrelationId):
                await again.wait_for_response(cid)  # taken already

    run(scenario())


def test_responses_that_arrived_while_the_requester_was_down_are_there_after_it_restarts(sdk_bus, unique, tmp_path):
    """The responder answers (once successfully, once failing) while the requester is down; the restarted
    requester gets both at once, the failure as CollaborationFailed; they survive one more restart untaken."""
    async def scenario():
        requester, responder = unique("requester"), unique("responder")
        cursor = str(tmp_path / "cursor.json")
        async with agent_for(sdk_bus, responder) as r:
            r.agent.delay = 1.0  # the requester is gone before the answers
            ok, failed = await ask_and_die(agent_for(sdk_bus, requester, cursor_file=cursor), responder,
                                           ["sum", "fail"], sdk_bus.url)
            await eventually(lambda: len(r.agent.received) == 2, "the responder to handle both", 30)
            await asyncio.sleep(r.agent.delay + 1)
        async with agent_for(sdk_bus, requester, cursor_file=cursor) as again:
            await eventually(lambda: not again.pending_requests(), "the responses to be replayed")
        async with agent_for(sdk_bus, requester, cursor_file=cursor) as third:  # not taken yet: still there
            assert third.pending_requests() == []
            assert await third.wait_for_response(ok, timeout=0.1) == {"answer": "SUM"}
            with pytest.raises(CollaborationFailed) as caught:
                await third.wait_for_response(failed, timeout=0.1)
            assert caught.value.error["message"] == "cannot do that" and caught.value.target_sandbox == responder
            with pytest.raises(UnknownCorrelationId):
                await third.wait_for_response("never-sent")
        saved = json.loads((tmp_path / "cursor.requests.json").read_text())
        assert saved["pending"] == [] and saved["answers"] == []

    run(scenario())


def test_asking_again_with_the_idempotency_key_after_a_restart_sends_nothing_new(sdk_bus, unique, tmp_path):
    async def scenario():
        requester, responder = unique("requester"), unique("responder")
        cursor = str(tmp_path / "cursor.json")
        await agent_for(sdk_bus, responder).register()
        [cid] = await ask_and_die(agent_for(sdk_bus, requester, cursor_file=cursor), responder, ["once"],
                                  sdk_bus.url, idempotency_key="job-7")
        async with agent_for(sdk_bus, requester, cursor_file=cursor) as again, \
                agent_for(sdk_bus, responder) as r:
            assert [p.correlation_id for p in again.pending_requests()] == [cid]
            answer = await again.collaborate_with(responder, "once", timeout=120, idempotency_key="job-7")
            assert answer == {"answer": "ONCE"} and again.pending_requests() == []
            assert [m.content for m in r.agent.received] == [{"task": "once"}]  # one request, handled once
            assert r.agent.received[0].correlation_id == cid

    run(scenario())
