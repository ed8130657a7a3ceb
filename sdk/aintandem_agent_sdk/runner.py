"""The generic agent entrypoint of agent images: ``python -m aintandem_agent_sdk.runner``.

It runs one agent in its sandbox until SIGTERM, configured by the environment (a managed sandbox gets SANDBOX_ID,
WORKSPACE, COLLABORATION_BUS_URL and BUS_TOKEN from the bus) and, optionally, a JSON file named by AGENT_CONFIG
whose keys are the lower-case names below (the environment wins):

- ``AGENT_NAME`` (default ``agent``), ``AGENT_CAPABILITIES`` (comma-separated);
- ``AGENT_HANDLER``: ``package.module:function``, called with each received message; for a request, the dict it
  returns is the response. Without it the agent echoes: a request is answered with
  ``{"echo": <its content>, "agent": <name>, "sandbox": <sandbox id>}``;
- ``AGENT_ASK``: a JSON object ``{"target": <sandbox id>, "task": <str or object>, "timeout": <seconds>,
  "every": <seconds>}``: once connected, the agent asks that sandbox and prints ``answer from <target>: <JSON>``
  (or the failure) on stdout; with ``every``, it asks again that many seconds later, for as long as it runs (so a
  first question sent before the other agent was up is simply asked again).

Each step is printed on one line, so the container's logs tell what the agent did.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aintandem_agent_sdk.agent import BaseAgent, Handler
from aintandem_agent_sdk.container import ContainerAgent
from aintandem_agent_sdk.errors import BusError, ConfigurationError
from aintandem_agent_sdk.messages import AgentMessage

__all__ = ["RunnerConfig", "load_config", "main", "run"]


@dataclass
class RunnerConfig:
    """What the runner runs: the agent's name and capabilities, its handler, and an optional first question."""

    name: str = "agent"
    capabilities: list[str] = field(default_factory=list)
    handler: str | None = None
    ask: dict[str, Any] | None = None


def load_config(environ: Mapping[str, str] | None = None) -> RunnerConfig:
    """The runner's configuration from AGENT_CONFIG's file and the environment; ConfigurationError when bad."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = env.get("AGENT_CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                values = json.load(file)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"AGENT_CONFIG {path!r}: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigurationError(f"AGENT_CONFIG {path!r} must hold a JSON object")
    for key in ("name", "capabilities", "handler", "ask"):
        raw = env.get(f"AGENT_{key.upper()}")
        if raw:
            values[key] = raw
    capabilities = values.get("capabilities") or []
    if isinstance(capabilities, str):
        capabilities = [c.strip() for c in capabilities.split(",") if c.strip()]
    ask = values.get("ask")
    if isinstance(ask, str):
        try:
            ask = json.loads(ask)
        except ValueError as exc:
            raise ConfigurationError(f"AGENT_ASK must be a JSON object: {exc}") from None
    if ask is not None and not (isinstance(ask, dict) and ask.get("target")):
        raise ConfigurationError('AGENT_ASK must be a JSON object with a "target" sandbox id')
    for key in ("timeout", "every"):
        value = (ask or {}).get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigurationError(f'AGENT_ASK "{key}" must be a number of seconds above 0, got {value!r}')
    return RunnerConfig(name=values.get("name") or "agent", capabilities=list(capabilities),
                        handler=values.get("handler") or None, ask=ask)


def _load_handler(spec: str) -> Handler:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"AGENT_HANDLER must look like package.module:function, got {spec!r}")
    try:
        handler: Handler = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"AGENT_HANDLER {spec!r}: {exc}") from None
    if not callable(handler):
        raise ConfigurationError(f"AGENT_HANDLER {spec!r} is not a function")
    return handler


def _echo(agent: BaseAgent, sandbox_id: str) -> Handler:
    def echo(message: AgentMessage) -> dict[str, Any]:
        print(f"{message.message_type.value} from {message.from_sandbox}: {json.dumps(message.content)}", flush=True)
        return {"echo": message.content, "agent": agent.name, "sandbox": sandbox_id}
    return echo


async def run(config: RunnerConfig) -> None:
    """Connect the agent, ask its question if configured (again every `every` seconds), and serve until SIGTERM or
    SIGINT."""
    agent = BaseAgent(config.name, config.capabilities)
    bus = ContainerAgent(agent=agent)
    agent.on()(_load_handler(config.handler) if config.handler else _echo(agent, bus.sandbox_id))
    async with bus:
        print(f"agent {agent.name} of sandbox {bus.sandbox_id} connected to {bus.bus_url}", flush=True)
        asking = asyncio.create_task(_keep_asking(bus, config.ask)) if config.ask else None
        try:
            await bus.run_forever()
        finally:
            if asking:
                asking.cancel()
    print(f"agent {agent.name} of sandbox {bus.sandbox_id} stopped", flush=True)


async def _keep_asking(bus: ContainerAgent, ask: dict[str, Any]) -> None:
    while True:
        await _ask(bus, ask)
        if not ask.get("every"):
            return
        await asyncio.sleep(float(ask["every"]))


async def _ask(bus: ContainerAgent, ask: dict[str, Any]) -> None:
    target = ask["target"]
    try:
        answer = await bus.collaborate_with(target, ask.get("task", ""), timeout=float(ask.get("timeout", 30)))
        print(f"answer from {target}: {json.dumps(answer, sort_keys=True)}", flush=True)
    except BusError as exc:
        print(f"no answer from {target}: {exc}", flush=True)


def main() -> int:
    """Run the configured agent; exit code 2 for a configuration error, 1 when the bus refuses it for good."""
    try:
        asyncio.run(run(load_config()))
    except ConfigurationError as exc:
        print(f"aintandem agent runner: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except BusError as exc:
        print(f"aintandem agent runner: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
