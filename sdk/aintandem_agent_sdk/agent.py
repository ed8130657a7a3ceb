"""Agents: what a ContainerAgent hands received messages to."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Optional, Union

from aintandem_agent_sdk.errors import ConfigurationError
from aintandem_agent_sdk.messages import AgentMessage, MessageType

if TYPE_CHECKING:
    from aintandem_agent_sdk.container import ContainerAgent

__all__ = ["BaseAgent", "Handler"]

HandlerResult = Optional[dict]
Handler = Callable[[AgentMessage], Union[HandlerResult, Awaitable[HandlerResult]]]


class BaseAgent:
    """An agent living in a sandbox: it has a name and capabilities, and handles the messages it receives.

    Either subclass it and override `handle`, or register functions per message type::

        agent = BaseAgent("researcher", capabilities=["search"])

        @agent.on(MessageType.REQUEST)
        async def research(message):
            return {"answer": ...}

    For a REQUEST, whatever `handle` returns (a dict) is sent back as the RESPONSE; returning None
    sends nothing. If `handle` raises, the entry is NACKed with the error (and a requester waiting in
    `collaborate_with` gets `CollaborationFailed`). `bus` is the ContainerAgent running this agent.
    """

    name: str = "agent"
    capabilities: list[str] = []

    def __init__(self, name: str | None = None, capabilities: Iterable[str] | None = None):
        self.name = name or type(self).name
        self.capabilities = list(capabilities if capabilities is not None else type(self).capabilities)
        if not self.name:
            raise ConfigurationError("an agent needs a name")
        self._handlers: dict[MessageType | None, Handler] = {}
        self.bus: ContainerAgent | None = None

    def on(self, *message_types: MessageType | str) -> Callable[[Handler], Handler]:
        """Decorator: call the function for messages of these types (no types: every type without its own)."""
        types = [MessageType(t) for t in message_types] or [None]

        def register(handler: Handler) -> Handler:
            for message_type in types:
                self._handlers[message_type] = handler
            return handler

        return register

    async def handle(self, message: AgentMessage) -> dict[str, Any] | None:
        """Handle one received message; for a REQUEST the returned dict becomes the RESPONSE content."""
        handler = self._handlers.get(message.message_type) or self._handlers.get(None)
        if handler is None:
            return None
        result = handler(message)
        if inspect.isawaitable(result):
            result = await result
        return result

    def describe(self) -> dict[str, Any]:
        """The agent as the bus registers it: name and capabilities."""
        return {"name": self.name, "capabilities": self.capabilities}
