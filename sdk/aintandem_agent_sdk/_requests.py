"""Requests and their responses (private): `collaborate_with` and the futures waiting for RESPONSEs."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any, Awaitable, Callable

from aintandem_agent_sdk.errors import AgentStateError, CollaborationFailed, CollaborationTimeout
from aintandem_agent_sdk.messages import AgentMessage, MessageType

SendMessage = Callable[..., Awaitable[str]]


class Requests:
    """The requests this sandbox sent and waits for, matched to their responses by correlation id."""

    def __init__(self, send_message: SendMessage):
        self._send_message = send_message
        self._waiters: dict[str, asyncio.Future[AgentMessage]] = {}

    async def collaborate(self, target_sandbox: str, task: str | dict[str, Any], timeout: float, *, to_agent: str,
                          priority: int, metadata: dict[str, Any] | None) -> dict[str, Any]:
        """Send `task` as a REQUEST and return its RESPONSE's content (see ContainerAgent.collaborate_with)."""
        content = task if isinstance(task, dict) else {"task": task}
        correlation_id = uuid.uuid4().hex
        waiter: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._waiters[correlation_id] = waiter

        async def ask() -> AgentMessage:
            await self._send_message(target_sandbox, content, MessageType.REQUEST, to_agent=to_agent,
                                     priority=priority, ttl=max(1, math.ceil(timeout)), requires_response=True,
                                     correlation_id=correlation_id, metadata=metadata)
            return await waiter

        try:
            response = await asyncio.wait_for(ask(), timeout)
        except asyncio.TimeoutError:
            raise CollaborationTimeout(target_sandbox, correlation_id, timeout) from None
        finally:
            self._waiters.pop(correlation_id, None)
        if response.is_error_response:
            raise CollaborationFailed(target_sandbox, correlation_id, response.content.get("error") or {})
        return response.content

    def claim(self, response: AgentMessage) -> bool:
        """Hand a received RESPONSE to the request waiting for it; False when none waits (the handler gets it)."""
        waiter = self._waiters.get(response.correlation_id or "")
        if waiter is None or waiter.done():
            return False
        waiter.set_result(response)
        return True

    def stopped(self) -> None:
        """The agent stopped: whoever waits for a response gets AgentStateError."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(AgentStateError("the agent stopped before the response arrived"))
