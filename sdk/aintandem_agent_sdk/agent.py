"""Agents: what a ContainerAgent hands received messages to."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from aintandem_agent_sdk.errors import ConfigurationError, NoHandler
from aintandem_agent_sdk.messages import AgentMessage, MessageType

if TYPE_CHECKING:
    from aintandem_agent_sdk.container import ContainerAgent

__all__ = ["BaseAgent", "Handler", "Skill"]

HandlerResult = dict[str, Any] | None
Handler = Callable[[AgentMessage], HandlerResult | Awaitable[HandlerResult]]


@dataclass(frozen=True)
class Skill:
    """A skill an agent declares when its sandbox registers (A2A's AgentSkill plus JSON Schemas).

    A message to sandbox ``"any"`` naming the skill's `id` (``send_message("any", ..., skill=id)``,
    ``collaborate_with("any", ..., skill=id)``) goes to one online agent of the workspace that declares it; the bus
    refuses content that does not satisfy `input_schema` (422 ``content_invalid``). `output_schema` documents the
    response. Only `id` (an identifier, unique within the agent) is required.
    """

    id: str
    name: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigurationError(f"a skill needs an id, got {self.id!r}")
        if isinstance(self.tags, str):
            raise ConfigurationError(f"skill {self.id!r}: tags must be a list of strings, not a string")
        object.__setattr__(self, "tags", tuple(self.tags))

    @classmethod
    def of(cls, value: Skill | Mapping[str, Any]) -> Skill:
        """`value` itself, or the Skill a dict of the registration's skill fields describes."""
        if isinstance(value, Skill):
            return value
        if not isinstance(value, Mapping) or "id" not in value:
            raise ConfigurationError(f"a skill is a Skill or a dict with an id, got {value!r}")
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown skill fields {sorted(unknown)} (a skill has id, name, description, "
                                     f"tags, input_schema, output_schema)")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        """The skill as the registration carries it (schemas only when given)."""
        data: dict[str, Any] = {"id": self.id, "name": self.name, "description": self.description,
                                "tags": list(self.tags)}
        for key in ("input_schema", "output_schema"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


class BaseAgent:
    """An agent living in a sandbox: it has a name and capabilities, and handles the messages it receives.

    Either subclass it and override `handle`, or register functions per message type::

        agent = BaseAgent("researcher", capabilities=["search"])

        @agent.on(MessageType.REQUEST)
        async def research(message):
            return {"answer": ...}

    For a REQUEST, whatever `handle` returns (a dict) is sent back as the RESPONSE; returning None
    sends nothing. If `handle` raises, the entry is NACKed with the error (and a requester waiting in
    `collaborate_with` gets `CollaborationFailed`); so is a REQUEST no handler takes (`NoHandler`: the agent
    logs a warning and the requester learns at once). `bus` is the ContainerAgent running this agent.
    `skills` (Skill objects or dicts) are declared at registration, for capability routing.
    """

    name: str = "agent"
    capabilities: list[str] = []
    skills: list[Skill] = []

    def __init__(self, name: str | None = None, capabilities: Iterable[str] | None = None,
                 skills: Iterable[Skill | Mapping[str, Any]] | None = None):
        self.name = name or type(self).name
        self.capabilities = list(capabilities if capabilities is not None else type(self).capabilities)
        self.skills = [Skill.of(skill) for skill in (skills if skills is not None else type(self).skills)]
        if not self.name:
            raise ConfigurationError("an agent needs a name")
        self._handlers: dict[MessageType | None, Handler] = {}
        self.bus: ContainerAgent | None = None

    def on(self, *message_types: MessageType | str) -> Callable[[Handler], Handler]:
        """Decorator: call the function for messages of these types (no types: every type without its own)."""
        types: list[MessageType | None] = [MessageType(t) for t in message_types] or [None]

        def register(handler: Handler) -> Handler:
            for message_type in types:
                self._handlers[message_type] = handler
            return handler

        return register

    async def handle(self, message: AgentMessage) -> dict[str, Any] | None:
        """Handle one received message; for a REQUEST the returned dict becomes the RESPONSE content. A message no
        registered handler takes is ignored (None), except a REQUEST: NoHandler, someone is waiting for it."""
        handler = self._handlers.get(message.message_type) or self._handlers.get(None)
        if handler is None and message.message_type is MessageType.REQUEST:
            raise NoHandler(self.name, message.message_type.value)
        if handler is None:
            return None
        result = handler(message)
        if inspect.isawaitable(result):
            result = await result
        return result

    def describe(self) -> dict[str, Any]:
        """The agent as the bus registers it: name, capabilities, and its skills when it has any (without them
        the registration is what older buses accept)."""
        card: dict[str, Any] = {"name": self.name, "capabilities": self.capabilities}
        if self.skills:
            card["skills"] = [skill.to_dict() for skill in self.skills]
        return card
