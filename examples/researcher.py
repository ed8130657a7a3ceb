"""The researcher agent: answers research requests from other sandboxes until stopped (Ctrl-C / SIGTERM).

    SANDBOX_ID=sb-researcher COLLABORATION_BUS_URL=http://127.0.0.1:8000 python examples/researcher.py

Both variables have those defaults. The bus must be running (`make run` or `collab-bus up`).
"""

from __future__ import annotations

import asyncio
import logging
import os

from aintandem_agent_sdk import AgentMessage, BaseAgent, BusError, ContainerAgent, MessageType

agent = BaseAgent("researcher", capabilities=["research"])


@agent.on(MessageType.REQUEST)
async def research(message: AgentMessage) -> dict:
    """Answer a request: pretend to look the topic up and return findings."""
    topic = str(message.content.get("task", "")).strip()
    print(f"researcher: {message.from_sandbox}/{message.from_agent} asks about {topic!r}", flush=True)
    if not topic:
        raise ValueError("a research request needs a non-empty task")
    await asyncio.sleep(0.1)  # a real agent would call a model or a search tool here
    words = topic.split()
    return {"topic": topic, "findings": [f"{topic!r} has {len(words)} word(s)",
                                         f"its longest word is {max(words, key=len)!r}"]}


async def main() -> None:
    sandbox_id = os.environ.get("SANDBOX_ID", "sb-researcher")
    bus_url = os.environ.get("COLLABORATION_BUS_URL", "http://127.0.0.1:8000")
    async with ContainerAgent(sandbox_id, bus_url, agent,
                              on_status=lambda status, detail: print(f"researcher: {status.value} ({detail})",
                                                                     flush=True)) as bus:
        print(f"researcher: ready as {sandbox_id} on {bus_url}; Ctrl-C to stop", flush=True)
        await bus.run_forever()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(main())
    except BusError as exc:
        raise SystemExit(f"researcher: {exc}") from None
