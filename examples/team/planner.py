"""The planner of the example team: for each topic on the command line it asks *any* agent with the skill
`research` for findings, then *any* agent with the skill `write` for a report, and publishes its progress on the
topic `team.progress`. It does not know the other agents' sandbox ids: the bus routes by skill.

    python examples/team/planner.py "vector databases" "agent protocols"

Start examples/team/researcher.py (one or more) and examples/team/writer.py first, or at the same time: a request
for a skill waits (up to --timeout) until an agent that declares it is online. Environment: SANDBOX_ID (default
sb-team-planner), COLLABORATION_BUS_URL (default http://127.0.0.1:8000), WORKSPACE (default team), BUS_TOKEN (a
registrar key for workspace "team", or the sandbox's token). Exits 1 when a topic got no report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from _common import connection

from aintandem_agent_sdk import BaseAgent, BusError, CollaborationFailed, CollaborationTimeout, ContainerAgent


async def plan(bus: ContainerAgent, topic: str, timeout: float) -> str:
    """Research `topic`, then have it written up; return the report."""
    await bus.publish("team.progress", {"status": f"researching {topic!r}"})
    research = await bus.collaborate_with("any", {"topic": topic}, timeout=timeout, skill="research")
    print(f"planner: {research['researched_by']} researched {topic!r}", flush=True)
    await bus.publish("team.progress", {"status": f"writing up {topic!r}"})
    written = await bus.collaborate_with("any", {"topic": topic, "findings": research["findings"]},
                                         timeout=timeout, skill="write")
    await bus.publish("team.progress", {"status": f"done with {topic!r}"})
    return written["report"]


async def main(topics: list[str], timeout: float) -> int:
    failed = 0
    async with connection(BaseAgent("planner", capabilities=["plan"]), "sb-team-planner") as bus:
        for topic in topics:
            try:
                print(await plan(bus, topic, timeout), flush=True)
            except (CollaborationTimeout, CollaborationFailed) as exc:
                print(f"planner: no report on {topic!r}: {exc} (are researcher.py and writer.py running?)",
                      file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("topics", nargs="+", help="what to research and write up, one report per topic")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(asyncio.run(main(args.topics, args.timeout)))
    except BusError as exc:
        sys.exit(f"planner: {exc}")
