"""Trace propagation by the agent SDK, against a real bus (embedded): what a handler sends (and the RESPONSE the SDK
sends for it) follows from the message it handles, so GET /api/v1/traces/{id} shows the whole conversation."""

from __future__ import annotations

import asyncio
import time

import httpx

from aintandem_agent_sdk import BaseAgent, MessageType
from aintandem_agent_sdk._trace import handling, with_parent
from tests.servers import ADMIN_HEADERS
from tests.test_sdk import EVENTUALLY, agent_for, run, sdk_bus  # noqa: F401  (sdk_bus is a fixture)


def test_sends_follow_from_the_handled_message_unless_they_name_their_own_trace():
    assert with_parent({"k": 1}) == {"k": 1}  # not handling anything: no parent
    with handling("m-1"):
        assert with_parent(None) == {"trace": {"parent_id": "m-1"}}
        assert with_parent({"trace": {"parent_id": "mine"}}) == {"trace": {"parent_id": "mine"}}
        assert with_parent({}, "request-7") == {"trace": {"parent_id": "request-7"}}
        with handling("m-2"):
            assert with_parent({})["trace"] == {"parent_id": "m-2"}
        assert with_parent({})["trace"] == {"parent_id": "m-1"}
    assert with_parent({}) == {}


def test_a_request_answered_with_help_from_another_agent_is_one_trace_tree(sdk_bus, unique):
    """The test asks A; A's handler asks B (collaborate_with) before answering: request → A's ask (hop 1) → B's
    response (hop 2), and A's response (hop 1), all in the request's trace."""
    async def scenario():
        tester, a_id, b_id = unique("tester"), unique("a"), unique("b")
        a_agent, b_agent = BaseAgent("a"), BaseAgent("b")
        handled: list = []
        async with agent_for(sdk_bus, tester) as t, agent_for(sdk_bus, b_id, b_agent), \
                agent_for(sdk_bus, a_id, a_agent) as a:
            @b_agent.on(MessageType.REQUEST)
            async def answer(message):
                handled.append(message)
                return {"fact": message.content["task"].upper()}

            @a_agent.on(MessageType.REQUEST)
            async def ask_b(message):
                handled.append(message)
                fact = await a.collaborate_with(b_id, message.content["task"], timeout=20)
                return {"answer": fact["fact"]}

            assert await t.collaborate_with(a_id, "why", timeout=30) == {"answer": "WHY"}
            request, ask = handled
            assert ask.metadata["trace"] == {"trace_id": request.message_id, "parent_id": request.message_id,
                                             "hops": 1}
            tree = await trace_when_complete(sdk_bus.url, request.message_id, 4)
        [root] = tree["roots"]
        assert root["message"]["message_id"] == request.message_id and root["hops"] == 0
        children = root["children"]
        assert [c["message"]["from_sandbox"] for c in children] == [a_id, a_id]
        assert [c["message"]["message_type"] for c in children] == ["request", "response"]
        assert [c["hops"] for c in children] == [1, 1]
        assert children[0]["message"]["message_id"] == ask.message_id
        [b_response] = children[0]["children"]
        assert (b_response["message"]["from_sandbox"], b_response["hops"]) == (b_id, 2)
        assert b_response["message"]["content"] == {"fact": "WHY"} and not children[1]["children"]

    run(scenario())


async def trace_when_complete(bus_url: str, trace_id: str, count: int) -> dict:
    """GET /api/v1/traces/{trace_id} once it holds `count` messages, every one routed."""
    tree: dict = {}
    async with httpx.AsyncClient(base_url=bus_url, headers=ADMIN_HEADERS) as http:
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            tree = (await http.get(f"/api/v1/traces/{trace_id}")).json()
            if tree.get("message_count") == count and "accepted" not in _statuses(tree["roots"]):
                return tree
            await asyncio.sleep(0.1)
    raise AssertionError(f"trace {trace_id} did not hold {count} routed messages: {tree}")


def _statuses(nodes: list) -> list[str]:
    return [s for node in nodes for s in [node["status"], *_statuses(node["children"])]]
