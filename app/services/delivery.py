"""Routing an accepted message into its recipients' mailboxes, idempotently and in per-sandbox order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Boolean, DateTime, String, bindparam, case, literal, select, update

from app.db import Database
from app.errors import UnknownMessage
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
from app.services import audit, dead_letters, policies, skills, topics
from app.services.events import entries_notification
from app.services.guards import GuardLimits, breach_at_delivery
from app.services.redelivery import RedeliveryPolicy, expire_unrouted, expires_at, is_expired

log = logging.getLogger(__name__)
DEFAULT_POLICY = RedeliveryPolicy()

_SANDBOXES = Sandbox.__table__
_ROUTE_CHUNK = 5000  # recipients per statement (bound parameters: SQLite and PostgreSQL cap them)
_TIMESTAMP = DateTime(timezone=True)
_ADVANCE_HEADS = (update(_SANDBOXES).where(_SANDBOXES.c.id.in_(bindparam("ids", expanding=True)))
                  .values(head_seq=_SANDBOXES.c.head_seq + 1))


def _add_entries_statement():
    """INSERT … SELECT of one entry per recipient in `ids` at its (already advanced) head seq: a connected
    recipient gets it pushed now, as attempt 1, and then waits until `first_wait` (None: no ACK needed) for
    its ACK."""
    online = _SANDBOXES.c.status == SandboxStatus.ONLINE
    columns = {
        "sandbox_id": _SANDBOXES.c.id,
        "seq": _SANDBOXES.c.head_seq,
        "message_id": bindparam("message_id", type_=String()),
        "state": literal(EntryState.DELIVERED),
        "attempts": case((online, 1), else_=0),
        "requires_ack": bindparam("requires_ack", type_=Boolean()),
        "next_attempt_at": case((online, bindparam("first_wait", type_=_TIMESTAMP))),
        "expires_at": bindparam("expires_at", type_=_TIMESTAMP),
        "created_at": bindparam("now", type_=_TIMESTAMP),
        "updated_at": bindparam("now", type_=_TIMESTAMP),
    }
    rows = (select(*(value.label(name) for name, value in columns.items()))
            .where(_SANDBOXES.c.id.in_(bindparam("ids", expanding=True))))
    return MailboxEntry.__table__.insert().from_select(list(columns), rows)


_ADD_ENTRIES = _add_entries_statement()


@dataclass
class DeliveryResult:
    """What one delivery run did: the message, every (recipient, seq) it sits at, and dead-lettered recipients."""

    message: dict
    recipients: list[tuple[str, int]] = field(default_factory=list)
    new_recipients: list[str] = field(default_factory=list)
    dead_letter_events: list[dict] = field(default_factory=list)

    def notifications(self) -> list[dict]:
        """The notifications to announce to API processes after the transaction committed."""
        out = []
        if self.recipients or (self.message["to_sandbox"] == BROADCAST and not self.dead_letter_events):
            out.append(entries_notification(self.message, self.recipients))  # an empty broadcast is still news
        return [*out, *self.dead_letter_events]


def deliver(db: Database, message_id: str, policy: RedeliveryPolicy = DEFAULT_POLICY,
            guards: GuardLimits | None = None) -> DeliveryResult:
    """Append `message_id` to each recipient's mailbox; running it again appends nothing new.

    Recipients: the addressed sandbox, or for a broadcast every registered sandbox in the sender's workspace
    except the sender (every registered sandbox when the sender is not a registered sandbox, e.g. an operator's
    announcement), skipping those a deny policy matches for (sender → recipient, message type).
    Each new entry takes the recipient's next seq under a lock on the recipient's row, so entries of one
    mailbox become visible in seq order even with several workers. A direct recipient that was
    unregistered after acceptance gets a dead letter (`recipient_gone`) instead of an entry, and a message
    whose ttl passed before this run is dead-lettered `expired`, and one over a runaway guard (`guards`, see
    app.services.guards) is dead-lettered with the guard's name. For a connected recipient the live push counts
    as attempt 1; entries of REQUEST and COMMAND messages then await an ACK.
    """
    with db.write() as session:
        return deliver_in(session, message_id, policy, guards)


def deliver_many(db: Database, message_ids: list[str], policy: RedeliveryPolicy = DEFAULT_POLICY,
                 guards: GuardLimits | None = None) -> list[DeliveryResult]:
    """`deliver` each of `message_ids` in order, in one transaction: each mailbox gets its entries in the order
    of `message_ids`. Ids of messages that do not exist are skipped (logged). Running it again appends nothing.
    """
    results = []
    with db.write() as session:
        _lock_direct_recipients(session, message_ids)
        for message_id in message_ids:
            try:
                results.append(deliver_in(session, message_id, policy, guards))
            except UnknownMessage:
                log.error("deliver: message %s does not exist; skipped", message_id)
    return results


def _lock_direct_recipients(session, message_ids: list[str]) -> None:
    """Lock the direct recipients of `message_ids` up front, in id order, so that two batches delivering to the
    same sandboxes in different orders queue instead of deadlocking."""
    recipients = select(Message.to_sandbox).where(Message.id.in_(message_ids), Message.to_sandbox != BROADCAST)
    session.execute(select(Sandbox.id).where(Sandbox.id.in_(recipients)).order_by(Sandbox.id).with_for_update())


def deliver_in(session, message_id: str, policy: RedeliveryPolicy, guards: GuardLimits | None) -> DeliveryResult:
    """`deliver` inside the caller's write transaction (the delivery task's, or the accepting one of direct
    delivery, app.services.direct_delivery)."""
    # The message's row lock serialises runs of the same message (a task run twice, by two workers): without
    # it, on PostgreSQL both would read "no entries yet" and the second would fail on the unique
    # (message_id, sandbox_id) constraint, or overwrite what a concurrent expiry sweep decided. FOR NO KEY
    # UPDATE leaves rows referencing the message (entries, dead letters) free to be inserted meanwhile.
    message = session.get(Message, message_id, with_for_update={"key_share": True})
    if message is None:
        raise UnknownMessage(message_id)
    rows = session.execute(select(MailboxEntry.sandbox_id, MailboxEntry.seq, MailboxEntry.state)
                           .where(MailboxEntry.message_id == message_id)).all()
    existing = {row.sandbox_id: row.seq for row in rows if row.state != EntryState.REROUTED}
    result = DeliveryResult(message=message.to_protocol(), recipients=sorted(existing.items()))
    if message.status != MessageStatus.ACCEPTED:
        return result
    if is_expired(message):
        result.dead_letter_events = expire_unrouted(session, message)
        return result
    breach = guards and breach_at_delivery(session, message, guards)
    if breach:
        result.dead_letter_events = [_refuse_over_guard(session, message, *breach)]
        return result

    if message.to_sandbox == ANY_CAPABLE:
        chosen = skills.choose(session, message, {row.sandbox_id for row in rows}, policy.stale_after)
        if chosen is None:  # waits, unrouted, for a capable agent (the outbox sweep retries; ttl: no_capable_agent)
            skill = (message.meta or {}).get("skill")
            log.debug("message %s waits for an online agent with skill %r", message_id, skill)
            return result
        targets = [chosen]
    else:
        targets = _locked_targets(session, message, exclude=set(existing))
    now = utcnow()
    requires_ack = message.message_type in ACK_REQUIRED_TYPES
    first_wait = now + policy.wait_after(1)
    rows = [{"sandbox_id": t.id, "seq": t.head_seq + 1} for t in targets]
    entry_values = {"message_id": message_id, "requires_ack": requires_ack, "now": now,
                    "first_wait": first_wait if requires_ack else None, "expires_at": expires_at(message)}
    for start in range(0, len(rows), _ROUTE_CHUNK):  # the heads advance, then each entry takes its new head
        chunk = [row["sandbox_id"] for row in rows[start:start + _ROUTE_CHUNK]]
        session.execute(_ADVANCE_HEADS, {"ids": chunk})
        session.execute(_ADD_ENTRIES, {"ids": chunk, **entry_values})
    result.new_recipients = [row["sandbox_id"] for row in rows]
    for row in rows:
        log.debug("entry delivered", extra={"message_id": message_id, "sandbox_id": row["sandbox_id"],
                                            "seq": row["seq"], "correlation_id": message.correlation_id,
                                            "message_type": message.message_type, "state": "delivered"})
    result.recipients = sorted([*existing.items(), *((r["sandbox_id"], r["seq"]) for r in rows)])

    if message.to_sandbox != BROADCAST and not result.recipients:
        result.dead_letter_events.append(dead_letters.record(
            session, message.id, message.to_sandbox, dead_letters.RECIPIENT_GONE,
            f"sandbox {message.to_sandbox!r} was unregistered before delivery"))
        message.status = MessageStatus.DEAD
    else:
        message.status = MessageStatus.DELIVERED
        audit.record(session, audit.SYSTEM_ACTOR, "message.delivered", target=f"message:{message.id}",
                     recipients=result.new_recipients[:100], recipient_count=len(result.new_recipients))
    message.routed_at = now
    return result


def _refuse_over_guard(session, message: Message, guard: str, why: str) -> dict:
    """Dead-letter an accepted message a runaway guard stops, with the guard's name as reason (audited); return the
    event notification."""
    message.status = MessageStatus.DEAD
    message.routed_at = utcnow()
    audit.record(session, audit.SYSTEM_ACTOR, "message.refused", audit.REFUSED, target=f"message:{message.id}",
                 code=guard, reason=why, from_sandbox=message.from_sandbox, trace_id=message.trace_id)
    return dead_letters.record(session, message.id, message.to_sandbox, guard, why)


def _locked_targets(session, message: Message, exclude: set[str]) -> list:
    """The registered recipients of `message` lacking an entry (rows of id, workspace, status, head_seq), locked
    in id order (no deadlocks).

    A broadcast's recipients are those of the sender's workspace (all, for a sender that is not a registered
    sandbox), less those a deny policy matches; a topic message's, those of them subscribed to its topic.
    """
    query = (select(Sandbox.id, Sandbox.workspace, Sandbox.status, Sandbox.head_seq)
             .where(Sandbox.status != SandboxStatus.UNREGISTERED).order_by(Sandbox.id).with_for_update())
    if message.to_sandbox != BROADCAST:
        query = query.where(Sandbox.id == message.to_sandbox)
        return [row for row in session.execute(query) if row.id not in exclude]
    sender_row = session.execute(select(Sandbox.workspace, Sandbox.status)
                                 .where(Sandbox.id == message.from_sandbox)).first()
    registered = sender_row is not None and sender_row.status != SandboxStatus.UNREGISTERED
    sender = policies.Endpoint(message.from_sandbox, sender_row.workspace if registered else None)
    query = query.where(Sandbox.id != message.from_sandbox)
    if sender.workspace is not None:
        query = query.where(Sandbox.workspace == sender.workspace)
    rules = policies.load_rules(session)
    candidates = [row for row in session.execute(query) if row.id not in exclude]
    if message.topic is not None:
        subscribed = topics.subscribers(session, [row.id for row in candidates], message.topic)
        candidates = [row for row in candidates if row.id in subscribed]
    targets = []
    for row in candidates:
        recipient = policies.Endpoint(row.id, row.workspace)
        if rules and policies.denying_rule(rules, sender, recipient, message.message_type, message.topic) is not None:
            log.debug("broadcast %s skips %s: a deny policy matches", message.id, row.id)
            continue
        targets.append(row)
    return targets


def give_up(db: Database, message_id: str, error: str) -> list[dict]:
    """Dead-letter `undeliverable` a message whose delivery kept failing; return the event notifications."""
    with db.write() as session:
        message = session.get(Message, message_id, with_for_update={"key_share": True})  # see deliver()
        if message is None or message.status != MessageStatus.ACCEPTED:
            return []
        message.status = MessageStatus.DEAD
        message.routed_at = utcnow()
        recipient = None if message.to_sandbox == BROADCAST else message.to_sandbox
        return [dead_letters.record(session, message_id, recipient, dead_letters.UNDELIVERABLE, error)]
