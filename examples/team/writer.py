"""The writer of the example team: declares the skill `write` (turn findings into a report) and follows the team's
progress on the topic `team.progress`, until stopped (Ctrl-C / SIGTERM).

    python examples/team/writer.py

Environment: SANDBOX_ID (default sb-team-writer), COLLABORATION_BUS_URL (default http://127.0.0.1:8000),
WORKSPACE (default team), BUS_TOKEN.
"""

from __future__ import annotations

from _common import run_agent

from aintandem_agent_sdk import AgentMessage, BaseAgent, MessageType, Skill

WRITE = Skill(
    id="write", name="Write a report", description="Turns research findings into a short report.",
    tags=["writing", "text"],
    input_schema={"type": "object", "required": ["topic", "findings"],
                  "properties": {"topic": {"type": "string"},
                                 "findings": {"type": "array", "items": {"type": "string"}, "minItems": 1}}},
    output_schema={"type": "object", "properties": {"report": {"type": "string"}}},
)
agent = BaseAgent("writer", capabilities=["writing"], skills=[WRITE])


@agent.on(MessageType.REQUEST)
async def write(message: AgentMessage) -> dict:
    """Write the report: a title and one line per finding."""
    topic, findings = message.content["topic"], message.content["findings"]
    print(f"writer: writing about {topic!r} ({len(findings)} finding(s))", flush=True)
    lines = [f"Report on {topic}"] + [f"  * {finding}" for finding in findings]
    return {"report": "\n".join(lines)}


@agent.on(MessageType.NOTIFICATION)
async def progress(message: AgentMessage) -> None:
    """The team's progress, published by the planner on `team.progress`."""
    print(f"writer: [{message.topic}] {message.content.get('status')}", flush=True)


if __name__ == "__main__":
    run_agent(agent, default_sandbox="sb-team-writer", subscribe=["team.#"])
