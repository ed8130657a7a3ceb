"""Routing an accepted message into its recipients' mailboxes, idempotently and in per-sandbox order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import insert, select

from app.db import Database
from app.errors import UnknownMessage
from app.models import BROADCAST, DeadLetter, MailboxEntry, Message, MessageStatus, Sandbox, SandboxStatus, utcnow
from app.services.events import MESSAGE_DEAD_LETTERED, entries_notification, event_notification

log = logging.getLogger(__name__)

RECIPIENT_GONE = "recipient_gone"


@dataclass
class DeliveryResult:
    """What one delivery run did: the message, every (recipient, seq) it sits at, and dead-lettered recipients."""

    message: dict
    recipients: list[tuple[str, int]] = field(default_factory=list)
    new_recipients: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)

    def notifications(self) -> list[dict]:
        """The notifications to announce to API processes after the transaction committed."""
        out = []
        if self.recipients or self.message["to_sandbox"] == BROADCAST:  # an empty broadcast is still news
            out.append(entries_notification(self.message, self.recipients))
        for sandbox_id in self.dead_lettered:
            out.append(event_notification(MESSAGE_DEAD_LETTERED, message_id=self.message["message_id"],
                                          sandbox_id=sandbox_id, reason=RECIPIENT_GONE))
        return out


def deliver(db: Database, message_id: str) -> DeliveryResult:
    """Append `message_id` to each recipient's mailbox; running it again appends nothing new.

    Recipients: the addressed sandbox, or for a broadcast every registered sandbox except the sender.
    Each new entry takes the recipient's next seq under a lock on the recipient's row, so entries of one
    mailbox become visible in seq order even with several workers. A direct recipient that was
    unregistered after acceptance gets a dead letter (`recipient_gone`) instead of an entry.
    """
    with db.write() as session:
        message = session.get(Message, message_id)
        if message is None:
            raise UnknownMessage(message_id)
        existing = dict(session.execute(
            select(MailboxEntry.sandbox_id, MailboxEntry.seq).where(MailboxEntry.message_id == message_id)
        ).tuples().all())
        result = DeliveryResult(message=message.to_protocol(), recipients=sorted(existing.items()))
        if message.status != MessageStatus.ACCEPTED:
            return result

        targets = _locked_targets(session, message, exclude=set(existing))
        now = utcnow()
        rows = []
        for sandbox in targets:
            sandbox.head_seq += 1
            rows.append({"sandbox_id": sandbox.id, "seq": sandbox.head_seq, "message_id": message_id,
                         "created_at": now, "updated_at": now})
        if rows:
            session.execute(insert(MailboxEntry), rows)
        result.new_recipients = [row["sandbox_id"] for row in rows]
        result.recipients = sorted([*existing.items(), *((r["sandbox_id"], r["seq"]) for r in rows)])

        if message.to_sandbox != BROADCAST and not result.recipients:
            _dead_letter(session, message, message.to_sandbox, RECIPIENT_GONE,
                         f"sandbox {message.to_sandbox!r} was unregistered before delivery")
            result.dead_lettered.append(message.to_sandbox)
            message.status = MessageStatus.DEAD
        else:
            message.status = MessageStatus.DELIVERED
        message.routed_at = now
    return result


def _locked_targets(session, message: Message, exclude: set[str]) -> list[Sandbox]:
    """The registered recipients of `message` lacking an entry, locked in id order (no deadlocks)."""
    query = select(Sandbox).where(Sandbox.status != SandboxStatus.UNREGISTERED).order_by(Sandbox.id).with_for_update()
    if message.to_sandbox == BROADCAST:
        query = query.where(Sandbox.id != message.from_sandbox)
    else:
        query = query.where(Sandbox.id == message.to_sandbox)
    return [s for s in session.scalars(query) if s.id not in exclude]


def _dead_letter(session, message: Message, sandbox_id: str, reason: str, error: str) -> None:
    already = session.scalar(select(DeadLetter.id).where(
        DeadLetter.message_id == message.id, DeadLetter.sandbox_id == sandbox_id, DeadLetter.reason == reason))
    if already is None:
        session.add(DeadLetter(message_id=message.id, sandbox_id=sandbox_id, reason=reason, last_error=error))
    log.warning("message %s dead-lettered for %s: %s", message.id, sandbox_id, reason)
