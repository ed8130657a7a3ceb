"""What the example team's long-running agents share: connect, optionally subscribe, run until stopped."""

from __future__ import annotations

import asyncio
import logging
import os

from aintandem_agent_sdk import BaseAgent, BusError, ContainerAgent


def connection(agent: BaseAgent, default_sandbox: str) -> ContainerAgent:
    """The agent's ContainerAgent, configured from SANDBOX_ID, COLLABORATION_BUS_URL and WORKSPACE."""
    os.environ.setdefault("WORKSPACE", "team")
    return ContainerAgent(os.environ.get("SANDBOX_ID", default_sandbox),
                          os.environ.get("COLLABORATION_BUS_URL", "http://127.0.0.1:8000"), agent)


def run_agent(agent: BaseAgent, default_sandbox: str, subscribe: list[str] = ()) -> None:
    """Run `agent` until Ctrl-C / SIGTERM, subscribed to the topic patterns `subscribe`."""
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        async with connection(agent, default_sandbox) as bus:
            for pattern in subscribe:
                await bus.subscribe(pattern)
            print(f"{agent.name}: ready as {bus.sandbox_id}; Ctrl-C to stop", flush=True)
            await bus.run_forever()

    try:
        asyncio.run(main())
    except BusError as exc:
        raise SystemExit(f"{agent.name}: {exc}") from None
