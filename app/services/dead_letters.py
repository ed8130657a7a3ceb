"""Dead letters: messages that could not be delivered to a recipient, kept with the reason and the last error;
listed, replayed (back into delivery) and purged by operators."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select

from app.db import Database
from app.errors import NotFound
from app.models import (
    DeadLetter,
    EntryState,
    MailboxEntry,
    Message,
    MessageStatus,
    Sandbox,
    SandboxStatus,
    isoformat,
    utcnow,
)
from app.services import audit
from app.services.events import (
    DEAD_LETTER_REPLAYED,
    MESSAGE_DEAD_LETTERED,
    event_notification,
    redelivery_notification,
)

log = logging.getLogger(__name__)

RECIPIENT_GONE = "recipient_gone"
EXPIRED = "expired"
MAX_ATTEMPTS = "max_attempts"
NACKED = "nacked"
UNDELIVERABLE = "undeliverable"
NO_CAPABLE_AGENT = "no_capable_agent"  # a message to "any" agent with a skill: none was online before its ttl ran out
PAIR_RATE = "pair_rate"  # accepted, then found over the per-pair rate by the worker (app.services.guards)
TRACE_BUDGET = "trace_budget"  # accepted, then found over its trace's message budget by the worker
REASONS = (RECIPIENT_GONE, EXPIRED, MAX_ATTEMPTS, NACKED, UNDELIVERABLE, NO_CAPABLE_AGENT, PAIR_RATE, TRACE_BUDGET)


def record(session, message_id: str, sandbox_id: str | None, reason: str, error: str, attempts: int = 0) -> dict:
    """Add a dead letter in `session` (once per message, recipient and reason), audited; return its event
    notification."""
    already = session.scalar(select(DeadLetter.id).where(
        DeadLetter.message_id == message_id, DeadLetter.reason == reason,
        DeadLetter.sandbox_id.is_(None) if sandbox_id is None else DeadLetter.sandbox_id == sandbox_id))
    if already is None:
        session.add(DeadLetter(message_id=message_id, sandbox_id=sandbox_id, reason=reason, attempts=attempts,
                               last_error=error))
        audit.record(session, audit.SYSTEM_ACTOR, "message.dead_lettered", audit.FAILED, target=f"message:{message_id}",
                     sandbox_id=sandbox_id, reason=reason, attempts=attempts, error=error[:500] if error else error)
    log.warning("message %s dead-lettered for %s: %s (%s)", message_id, sandbox_id, reason, error,
                extra={"message_id": message_id, "sandbox_id": sandbox_id, "state": f"dead ({reason})"})
    return event_notification(MESSAGE_DEAD_LETTERED, message_id=message_id, sandbox_id=sandbox_id, reason=reason,
                              attempts=attempts, error=error)


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operator means: by reason, recipient, message and time of dead-lettering."""

    reason: str | None = None
    sandbox_id: str | None = None
    message_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query):
        """`query` narrowed to the dead letters matching this filter."""
        conditions = [
            DeadLetter.reason == self.reason if self.reason else None,
            DeadLetter.sandbox_id == self.sandbox_id if self.sandbox_id else None,
            DeadLetter.message_id == self.message_id if self.message_id else None,
            DeadLetter.created_at >= self.since if self.since else None,
            DeadLetter.created_at < self.until if self.until else None,
        ]
        return query.where(*[c for c in conditions if c is not None])

    @property
    def is_empty(self) -> bool:
        """True when the filter matches every dead letter."""
        return not any((self.reason, self.sandbox_id, self.message_id, self.since, self.until))


def to_dict(dead: DeadLetter, message: Message | None = None) -> dict:
    """The public representation of a dead letter (with its message when given)."""
    out = {"id": dead.id, "message_id": dead.message_id, "sandbox_id": dead.sandbox_id, "reason": dead.reason,
           "attempts": dead.attempts, "last_error": dead.last_error, "created_at": isoformat(dead.created_at)}
    if message is not None:
        out["message"] = message.to_protocol()
    return out


def list_page(db: Database, where: DeadLetterFilter, after: int = 0, limit: int = 100) -> dict:
    """Dead letters matching `where` with id > `after`, oldest first, and the cursor of the next page."""
    query = where.apply(select(DeadLetter, Message).join(Message, Message.id == DeadLetter.message_id))
    with db.read() as session:
        rows = session.execute(query.where(DeadLetter.id > after).order_by(DeadLetter.id).limit(limit)).all()
        total = session.scalar(where.apply(select(func.count()).select_from(DeadLetter)))
    items = [to_dict(dead, message) for dead, message in rows]
    return {"dead_letters": items, "count": len(items), "total": total,
            "next_after": items[-1]["id"] if len(items) == limit else None}


def get(db: Database, dead_letter_id: int) -> dict:
    """One dead letter with its message; NotFound when there is none with this id."""
    with db.read() as session:
        dead = session.get(DeadLetter, dead_letter_id)
        if dead is None:
            raise _unknown(dead_letter_id)
        return to_dict(dead, session.get(Message, dead.message_id))


def _unknown(dead_letter_id: int) -> NotFound:
    return NotFound(f"dead letter {dead_letter_id} does not exist", code="unknown_dead_letter",
                    details={"id": dead_letter_id})


@dataclass
class ReplayOutcome:
    """What replaying did: notifications to announce, and a message to enqueue for delivery (or None)."""

    dead_letter_id: int
    message_id: str
    sandbox_id: str | None
    notifications: list[dict] = field(default_factory=list)
    enqueue: tuple[str, int] | None = None

    def to_dict(self) -> dict:
        """The answer to a replay request."""
        return {"id": self.dead_letter_id, "message_id": self.message_id, "sandbox_id": self.sandbox_id,
                "replayed": True, "redelivery": "mailbox" if self.enqueue is None else "queued"}


def replay(db: Database, dead_letter_id: int, policy) -> ReplayOutcome:
    """Send a dead letter back through delivery as a new attempt series, and remove it from the dead letters.

    A message that reached the mailbox (max_attempts, nacked, expired after delivery) is reset there
    and pushed again; one that never did (recipient_gone, expired or undeliverable before routing) is
    routed again. A replayed message no longer expires (its ttl is cleared).
    """
    now = utcnow()
    with db.write() as session:
        dead = session.get(DeadLetter, dead_letter_id)
        if dead is None:
            raise _unknown(dead_letter_id)
        message = session.get(Message, dead.message_id)
        outcome = ReplayOutcome(dead.id, dead.message_id, dead.sandbox_id)
        entry = None if dead.sandbox_id is None else session.scalar(select(MailboxEntry).where(
            MailboxEntry.message_id == dead.message_id, MailboxEntry.sandbox_id == dead.sandbox_id))
        message.ttl = None
        if entry is not None:
            online = session.get(Sandbox, entry.sandbox_id).status == SandboxStatus.ONLINE
            pushed = online and entry.requires_ack
            entry.state = EntryState.DELIVERED
            entry.attempts = 1 if pushed else 0
            entry.next_attempt_at = now + policy.wait_after(1) if pushed else None
            entry.expires_at = None
            entry.last_error = None
            entry.updated_at = now
            outcome.notifications.append(redelivery_notification(entry.sandbox_id, entry.seq, 1, message.to_protocol()))
        else:
            message.status = MessageStatus.ACCEPTED
            outcome.enqueue = (message.id, message.priority)
        session.delete(dead)
        outcome.notifications.append(event_notification(
            DEAD_LETTER_REPLAYED, id=dead_letter_id, message_id=dead.message_id, sandbox_id=dead.sandbox_id))
    log.info("dead letter %d (message %s for %s) replayed", dead_letter_id, outcome.message_id, outcome.sandbox_id)
    return outcome


def ids_matching(db: Database, where: DeadLetterFilter, limit: int) -> list[int]:
    """Ids of at most `limit` dead letters matching `where`, oldest first."""
    with db.read() as session:
        return list(session.scalars(where.apply(select(DeadLetter.id)).order_by(DeadLetter.id).limit(limit)))


def delete(db: Database, dead_letter_id: int) -> None:
    """Remove one dead letter (its message stays); NotFound when there is none with this id."""
    with db.write() as session:
        dead = session.get(DeadLetter, dead_letter_id)
        if dead is None:
            raise _unknown(dead_letter_id)
        session.delete(dead)


def purge(db: Database, where: DeadLetterFilter) -> int:
    """Remove every dead letter matching `where`; return how many."""
    with db.write() as session:
        return session.execute(where.apply(sa_delete(DeadLetter))).rowcount
