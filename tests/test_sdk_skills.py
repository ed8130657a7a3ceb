"""Skills and capability routing with the agent SDK, against a real bus (embedded): an agent declares skills at
registration, and send_message / collaborate_with to sandbox "any" with skill= reach an online agent that has it."""

from __future__ import annotations

import httpx
import pytest

from aintandem_agent_sdk import BaseAgent, BusRejected, ConfigurationError, MessageType, Skill
from tests.servers import ADMIN_HEADERS
from tests.test_sdk import Recorder, agent_for, eventually, run, sdk_bus  # noqa: F401  (sdk_bus is a fixture)

SUMMARIZE = Skill("summarize", name="Summarize", description="Summarizes a text", tags=["text"],
                  input_schema={"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                  output_schema={"type": "object", "properties": {"summary": {"type": "string"}}})


class Summarizer(Recorder):
    skills = [SUMMARIZE]

    async def handle(self, message):
        self.received.append(message)
        if message.message_type is MessageType.REQUEST:
            return {"summary": message.content["text"][:5]}
        return None


def test_skills_are_declared_as_dataclasses_or_dicts_and_left_out_when_there_are_none():
    agent = BaseAgent("w", skills=[SUMMARIZE, {"id": "translate", "tags": ["text"]}])
    assert agent.describe()["skills"] == [
        {"id": "summarize", "name": "Summarize", "description": "Summarizes a text", "tags": ["text"],
         "input_schema": SUMMARIZE.input_schema, "output_schema": SUMMARIZE.output_schema},
        {"id": "translate", "name": "", "description": "", "tags": ["text"]}]
    assert BaseAgent("plain").describe() == {"name": "plain", "capabilities": []}
    for bad in ({"name": "no id"}, {"id": "x", "colour": "red"}, {"id": "x", "tags": "text"}):
        with pytest.raises(ConfigurationError):
            Skill.of(bad)


def test_requests_to_any_with_a_skill_reach_the_agent_that_declared_it(sdk_bus, unique):
    async def scenario():
        workspace, asker, worker = unique("ws"), unique("asker"), unique("worker")
        async with agent_for(sdk_bus, asker, workspace=workspace) as a, \
                agent_for(sdk_bus, worker, Summarizer(worker), workspace=workspace) as w:
            async with httpx.AsyncClient(base_url=sdk_bus.url, headers=ADMIN_HEADERS) as http:
                cards = (await http.get("/api/v1/agents", params={"skill": "summarize",
                                                                  "workspace": workspace})).json()
            assert [(c["sandbox_id"], [s["id"] for s in c["skills"]]) for c in cards["agents"]] == [
                (worker, ["summarize"])]
            answer = await a.collaborate_with("any", {"text": "a long story"}, timeout=20, skill="summarize")
            assert answer == {"summary": "a lon"}
            request = w.agent.received[0]
            assert request.from_sandbox == asker and request.metadata["skill"] == "summarize"
            sent = await a.send_message("any", {"text": "news"}, MessageType.NOTIFICATION, skill="summarize")
            [batched] = await a.send_batch([{"target_sandbox": "any", "content": {"text": "batch"},
                                             "message_type": "notification", "skill": "summarize"}])
            await eventually(lambda: len(w.agent.received) == 3, "the notifications to reach the worker")
            assert {m.message_id for m in w.agent.received[1:]} == {sent, batched.message_id}
            with pytest.raises(BusRejected) as invalid:  # the skill's input schema wants a text
                await a.collaborate_with("any", {"words": 3}, timeout=5, skill="summarize")
            assert (invalid.value.status, invalid.value.code) == (422, "content_invalid")
            assert a.pending_requests() == []
            with pytest.raises(ConfigurationError):
                await a.collaborate_with(worker, "x", skill="summarize")
            with pytest.raises(ConfigurationError):
                await a.collaborate_with("any", "x")
            with pytest.raises(ConfigurationError):
                await a.send_message("any", {"x": 1})

    run(scenario())
