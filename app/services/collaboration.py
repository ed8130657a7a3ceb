"""Collaboration admin: how the team of sandboxes is doing (connections, message rates), who is connected where,
and disconnecting a sandbox from every API node."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.db import Database
from app.errors import UnknownSandbox
from app.models import DeadLetter, MailboxEntry, Message, Sandbox, SandboxStatus, isoformat, utcnow
from app.services import audit
from app.services.events import SANDBOX_DISCONNECTED, disconnect_notification, event_notification

RATE_WINDOWS = (60, 300)  # seconds: message rates are averaged over the last minute and the last five


def traffic(db: Database) -> dict:
    """Sandboxes by status, and per second over each window: messages accepted, mailbox entries made, dead
    letters."""
    now = utcnow()
    with db.read() as session:
        by_status = dict(session.execute(select(Sandbox.status, func.count()).group_by(Sandbox.status)).tuples().all())
        rates = {}
        for window in RATE_WINDOWS:
            since = now - timedelta(seconds=window)
            counts = {
                "accepted": session.scalar(
                    select(func.count()).select_from(Message).where(Message.created_at >= since)),
                "delivered": session.scalar(select(func.count()).select_from(MailboxEntry)
                                            .where(MailboxEntry.created_at >= since)),
                "dead_lettered": session.scalar(select(func.count()).select_from(DeadLetter)
                                                .where(DeadLetter.created_at >= since)),
            }
            rates[f"last_{window}s"] = {name: round((count or 0) / window, 3) for name, count in counts.items()}
    return {
        "sandboxes": {status: by_status.get(status, 0) for status in
                      (SandboxStatus.ONLINE, SandboxStatus.OFFLINE, SandboxStatus.UNREGISTERED)},
        "connected": by_status.get(SandboxStatus.ONLINE, 0),
        "message_rates": rates,
    }


def connections(db: Database, workspace: str | None = None) -> list[dict]:
    """Registered sandboxes with where their latest mailbox socket connected (node, since, address)."""
    query = select(Sandbox).where(Sandbox.status != SandboxStatus.UNREGISTERED).order_by(Sandbox.id)
    if workspace:
        query = query.where(Sandbox.workspace == workspace)
    with db.read() as session:
        return [{
            "sandbox_id": s.id, "workspace": s.workspace, "status": s.status, "managed": bool(s.managed),
            "connected": s.status == SandboxStatus.ONLINE, "node": s.connected_node,
            "since": isoformat(s.connected_since), "address": s.connected_address,
            "last_heartbeat": isoformat(s.last_heartbeat),
        } for s in session.scalars(query)]


def disconnect(db: Database, sandbox_id: str, reason: str, actor: audit.Actor) -> list[dict]:
    """Mark a registered sandbox offline (audited); the notifications that close its sockets on every API node and
    announce it. UnknownSandbox when it is not registered."""
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id, with_for_update=True)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        was = sandbox.status
        sandbox.status = SandboxStatus.OFFLINE
        audit.record(session, actor, "sandbox.disconnected", target=f"sandbox:{sandbox_id}", reason=reason,
                     was=was)
    return [disconnect_notification(sandbox_id, reason),
            event_notification(SANDBOX_DISCONNECTED, sandbox_id=sandbox_id, reason=reason, by=actor.id)]
