"""The planner agent: asks the researcher about each topic given on the command line and prints the answers.

    python examples/planner.py "vector databases" "agent protocols"

Environment: SANDBOX_ID (default sb-planner), COLLABORATION_BUS_URL (default http://127.0.0.1:8000), BUS_TOKEN
(a registrar key for workspace "default", or the sandbox's token), RESEARCHER (the researcher's sandbox id, default
sb-researcher). Start examples/researcher.py first, or at the same time: the planner waits up to --wait seconds for
the researcher to register.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from aintandem_agent_sdk import (
    BaseAgent,
    BusError,
    BusRejected,
    CollaborationFailed,
    CollaborationTimeout,
    ContainerAgent,
)


async def ask(bus: ContainerAgent, researcher: str, topic: str, timeout: float, wait: float) -> dict:
    """Ask `researcher` about `topic`; while it is not registered yet, try again for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await bus.collaborate_with(researcher, topic, timeout=timeout)
        except BusRejected as exc:
            if exc.code != "unknown_sandbox" or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.5)


async def plan(topics: list[str], timeout: float, wait: float) -> int:
    """Ask about every topic in turn; return the number of topics that got no answer."""
    sandbox_id = os.environ.get("SANDBOX_ID", "sb-planner")
    bus_url = os.environ.get("COLLABORATION_BUS_URL", "http://127.0.0.1:8000")
    researcher = os.environ.get("RESEARCHER", "sb-researcher")
    unanswered = 0
    async with ContainerAgent(sandbox_id, bus_url, BaseAgent("planner", capabilities=["plan"])) as bus:
        for topic in topics:
            print(f"planner: asking {researcher} about {topic!r}", flush=True)
            try:
                answer = await ask(bus, researcher, topic, timeout, wait)
            except BusRejected as exc:
                if exc.code == "unknown_sandbox":
                    print(f"planner: {researcher} is not registered; start examples/researcher.py first",
                          file=sys.stderr)
                    return len(topics)
                raise
            except (CollaborationTimeout, CollaborationFailed) as exc:
                print(f"planner: no answer about {topic!r}: {exc}", file=sys.stderr)
                unanswered += 1
                continue
            print(f"planner: answer about {answer['topic']!r}:", flush=True)
            for finding in answer["findings"]:
                print(f"  - {finding}", flush=True)
    return unanswered


def main() -> None:
    parser = argparse.ArgumentParser(description="Ask the researcher agent about topics, through the bus.")
    parser.add_argument("topics", nargs="+", help="what to ask about (one request per topic)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the researcher to register (default 10)")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(1 if asyncio.run(plan(args.topics, args.timeout, args.wait)) else 0)
    except BusError as exc:
        sys.exit(f"planner: {exc}")


if __name__ == "__main__":
    main()
