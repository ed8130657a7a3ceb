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

    def __init__(self, sandbox_id: str, send_message: SendMessage):
        self.sandbox_id = sandbox_id
        self._send_message = send_message
        self._waiters: dict[str, asyncio.Future[AgentMessage]] = {}

    async def collaborate(self, target_sandbox: str, task: str | dict[str, Any], timeout: float, *, to_agent: str,
                          priority: int, metadata: dict[str, Any] | None,
                          idempotency_key: str | None = None) -> dict[str, Any]:
        """Send `task` as a REQUEST and return its RESPONSE's content (see ContainerAgent.collaborate_with)."""
        content = task if isinstance(task, dict) else {"task": task}
        correlation_id = correlation_id_for(self.sandbox_id, idempotency_key)
        waiter: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._waiters[correlation_id] = waiter

        async def ask() -> AgentMessage:
            await self._send_message(target_sandbox, content, MessageType.REQUEST, to_agent=to_agent,
                                     priority=priority, ttl=max(1, math.ceil(timeout)), requires_response=True,
                                     correlation_id=correlation_id, metadata=metadata,
                                     idempotency_key=idempotency_key)
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


def correlation_id_for(sandbox_id: str, idempotency_key: str | None) -> str:
    """A fresh correlation id, or (given a key) the one this sandbox's key always names: a request sent again with
    its key after a restart is the same request, waiting for the same response."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(uuid.NAMESPACE_URL, f"aintandem-request:{sandbox_id}:{idempotency_key}").hex
