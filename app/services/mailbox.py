"""Reading a sandbox's mailbox in seq order (ACK and NACK live in app.services.redelivery)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.db import Database
from app.errors import UnknownSandbox
from app.models import MailboxEntry, Message, Sandbox


@dataclass(frozen=True)
class Entry:
    """One mailbox entry as sent to a client: its seq, state and the AgentMessage."""

    seq: int
    state: str
    message: dict

    def to_dict(self) -> dict:
        """The entry as JSON-ready dict."""
        return {"seq": self.seq, "state": self.state, "message": self.message}


def head_seq(db: Database, sandbox_id: str) -> int:
    """The highest seq assigned in the sandbox's mailbox (0 when empty); UnknownSandbox if never registered."""
    with db.read() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None:
            raise UnknownSandbox(sandbox_id)
        return sandbox.head_seq


def entries_after(db: Database, sandbox_id: str, since: int, limit: int = 100) -> list[Entry]:
    """At most `limit` entries of the mailbox with seq > `since`, in seq order."""
    query = (
        select(MailboxEntry.seq, MailboxEntry.state, Message)
        .join(Message, Message.id == MailboxEntry.message_id)
        .where(MailboxEntry.sandbox_id == sandbox_id, MailboxEntry.seq > since)
        .order_by(MailboxEntry.seq)
        .limit(limit)
    )
    with db.read() as session:
        return [Entry(seq, state, message.to_protocol()) for seq, state, message in session.execute(query)]


def page(db: Database, sandbox_id: str, since: int, limit: int) -> dict:
    """A page of the mailbox for polling clients: entries after `since`, the head, and the next cursor."""
    head = head_seq(db, sandbox_id)
    entries = entries_after(db, sandbox_id, since, limit)
    return {
        "sandbox_id": sandbox_id,
        "since": since,
        "head_seq": head,
        "entries": [e.to_dict() for e in entries],
        "next_since": entries[-1].seq if entries else since,
    }
