"""The researcher of the example team: declares the skill `research` and answers whoever the bus routes a research
request to it, until stopped (Ctrl-C / SIGTERM). Start several: the planner's requests are spread over them.

    SANDBOX_ID=sb-team-researcher-1 python examples/team/researcher.py

Environment: SANDBOX_ID (default sb-team-researcher), COLLABORATION_BUS_URL (default http://127.0.0.1:8000),
WORKSPACE (default team), BUS_TOKEN.
"""

from __future__ import annotations

import asyncio

from _common import run_agent

from aintandem_agent_sdk import AgentMessage, BaseAgent, MessageType, Skill

RESEARCH = Skill(
    id="research", name="Research a topic", description="Looks a topic up and returns findings.",
    tags=["research", "text"],
    input_schema={"type": "object", "required": ["topic"],
                  "properties": {"topic": {"type": "string", "minLength": 1, "maxLength": 200}}},
    output_schema={"type": "object", "properties": {"findings": {"type": "array", "items": {"type": "string"}}}},
)
agent = BaseAgent("researcher", capabilities=["research"], skills=[RESEARCH])


@agent.on(MessageType.REQUEST)
async def research(message: AgentMessage) -> dict:
    """Pretend to look the topic up (a real agent would call a model or a search tool)."""
    topic = message.content["topic"]
    print(f"researcher: {message.from_sandbox} asks about {topic!r}", flush=True)
    await asyncio.sleep(0.1)
    words = topic.split()
    return {"topic": topic, "researched_by": agent.bus.sandbox_id if agent.bus else "?",
            "findings": [f"{topic!r} has {len(words)} word(s)", f"its longest word is {max(words, key=len)!r}"]}


if __name__ == "__main__":
    run_agent(agent, default_sandbox="sb-team-researcher")
