"""The audit trail: who did what, when, from where, and how it ended.

Recorded: messages accepted, delivered, dead-lettered and refused; sandbox registration, token
issue and unregistration; API key creation and revocation; policy changes; every failed
authentication. Rows are only added, never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.db import Database
from app.models import AuditEvent, isoformat, utcnow

OK = "ok"
REFUSED = "refused"  # authenticated (or not) but not allowed: 401/403/429
FAILED = "failed"    # tried and went wrong (dead letters)

SYSTEM = "system"  # the actor of what workers do on their own


@dataclass(frozen=True)
class Actor:
    """Who acts: an `id` such as ``sandbox:sb-a``, ``key:3:ops-team`` or ``anonymous``, its role, and its address."""

    id: str
    role: str | None = None
    remote_addr: str | None = None


SYSTEM_ACTOR = Actor(SYSTEM, None, None)


def record(session, actor: Actor, action: str, outcome: str = OK, target: str | None = None,
           **details) -> None:
    """Add one audit row in `session` (it commits with the caller's transaction)."""
    session.add(AuditEvent(at=utcnow(), action=action, outcome=outcome, actor=actor.id[:160],
                           actor_role=actor.role, target=target[:256] if target else None,
                           remote_addr=actor.remote_addr, details=details))


def record_now(db: Database, actor: Actor, action: str, outcome: str = OK, target: str | None = None,
               **details) -> None:
    """Add one audit row in a transaction of its own (for refusals, where no other transaction commits)."""
    with db.write() as session:
        record(session, actor, action, outcome, target, **details)


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows: exact action, outcome, actor, target; a time window [since, until)."""

    action: str | None = None
    outcome: str | None = None
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query):
        """`query` narrowed to the rows this filter matches."""
        conditions = [
            AuditEvent.action == self.action if self.action else None,
            AuditEvent.outcome == self.outcome if self.outcome else None,
            AuditEvent.actor == self.actor if self.actor else None,
            AuditEvent.target == self.target if self.target else None,
            AuditEvent.at >= self.since if self.since else None,
            AuditEvent.at < self.until if self.until else None,
        ]
        return query.where(*[c for c in conditions if c is not None])


def to_dict(event: AuditEvent) -> dict:
    """The public representation of an audit row."""
    return {"id": event.id, "at": isoformat(event.at), "action": event.action, "outcome": event.outcome,
            "actor": event.actor, "actor_role": event.actor_role, "target": event.target,
            "remote_addr": event.remote_addr, "details": event.details or {}}


def list_page(db: Database, audit_filter: AuditFilter, after: int, limit: int) -> dict:
    """Audit rows matching the filter with id > `after`, oldest first, at most `limit`; `next_after` pages on."""
    query = audit_filter.apply(select(AuditEvent)).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(limit)
    with db.read() as session:
        events = [to_dict(e) for e in session.scalars(query)]
    return {"events": events, "next_after": events[-1]["id"] if events else after}
