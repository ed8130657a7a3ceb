"""What happens to a mailbox entry after it is delivered: ACK, NACK, pushing it again, expiry.

REQUEST and COMMAND entries need an ACK. While the recipient is connected, an entry not acknowledged
by its `next_attempt_at` is pushed again, waiting ACK_TIMEOUT x 2^(attempt-1) (with jitter, capped)
each time; after MAX_DELIVERY_ATTEMPTS pushes it is dead-lettered `max_attempts`. A NACK dead-letters it
`nacked` at once. An entry (or an unrouted message) whose ttl passes first is dead-lettered `expired`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, or_, select, tuple_, update

from app.db import Database
from app.errors import BusError, Conflict, NotFound
from app.models import (
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
from app.services import dead_letters
from app.services.events import REQUEST_UNANSWERED, event_notification, redelivery_notification

SWEEP_BATCH = 500

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RedeliveryPolicy:
    """How long to wait for an ACK, how often to push again, and how far to back off."""

    ack_timeout: float = 30.0
    max_attempts: int = 5
    max_backoff: float = 300.0
    jitter: float = 0.2
    stale_after: float = 0.0  # capability routing skips (and takes requests back from) agents silent this long

    @classmethod
    def from_settings(cls, settings) -> RedeliveryPolicy:
        """The policy configured by ACK_TIMEOUT, MAX_DELIVERY_ATTEMPTS, MAX_REDELIVERY_BACKOFF and HEARTBEAT_TIMEOUT."""
        return cls(settings.ack_timeout, settings.max_delivery_attempts, settings.max_redelivery_backoff,
                   stale_after=settings.heartbeat_timeout)

    def wait_after(self, attempt: int) -> timedelta:
        """How long to wait for an ACK after push number `attempt` (1-based): exponential, capped, jittered."""
        base = min(self.ack_timeout * 2 ** (attempt - 1), self.max_backoff)
        return timedelta(seconds=base * random.uniform(1 - self.jitter, 1 + self.jitter) if attempt > 1 else base)


@dataclass
class SweepResult:
    """What one sweep did: entries to push again, and dead-letter event notifications."""

    redeliveries: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)

    def all_notifications(self) -> list[dict]:
        """Redelivery notifications (to the sockets) followed by dead-letter events."""
        return [*self.redeliveries, *self.notifications]


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ack(db: Database, sandbox_id: str, seq: int, on_acked: Callable[[float], None] | None = None) -> str:
    """Record the recipient's ACK of entry `seq`; return its message id.

    NotFound when there is no such entry; Conflict when it was already dead-lettered. A first ACK calls
    `on_acked(seconds the entry waited in the mailbox)`.
    """
    outcome = ack_many(db, sandbox_id, [seq], on_acked)[0]
    if isinstance(outcome, BusError):
        raise outcome
    return outcome


def ack_many(db: Database, sandbox_id: str, seqs: list[int], on_acked: Callable[[float], None] | None = None
             ) -> list[str | BusError]:
    """Record the recipient's ACKs of the entries `seqs` in one transaction; for each seq, in order, its message
    id or the error `ack` would have raised for it alone (a refused ACK changes nothing)."""
    return ack_runs(db, [(sandbox_id, seqs)], on_acked)[0]


def ack_runs(db: Database, runs: list[tuple[str, list[int]]], on_acked: Callable[[float], None] | None = None
             ) -> list[list[str | BusError]]:
    """`ack_many` for several (sandbox_id, seqs) runs, all in one transaction; one outcome list per run.

    The entries are read in one query and settled in one UPDATE, however many sockets the runs came from.
    """
    with db.write() as session:
        found = _entries_at(session, {(sandbox_id, seq) for sandbox_id, seqs in runs for seq in seqs})
        now = utcnow()
        newly_acked: set[int] = set()  # ids of the entries this transaction ACKs
        outcomes = [[_settle_ack(found.get((sandbox_id, seq)), sandbox_id, seq, now, newly_acked, on_acked)
                     for seq in seqs] for sandbox_id, seqs in runs]
        ids = list(newly_acked)
        for start in range(0, len(ids), _IN_CHUNK):
            session.execute(_SETTLE_ACKED, {"ids": ids[start:start + _IN_CHUNK], "now": now})
    return outcomes


_ENTRIES = MailboxEntry.__table__
_IN_CHUNK = 5000  # keys per statement (bound parameters: SQLite and PostgreSQL cap them)
_ENTRIES_AT = select(_ENTRIES.c.id, _ENTRIES.c.sandbox_id, _ENTRIES.c.seq, _ENTRIES.c.message_id, _ENTRIES.c.state,
                     _ENTRIES.c.created_at).where(tuple_(_ENTRIES.c.sandbox_id, _ENTRIES.c.seq).in_(
                         bindparam("keys", expanding=True)))
_SETTLE_ACKED = (update(_ENTRIES).where(_ENTRIES.c.id.in_(bindparam("ids", expanding=True)),
                                        _ENTRIES.c.state == EntryState.DELIVERED)
                 .values(state=EntryState.ACKED, acked_at=bindparam("now"), updated_at=bindparam("now"),
                         next_attempt_at=None))


def _entries_at(session, keys: set[tuple[str, int]]) -> dict[tuple[str, int], object]:
    """The entries at (sandbox_id, seq) `keys`, as rows (id, sandbox_id, seq, message_id, state, created_at), by
    key."""
    found = {}
    keys_in_order = sorted(keys)
    for start in range(0, len(keys_in_order), _IN_CHUNK // 2):
        for row in session.execute(_ENTRIES_AT, {"keys": keys_in_order[start:start + _IN_CHUNK // 2]}):
            found[(row.sandbox_id, row.seq)] = row
    return found


def _settle_ack(entry, sandbox_id: str, seq: int, now: datetime, newly_acked: set[int],
                on_acked: Callable[[float], None] | None) -> str | BusError:
    """The outcome of one ACK: its message id (the entry joins `newly_acked` on its first ACK), or its refusal."""
    if entry is None:
        return _unknown_entry(sandbox_id, seq)
    if entry.state == EntryState.DEAD:
        return Conflict(f"entry {seq} of {sandbox_id!r} was dead-lettered; replay it to deliver it again",
                        code="entry_dead_lettered", details={"sandbox_id": sandbox_id, "seq": seq})
    if entry.state != EntryState.ACKED and entry.id not in newly_acked:
        newly_acked.add(entry.id)
        log.debug("entry acked", extra={"message_id": entry.message_id, "sandbox_id": sandbox_id, "seq": seq,
                                        "state": "acked"})
        if on_acked is not None:
            on_acked((now - _as_utc(entry.created_at)).total_seconds())
    return entry.message_id


def nack(db: Database, sandbox_id: str, seq: int, reason: str) -> dict:
    """Record the recipient's NACK of entry `seq`: dead-letter it `nacked`; return the event notification."""
    with db.write() as session:
        entry = _entry(session, sandbox_id, seq)
        if entry.state != EntryState.DELIVERED:
            raise Conflict(f"entry {seq} of {sandbox_id!r} is {entry.state}; only a delivered entry can be NACKed",
                           code="entry_not_pending",
                           details={"sandbox_id": sandbox_id, "seq": seq, "state": entry.state})
        entry.state = EntryState.DEAD
        entry.last_error = reason
        entry.next_attempt_at = None
        entry.updated_at = utcnow()
        return dead_letters.record(session, entry.message_id, sandbox_id, dead_letters.NACKED, reason, entry.attempts)


def _entry(session, sandbox_id: str, seq: int) -> MailboxEntry:
    entry = session.scalar(select(MailboxEntry).where(MailboxEntry.sandbox_id == sandbox_id, MailboxEntry.seq == seq))
    if entry is None:
        raise _unknown_entry(sandbox_id, seq)
    return entry


def _unknown_entry(sandbox_id: str, seq: int) -> NotFound:
    return NotFound(f"sandbox {sandbox_id!r} has no mailbox entry {seq}", code="unknown_entry",
                    details={"sandbox_id": sandbox_id, "seq": seq})


def start_attempts(db: Database, sandbox_id: str, since: int, policy: RedeliveryPolicy) -> None:
    """The recipient connected and is sent every entry after `since`: those count as a push now.

    Entries at or before `since` that were never pushed while it was connected become due at once.
    """
    now = utcnow()
    pending = (MailboxEntry.sandbox_id == sandbox_id, MailboxEntry.state == EntryState.DELIVERED)
    awaiting_ack = (*pending, MailboxEntry.requires_ack.is_(True))
    with db.write() as session:
        session.execute(update(MailboxEntry).where(*awaiting_ack, MailboxEntry.seq > since).values(
            attempts=MailboxEntry.attempts + 1, next_attempt_at=now + policy.wait_after(1), updated_at=now))
        session.execute(update(MailboxEntry).where(*pending, MailboxEntry.requires_ack.is_(False),
                                                   MailboxEntry.seq > since).values(
            attempts=MailboxEntry.attempts + 1, updated_at=now))
        session.execute(update(MailboxEntry).where(
            *awaiting_ack, MailboxEntry.seq <= since, MailboxEntry.next_attempt_at.is_(None),
        ).values(next_attempt_at=now))


def sweep_unacked(db: Database, policy: RedeliveryPolicy, now: datetime | None = None) -> SweepResult:
    """Push again every due, unacknowledged entry of a connected recipient; dead-letter those out of attempts."""
    now = now or utcnow()
    result = SweepResult()
    query = (
        select(MailboxEntry, Message)
        .join(Message, Message.id == MailboxEntry.message_id)
        .join(Sandbox, Sandbox.id == MailboxEntry.sandbox_id)
        .where(MailboxEntry.state == EntryState.DELIVERED, MailboxEntry.requires_ack.is_(True),
               MailboxEntry.next_attempt_at <= now, Sandbox.status == SandboxStatus.ONLINE)
        .order_by(MailboxEntry.next_attempt_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True, of=MailboxEntry)
    )
    with db.write() as session:
        for entry, message in session.execute(query).all():
            entry.updated_at = now
            if entry.attempts >= policy.max_attempts:
                entry.state = EntryState.DEAD
                entry.next_attempt_at = None
                entry.last_error = f"no ACK after {entry.attempts} attempts"
                result.notifications.append(dead_letters.record(
                    session, entry.message_id, entry.sandbox_id, dead_letters.MAX_ATTEMPTS, entry.last_error,
                    entry.attempts))
                continue
            entry.attempts += 1
            entry.next_attempt_at = now + policy.wait_after(entry.attempts)
            result.redeliveries.append(
                redelivery_notification(entry.sandbox_id, entry.seq, entry.attempts, message.to_protocol()))
            log.debug("entry pushed again", extra={"message_id": entry.message_id, "sandbox_id": entry.sandbox_id,
                                                   "seq": entry.seq, "correlation_id": message.correlation_id,
                                                   "state": f"redelivered (attempt {entry.attempts})"})
    return result


def sweep_expired(db: Database, now: datetime | None = None) -> SweepResult:
    """Dead-letter `expired` what outlived its ttl: entries still awaiting an ACK, entries never pushed
    (their recipient was never connected since), and messages never routed."""
    now = now or utcnow()
    result = SweepResult()
    with db.write() as session:
        entries = session.scalars(
            select(MailboxEntry).where(
                MailboxEntry.state == EntryState.DELIVERED, MailboxEntry.expires_at <= now,
                or_(MailboxEntry.requires_ack.is_(True), MailboxEntry.attempts == 0))  # awaiting ACK, or never pushed
            .limit(SWEEP_BATCH).with_for_update(skip_locked=True)).all()
        for entry in entries:
            entry.state = EntryState.DEAD
            entry.next_attempt_at = None
            entry.last_error = f"ttl passed at {_as_utc(entry.expires_at).isoformat()} before an ACK"
            entry.updated_at = now
            result.notifications.append(dead_letters.record(
                session, entry.message_id, entry.sandbox_id, dead_letters.EXPIRED, entry.last_error, entry.attempts))
        stale = session.scalars(
            select(Message).where(Message.status == MessageStatus.ACCEPTED, Message.ttl.is_not(None))
            .order_by(Message.created_at).limit(SWEEP_BATCH).with_for_update(skip_locked=True)).all()
        for message in stale:
            if message.timestamp + message.ttl <= now.timestamp():
                result.notifications.extend(expire_unrouted(session, message))
        result.notifications.extend(_report_unanswered(session, now))
    return result


def _report_unanswered(session, now: datetime) -> list[dict]:
    """Mark requests that required a response and outlived their ttl without one; return the events."""
    from app.services.messages import responses_to

    candidates = session.scalars(
        select(Message).where(Message.message_type == "request", Message.requires_response.is_(True),
                              Message.ttl.is_not(None), Message.unanswered_at.is_(None),
                              Message.timestamp + Message.ttl <= now.timestamp())
        .order_by(Message.created_at).limit(SWEEP_BATCH).with_for_update(skip_locked=True)).all()
    events = []
    for request in candidates:
        if not responses_to(session, request):
            request.unanswered_at = now
            events.append(event_notification(REQUEST_UNANSWERED, message_id=request.id,
                                             from_sandbox=request.from_sandbox, to_sandbox=request.to_sandbox,
                                             ttl=request.ttl))
    return events


def expire_unrouted(session, message: Message) -> list[dict]:
    """Dead-letter a message whose ttl passed before it was routed, `expired` (`no_capable_agent` for one to
    "any" agent with a skill: none was online meanwhile); return the event notifications."""
    message.status = MessageStatus.DEAD
    message.routed_at = utcnow()
    if message.to_sandbox == ANY_CAPABLE:
        return [dead_letters.record(session, message.id, None, dead_letters.NO_CAPABLE_AGENT,
                                    f"no online agent with skill {(message.meta or {}).get('skill')!r} within the "
                                    f"ttl of {message.ttl}s")]
    recipient = None if message.to_sandbox == BROADCAST else message.to_sandbox
    return [dead_letters.record(session, message.id, recipient, dead_letters.EXPIRED,
                                f"ttl of {message.ttl}s passed before delivery")]


def is_expired(message: Message, now: datetime | None = None) -> bool:
    """True when the message has a ttl and it has passed."""
    return message.ttl is not None and message.timestamp + message.ttl <= (now or utcnow()).timestamp()


def expires_at(message: Message) -> datetime | None:
    """When the message's ttl runs out (None without a ttl)."""
    if message.ttl is None:
        return None
    return datetime.fromtimestamp(message.timestamp + message.ttl, tz=UTC)
