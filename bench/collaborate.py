#!/usr/bin/env python3
"""Round-trip latency of the SDK's `collaborate_with`, in embedded mode and over Redis.

Two ContainerAgents in this process: a planner asks a researcher (whose handler answers at once) `--calls`
times, one call after the other, and the script prints p50/p90/p99/max of the round trip (REQUEST sent over
REST -> delivered by a worker -> handled -> RESPONSE sent over REST -> delivered -> returned) and calls/s.
Every bus is started by the script on free loopback ports (embedded: `collab-bus up`; redis: a redis-server,
`collab-bus api` and one `collab-bus worker`) and stopped at the end. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aintandem_agent_sdk import BaseAgent, ContainerAgent, ContainerAgentConfig, MessageType  # noqa: E402
from tests.servers import TEST_ADMIN_KEY, BusProcess, RedisServer  # noqa: E402

MODES = ("embedded", "redis")


def progress(text: str) -> None:
    print(f"[collaborate] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


async def measure(bus_url: str, calls: int, warmup: int) -> list[float]:
    """Seconds per collaborate_with call, for `calls` sequential calls after `warmup` unreported ones."""
    researcher = BaseAgent("researcher")

    @researcher.on(MessageType.REQUEST)
    async def answer(message):
        return {"echo": message.content["task"]}

    config = ContainerAgentConfig(token=TEST_ADMIN_KEY)  # registers with the key, then uses sandbox tokens
    async with ContainerAgent("bench-researcher", bus_url, researcher, config) as _, \
            ContainerAgent("bench-planner", bus_url, BaseAgent("planner"), config) as planner:
        for n in range(warmup):
            await planner.collaborate_with("bench-researcher", f"warm-up {n}", timeout=30)
        timings = []
        for n in range(calls):
            started = time.perf_counter()
            reply = await planner.collaborate_with("bench-researcher", f"call {n}", timeout=30)
            timings.append(time.perf_counter() - started)
            if reply != {"echo": f"call {n}"}:
                raise RuntimeError(f"wrong answer to call {n}: {reply}")
            if (n + 1) % max(1, calls // 5) == 0:
                progress(f"  {n + 1}/{calls} calls")
        return timings


def start_bus(mode: str, stack: contextlib.ExitStack) -> BusProcess:
    if mode == "embedded":
        bus = BusProcess("embedded")
    else:
        redis_server = RedisServer()
        stack.callback(redis_server.cleanup)
        bus = BusProcess("redis", redis_url=redis_server.url)
    stack.callback(bus.cleanup)
    return bus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="measured calls per mode (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="unreported calls first (default 50)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="bus modes (default both)")
    args = parser.parse_args(argv)
    rows = []
    for mode in args.modes:
        with contextlib.ExitStack() as stack:
            progress(f"{mode}: starting the bus")
            bus = start_bus(mode, stack)
            progress(f"{mode}: {args.warmup} warm-up + {args.calls} calls")
            started = time.perf_counter()
            timings = asyncio.run(measure(bus.url, args.calls, args.warmup))
            elapsed = time.perf_counter() - started
        ms = [t * 1000 for t in timings]
        rows.append((mode, len(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), max(ms),
                     statistics.mean(ms), len(ms) / sum(timings), elapsed))
    print("\ncollaborate_with round trip, sequential calls (ms)")
    print(f"{'mode':<10}{'calls':>7}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'mean':>8}{'calls/s':>9}")
    for mode, count, p50, p90, p99, top, mean, rate, _ in rows:
        print(f"{mode:<10}{count:>7}{p50:>8.1f}{p90:>8.1f}{p99:>8.1f}{top:>8.1f}{mean:>8.1f}{rate:>9.1f}")


if __name__ == "__main__":
    main()
