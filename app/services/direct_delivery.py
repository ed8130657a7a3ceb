"""Direct delivery: a message whose recipient holds a mailbox socket on the process that accepts it is routed into
that mailbox in the transaction that stores it, and pushed by that process once the transaction commits, with no
delivery task in between. Every other message (broadcasts, topic messages, "any", recipients connected elsewhere or
not at all) takes the delivery task, which also stays the path of retries and recovery.

The promises do not change: the 202 still follows the commit (the entry is as durable as the message), an entry
not acknowledged is pushed again by the redelivery sweep, a socket that reconnects reads what it missed by seq, and
a mailbox gets a sender's messages in the order they were accepted: a message is routed directly only while no
earlier message to the same recipient (and no broadcast) still waits for its delivery task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.models import (
    ACK_REQUIRED_TYPES,
    ANY_CAPABLE,
    BROADCAST,
    EntryState,
    MailboxEntry,
    Message,
    MessageStatus,
    Sandbox,
    SandboxStatus,
    utcnow,
)
from app.services import audit
from app.services.delivery import DEFAULT_POLICY, DeliveryResult, deliver_in
from app.services.guards import GuardLimits
from app.services.redelivery import RedeliveryPolicy, expires_at, is_expired

_SANDBOXES = Sandbox.__table__
_ENTRIES = MailboxEntry.__table__
_MESSAGES = Message.__table__

log = logging.getLogger(__name__)


class DirectRouter:
    """Routes, inside the accepting transaction, the messages of a group whose recipient `is_local(sandbox_id)`
    says is connected to this process; the others are left for the delivery task."""

    def __init__(self, is_local: Callable[[str], bool], policy: RedeliveryPolicy = DEFAULT_POLICY,
                 guards: GuardLimits | None = None):
        self.is_local = is_local
        self.policy = policy
        self.guards = guards

    def route(self, session, fresh: list[Message]) -> dict[str, DeliveryResult]:
        """Route the messages of `fresh` (just stored in `session`'s transaction, in acceptance order) that may go
        directly, in a savepoint; return their delivery results by message id (the messages left out are for the
        delivery task). When routing fails, none is routed (logged): they stay accepted, for the delivery task.
        """
        try:
            with session.begin_nested():
                return self._route(session, fresh)
        except Exception:
            log.exception("direct delivery: routing %d message(s) in their accepting transaction failed; the delivery "
                          "task routes them", len(fresh))
            for message in fresh:  # the savepoint's rollback expired what routing changed: read it back
                session.refresh(message)
            return {}

    def _route(self, session, fresh: list[Message]) -> dict[str, DeliveryResult]:
        candidates = self._candidates(fresh)
        if not candidates:
            return {}
        waiting = self._waiting_recipients(session, {m.to_sandbox for m in candidates}, [m.id for m in fresh])
        if BROADCAST in waiting:
            return {}
        chosen = [message for message in candidates if message.to_sandbox not in waiting]
        plain = [message for message in chosen if _plain(message)]
        results = self._route_plain(session, plain) if plain else {}
        for message in chosen:  # follow-ups (the guards count stored messages) and the expired: the general way
            if message.id not in results:
                results[message.id] = deliver_in(session, message.id, self.policy, self.guards)
        return results

    def _route_plain(self, session, plain: list[Message]) -> dict[str, DeliveryResult]:
        """Route `plain` messages with a few statements for all of them: each recipient's row locked (in id order)
        and its head advanced by its messages, one entry per message at the next seqs in their order, every
        message marked delivered, one audit row each (`message.delivered`, as the delivery task writes)."""
        rows = session.execute(select(_SANDBOXES.c.id, _SANDBOXES.c.head_seq, _SANDBOXES.c.status)
                               .where(_SANDBOXES.c.id.in_({m.to_sandbox for m in plain}))
                               .order_by(_SANDBOXES.c.id).with_for_update()).all()
        heads = {row.id: row.head_seq for row in rows}
        online = {row.id for row in rows if row.status == SandboxStatus.ONLINE}
        now = utcnow()
        first_wait = now + self.policy.wait_after(1)
        entries, results = [], {}
        for message in plain:
            recipient = message.to_sandbox
            heads[recipient] += 1
            requires_ack = message.message_type in ACK_REQUIRED_TYPES
            connected = recipient in online
            entries.append({"sandbox_id": recipient, "seq": heads[recipient], "message_id": message.id,
                            "state": EntryState.DELIVERED, "attempts": 1 if connected else 0,
                            "requires_ack": requires_ack,
                            "next_attempt_at": first_wait if connected and requires_ack else None,
                            "expires_at": expires_at(message), "created_at": now, "updated_at": now})
            set_committed_value(message, "status", MessageStatus.DELIVERED)
            set_committed_value(message, "routed_at", now)
            results[message.id] = DeliveryResult(message=message.to_protocol(),
                                                 recipients=[(recipient, heads[recipient])],
                                                 new_recipients=[recipient])
            audit.record(session, audit.SYSTEM_ACTOR, "message.delivered", target=f"message:{message.id}",
                         recipients=[recipient], recipient_count=1)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("entry delivered", extra={"message_id": message.id, "sandbox_id": recipient,
                                                    "seq": heads[recipient], "correlation_id": message.correlation_id,
                                                    "message_type": message.message_type, "state": "delivered"})
        session.execute(update(_SANDBOXES).where(_SANDBOXES.c.id == bindparam("recipient"))
                        .values(head_seq=bindparam("head")),
                        [{"recipient": recipient, "head": head} for recipient, head in heads.items()])
        session.execute(insert(_ENTRIES), entries)
        session.execute(update(_MESSAGES).where(_MESSAGES.c.message_id.in_([m.id for m in plain]))
                        .values(status=MessageStatus.DELIVERED, routed_at=now))
        return results

    def _candidates(self, fresh: list[Message]) -> list[Message]:
        """The direct messages of `fresh` to a locally connected recipient, up to the first broadcast or "any"
        message (whose recipients are only known to its delivery task: those after it wait behind it)."""
        local: dict[str, bool] = {}
        out = []
        for message in fresh:
            recipient = message.to_sandbox
            if recipient in (BROADCAST, ANY_CAPABLE):
                break
            if recipient not in local:
                local[recipient] = self.is_local(recipient)
            if local[recipient]:
                out.append(message)
        return out

    @staticmethod
    def _waiting_recipients(session, recipients: set[str], group: list[str]) -> set[str]:
        """Those of `recipients` (and "broadcast") with an earlier message still waiting for its delivery task."""
        query = (select(Message.to_sandbox).distinct()
                 .where(Message.status == MessageStatus.ACCEPTED, Message.to_sandbox.in_([*recipients, BROADCAST]),
                        Message.id.not_in(group)))
        return set(session.scalars(query))


def _plain(message: Message) -> bool:
    """A message that starts its trace (no guard counts stored messages for it) and whose ttl has not passed."""
    return not message.hops and not is_expired(message)
