"""The AgentMessage protocol as the SDK sees it: message types and received messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aintandem_agent_sdk.errors import AuthenticationError, BusRejected, PermissionDenied

__all__ = ["AgentMessage", "MessageType", "PendingRequest", "SendResult"]


class MessageType(str, Enum):
    """The four kinds of message; REQUEST and COMMAND must be acknowledged by the recipient."""

    REQUEST = "request"
    RESPONSE = "response"
    NOTIFICATION = "notification"
    COMMAND = "command"

    @property
    def requires_ack(self) -> bool:
        """Whether the bus pushes an entry of this type again until it is acknowledged."""
        return self in (MessageType.REQUEST, MessageType.COMMAND)


@dataclass(frozen=True)
class AgentMessage:
    """A message the bus delivered to this sandbox, as the handler receives it.

    The AgentMessage fields are the bus's; `seq` is the entry's position in this sandbox's mailbox,
    and `redelivered`/`attempt` say whether the bus pushed it before (an unacknowledged or replayed entry);
    `topic` is set on a message published to a topic this sandbox subscribed to.
    """

    message_id: str
    from_sandbox: str
    to_sandbox: str
    from_agent: str
    to_agent: str
    message_type: MessageType
    content: dict[str, Any]
    timestamp: float
    priority: int = 5
    requires_response: bool = False
    correlation_id: str | None = None
    ttl: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    topic: str | None = None
    seq: int | None = None
    redelivered: bool = False
    attempt: int = 1

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> AgentMessage:
        """The message carried by a `message` frame of a mailbox socket."""
        return cls.from_dict(frame["message"], seq=frame.get("seq"), redelivered=bool(frame.get("redelivered")),
                             attempt=int(frame.get("attempt") or 1))

    @classmethod
    def from_dict(cls, data: dict[str, Any], **extra: Any) -> AgentMessage:
        """A message from the bus's JSON AgentMessage object (unknown fields are ignored)."""
        return cls(
            message_id=data["message_id"], from_sandbox=data["from_sandbox"], to_sandbox=data["to_sandbox"],
            from_agent=data["from_agent"], to_agent=data.get("to_agent") or "any",
            message_type=MessageType(data["message_type"]), content=data.get("content") or {},
            timestamp=data.get("timestamp") or 0.0, priority=data.get("priority", 5),
            requires_response=bool(data.get("requires_response")), correlation_id=data.get("correlation_id"),
            ttl=data.get("ttl"), metadata=data.get("metadata") or {}, topic=data.get("topic"), **extra,
        )

    @property
    def reply_correlation_id(self) -> str:
        """The correlation id a response to this message must carry."""
        return self.correlation_id or self.message_id

    @property
    def is_error_response(self) -> bool:
        """Whether this is a RESPONSE reporting that the other agent's handler failed."""
        return self.message_type is MessageType.RESPONSE and self.metadata.get("status") == "error"


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message of `ContainerAgent.send_batch`: its `message_id`, or the `error` that refused
    it (a BusRejected with the status and code a single send would have had)."""

    index: int
    message_id: str | None = None
    error: BusRejected | None = None

    @property
    def ok(self) -> bool:
        """True when the bus holds the message."""
        return self.error is None

    @classmethod
    def from_answer(cls, item: dict[str, Any], chosen_id: str) -> SendResult:
        """The result for one item of the bus's batch answer; `chosen_id` is the id the SDK gave the message (a
        retried batch finds it taken by its own first attempt, which stored it)."""
        index = int(item["index"])
        if item["status"] == 202:
            return cls(index, str(item["message_id"]))
        error = item.get("error") or {}
        details = dict(error.get("details") or {})
        if error.get("code") == "duplicate_message_id" and details.get("message_id") == chosen_id:
            return cls(index, chosen_id)
        kind = {401: AuthenticationError, 403: PermissionDenied}.get(item["status"], BusRejected)
        return cls(index, error=kind(int(item["status"]), str(error.get("code")), str(error.get("message")), details))


@dataclass(frozen=True)
class PendingRequest:
    """A request sent with `ContainerAgent.collaborate_with` whose response has not arrived yet (see
    `pending_requests`). With a cursor file it is kept on disk, so a restarted agent still lists it and can
    `wait_for_response(correlation_id)`; it leaves the list when its response (or failure) arrives, or when a wait
    for it times out after its deadline.

    `sent_at` and `deadline` are unix seconds; `deadline` is `sent_at + timeout`, when the bus drops the request
    (its ttl) if nobody took it by then. `task` is the REQUEST's content.
    """

    correlation_id: str
    target_sandbox: str
    task: dict[str, Any]
    sent_at: float
    timeout: float

    @property
    def deadline(self) -> float:
        """When the requester stops waiting and the bus drops the request (unix seconds)."""
        return self.sent_at + self.timeout
