"""Runaway guards, on by default, so two agents answering each other forever stop by themselves:

- `hop_limit` (MAX_TRACE_HOPS, 32): a message more than that many hops from its trace's root is refused (409);
- `pair_rate` (PAIR_RATE_PER_MINUTE, 600): more messages than that from one sandbox to another within a minute are
  refused (429, Retry-After);
- `trace_budget` (TRACE_MESSAGE_BUDGET, off by default): a trace holding that many messages takes no more (409).

The API process checks each send against what it knows (the pair rate it has seen, the stored trace). The worker
checks again at delivery for messages that follow from another (hops > 0), against every node's sends in the
database, and dead-letters an accepted message over a guard with the guard's name as reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from app.db import Database
from app.errors import Conflict, TooManyRequests
from app.models import ANY_CAPABLE, BROADCAST, Message
from app.services import traces
from app.services.limits import RateLimiter

HOP_LIMIT = "hop_limit"
PAIR_RATE = "pair_rate"
TRACE_BUDGET = "trace_budget"
PAIR_WINDOW = 60.0  # seconds: PAIR_RATE_PER_MINUTE counts messages within this window


@dataclass(frozen=True)
class GuardLimits:
    """The guards' limits; 0 turns one off."""

    max_trace_hops: int = 32
    pair_rate_per_minute: int = 600
    trace_message_budget: int = 0

    @classmethod
    def from_settings(cls, settings) -> GuardLimits:
        """The limits configured by MAX_TRACE_HOPS, PAIR_RATE_PER_MINUTE and TRACE_MESSAGE_BUDGET."""
        return cls(settings.max_trace_hops, settings.pair_rate_per_minute, settings.trace_message_budget)


class SendGuards:
    """The guards an API process applies to each send before storing it (raises the refusing guard's error)."""

    def __init__(self, db: Database, limits: GuardLimits):
        self.db = db
        self.limits = limits
        rate = limits.pair_rate_per_minute
        self._pairs = RateLimiter(rate / PAIR_WINDOW, rate) if rate else None
        self._follows_checked = bool(limits.max_trace_hops or limits.trace_message_budget)

    def check(self, data: dict) -> None:
        """Refuse `data` (a validated AgentMessage) over a guard: Conflict `hop_limit` / `trace_budget`,
        TooManyRequests `pair_rate`; `details.guard` names it."""
        parent = traces.parent_of_send(self.db, data) if self._follows_checked else None
        if parent is not None:
            self._check_trace(parent)
        recipient = data.get("to_sandbox")
        if self._pairs is None or recipient in (None, BROADCAST, ANY_CAPABLE):
            return
        wait = self._pairs.take(f"{data['from_sandbox']}\x00{recipient}")
        if wait:
            raise pair_rate_error(data["from_sandbox"], recipient, self.limits.pair_rate_per_minute, wait)


    def _check_trace(self, parent: Message) -> None:
        trace_id, hops = parent.trace_id or parent.id, parent.hops + 1
        limit = self.limits.max_trace_hops
        if limit and hops > limit:
            raise Conflict(f"trace {trace_id} reached the hop limit ({limit}): a message following {parent.id} "
                           f"would be hop {hops}", code=HOP_LIMIT,
                           details={"guard": HOP_LIMIT, "trace_id": trace_id, "hops": hops, "limit": limit,
                                    "parent_id": parent.id})
        budget = self.limits.trace_message_budget
        if budget and (count := traces.message_count(self.db, trace_id)) >= budget:
            raise Conflict(f"trace {trace_id} holds {count} messages, its budget (TRACE_MESSAGE_BUDGET {budget})",
                           code=TRACE_BUDGET, details={"guard": TRACE_BUDGET, "trace_id": trace_id,
                                                       "messages": count, "limit": budget})


def pair_rate_error(sender: str, recipient: str, limit: int, retry_after: float) -> TooManyRequests:
    """The 429 `pair_rate` refusal of a message from `sender` to `recipient`."""
    return TooManyRequests(f"sandbox {sender!r} sent {recipient!r} more than {limit} messages within a minute "
                           "(PAIR_RATE_PER_MINUTE): a runaway conversation?", retry_after=retry_after, code=PAIR_RATE,
                           details={"guard": PAIR_RATE, "from_sandbox": sender, "to_sandbox": recipient,
                                    "limit": limit, "window_seconds": PAIR_WINDOW})


def breach_at_delivery(session, message: Message, limits: GuardLimits) -> tuple[str, str] | None:
    """(guard, why) when an accepted `message` that follows from another breaks a guard given every node's
    stored messages, else None; messages that start a trace are never checked here (the hot path)."""
    if not message.hops or message.to_sandbox in (BROADCAST, ANY_CAPABLE):
        return None
    if limits.pair_rate_per_minute:
        recent = session.scalar(select(func.count()).select_from(Message).where(
            Message.from_sandbox == message.from_sandbox, Message.to_sandbox == message.to_sandbox,
            Message.created_at > message.created_at - timedelta(seconds=PAIR_WINDOW),
            Message.created_at <= message.created_at))
        if recent > limits.pair_rate_per_minute:
            return PAIR_RATE, (f"{recent} messages from {message.from_sandbox!r} to {message.to_sandbox!r} within a "
                               f"minute; PAIR_RATE_PER_MINUTE is {limits.pair_rate_per_minute}")
    if limits.trace_message_budget and message.trace_id:
        before = session.scalar(select(func.count()).select_from(Message).where(
            Message.trace_id == message.trace_id, Message.created_at <= message.created_at))
        if before > limits.trace_message_budget:
            return TRACE_BUDGET, (f"trace {message.trace_id} holds {before} messages; TRACE_MESSAGE_BUDGET is "
                                  f"{limits.trace_message_budget}")
    return None
