"""The sending half of ContainerAgent (private): direct messages, broadcasts, replies, batches and topics.

A mixin over what ContainerAgent provides: `sandbox_id`, `agent`, `_request` (a REST call with the sandbox token),
and `_status`, `_socket_sends`, `_send_frame` (the mailbox socket, used for sends while it is connected).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from aintandem_agent_sdk._socket_sends import SocketSends
from aintandem_agent_sdk._status import ConnectionStatus
from aintandem_agent_sdk._trace import with_parent
from aintandem_agent_sdk.agent import BaseAgent
from aintandem_agent_sdk.errors import ConfigurationError
from aintandem_agent_sdk.messages import AgentMessage, MessageType, SendResult

ANY = "any"  # the sandbox that means "one online agent with the skill"


class Sending:
    """Sends for one sandbox: each is durable at the bus when the call returns, and never stored twice.

    A send made while the agent handles a message (in its handler, or anything the handler awaits) follows from
    that message: its ``metadata["trace"]`` names it as parent, unless the caller put a ``trace`` of its own.
    """

    # What ContainerAgent provides (see the module's docstring):
    sandbox_id: str
    agent: BaseAgent
    _socket_sends: SocketSends

    @property
    def _status(self) -> ConnectionStatus:
        raise NotImplementedError

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def _send_frame(self, frame: dict[str, Any] | str) -> bool:
        raise NotImplementedError

    async def send_message(self, target_sandbox: str, content: dict[str, Any],
                           message_type: MessageType | str = MessageType.REQUEST, *, to_agent: str = "any",
                           priority: int = 5, ttl: int | None = None, requires_response: bool = False,
                           correlation_id: str | None = None, metadata: dict[str, Any] | None = None,
                           idempotency_key: str | None = None, skill: str | None = None) -> str:
        """Send a message to another sandbox; returns its message_id once the bus holds it durably.

        `idempotency_key` (1–255 printable ASCII characters, no spaces) names the send: sent again with the same
        key and the same message (by a restarted agent, say) within the bus's window, it is not stored twice and
        the first message's id comes back. Without one, each call gets a fresh key (retries are safe either way).
        To send to whichever online agent of the workspace has a skill, address sandbox ``"any"`` with
        ``skill="summarize"`` (it goes in ``metadata["skill"]``); ConfigurationError for a skill with another
        target, or ``"any"`` without a skill.
        Raises BusRejected when the bus refuses it (e.g. ``unknown_sandbox``, ``validation_error``; at once, without
        sending, ``payload_too_large`` for content over the limit the bus stated) and BusConnectionError /
        BusServerError when the retry policy is used up.
        """
        body = self._envelope(content, message_type, priority=priority, ttl=ttl,
                              metadata=skill_metadata(target_sandbox, skill, metadata),
                              to_sandbox=target_sandbox, to_agent=to_agent, requires_response=requires_response,
                              correlation_id=correlation_id)
        return await self._post_message("/api/v1/messages", body, idempotency_key)

    async def broadcast(self, content: dict[str, Any], *,
                        message_type: MessageType | str = MessageType.NOTIFICATION, priority: int = 5,
                        ttl: int | None = None, metadata: dict[str, Any] | None = None,
                        idempotency_key: str | None = None) -> str:
        """Send a message to every other registered sandbox; returns its message_id (`idempotency_key` as in
        `send_message`)."""
        body = self._envelope(content, message_type, priority=priority, ttl=ttl, metadata=metadata,
                              to_sandbox="broadcast")
        return await self._post_message("/api/v1/broadcast", body, idempotency_key)

    async def reply(self, request: AgentMessage, content: dict[str, Any], *,
                    metadata: dict[str, Any] | None = None, idempotency_key: str | None = None) -> str:
        """Send `content` as the RESPONSE to `request` (to its sender, with its correlation id); it follows from
        the request in the conversation's trace (`idempotency_key` as in `send_message`)."""
        return await self.send_message(request.from_sandbox, content, MessageType.RESPONSE,
                                       to_agent=request.from_agent, correlation_id=request.reply_correlation_id,
                                       priority=request.priority, metadata=with_parent(metadata, request.message_id),
                                       idempotency_key=idempotency_key)

    def _envelope(self, content: dict[str, Any], message_type: MessageType | str, *, priority: int,
                  ttl: int | None, metadata: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
        body = {"from_sandbox": self.sandbox_id, "from_agent": self.agent.name, "content": content,
                "message_type": MessageType(message_type).value, "priority": priority,
                "metadata": with_parent(metadata), **fields}
        if ttl is not None:
            body["ttl"] = ttl
        return body

    async def send_batch(self, messages: list[dict[str, Any]]) -> list[SendResult]:
        """Send several messages in one request; each dict takes `send_message`'s arguments by name
        (``target_sandbox`` and ``content`` required; ``idempotency_key`` makes the message's id, so a batch sent
        again with the same keys, by a restarted agent say, stores none twice). Returns one SendResult per message,
        in order: its message_id, or the BusRejected that refused it. The messages reach each recipient in their
        order.

        Raises BusConnectionError / BusServerError when the retry policy is used up (retrying is safe: each
        message carries an id of its own, so none is stored twice).
        """
        bodies = [self._batch_item(dict(spec)) for spec in messages]
        answer = await self._request("POST", "/api/v1/messages/batch", json={"messages": bodies})
        return [SendResult.from_answer(item, bodies[item["index"]]["message_id"]) for item in answer["results"]]

    def _batch_item(self, spec: dict[str, Any]) -> dict[str, Any]:
        target, content, key = spec.pop("target_sandbox"), spec.pop("content"), spec.pop("idempotency_key", None)
        metadata = skill_metadata(target, spec.pop("skill", None), spec.pop("metadata", None))
        body = self._envelope(content, spec.pop("message_type", MessageType.REQUEST), priority=spec.pop("priority", 5),
                              ttl=spec.pop("ttl", None), metadata=metadata, to_sandbox=target, **spec)
        return {**body, "message_id": message_id_for(self.sandbox_id, key)}

    async def _post_message(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> str:
        """Send over the mailbox socket when connected, else (or when the socket cannot tell, or would not take the
        frame) over REST; both carry one Idempotency-Key, so the bus stores the message once. Content over the bus's
        limit is refused at once (BusRejected 413), never sent."""
        self._socket_sends.limits.check_content(body["content"])
        key = idempotency_key or uuid.uuid4().hex
        if self._status is ConnectionStatus.CONNECTED:
            message_id = await self._socket_sends.send(self._send_frame, body, key)
            if message_id is not None:
                return message_id
        answer = await self._request("POST", path, json=body, idempotency_key=key)
        return str(answer["message_id"])

    async def publish(self, topic: str, content: dict[str, Any], *,
                      message_type: MessageType | str = MessageType.NOTIFICATION, priority: int = 5,
                      ttl: int | None = None, metadata: dict[str, Any] | None = None,
                      idempotency_key: str | None = None) -> str:
        """Publish `content` on `topic` (dot-separated words, e.g. ``research.papers``): every other sandbox of
        this workspace subscribed to a matching pattern gets it in its mailbox. Returns its message_id
        (`idempotency_key` as in `send_message`)."""
        body = self._envelope(content, message_type, priority=priority, ttl=ttl, metadata=metadata)
        self._socket_sends.limits.check_content(content)
        answer = await self._request("POST", f"/api/v1/topics/{quote(topic, safe='')}/messages", json=body,
                                     idempotency_key=idempotency_key or uuid.uuid4().hex)
        return str(answer["message_id"])

    async def subscribe(self, pattern: str) -> None:
        """Subscribe this sandbox to the topics matching `pattern` (`*` one word, `#` zero or more words). The
        subscription is kept by the bus: messages published while the agent is offline wait in its mailbox."""
        await self._request("POST", self._subscriptions_path(), json={"pattern": pattern})

    async def unsubscribe(self, pattern: str) -> None:
        """End the subscription to `pattern` (BusRejected ``unknown_subscription`` when there is none)."""
        await self._request("DELETE", f"{self._subscriptions_path()}?pattern={quote(pattern, safe='')}")

    async def subscriptions(self) -> list[str]:
        """This sandbox's subscription patterns, oldest first."""
        answer = await self._request("GET", self._subscriptions_path())
        return [item["pattern"] for item in answer["subscriptions"]]

    def _subscriptions_path(self) -> str:
        return f"/api/v1/sandboxes/{quote(self.sandbox_id, safe='')}/subscriptions"


def message_id_for(sandbox_id: str, idempotency_key: str | None) -> str:
    """A fresh message id, or (given a key) the one id this sandbox's key always names."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(uuid.NAMESPACE_URL, f"aintandem:{sandbox_id}:{idempotency_key}").hex


def skill_metadata(target_sandbox: str, skill: str | None, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """`metadata` with ``skill`` set for capability routing; ConfigurationError unless a skill goes with sandbox
    ``"any"`` and ``"any"`` with a skill (given here or already in `metadata`)."""
    if skill is not None and target_sandbox != ANY:
        raise ConfigurationError(f"skill={skill!r} routes by capability: send to sandbox {ANY!r}, not "
                                 f"{target_sandbox!r}")
    if skill is not None:
        metadata = {**(metadata or {}), "skill": skill}
    if target_sandbox == ANY and not (metadata or {}).get("skill"):
        raise ConfigurationError(f"sandbox {ANY!r} means any agent with a skill: name it with skill=")
    return metadata
