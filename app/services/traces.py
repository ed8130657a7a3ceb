"""Conversation traces: which message each one follows from, so a conversation across many hops can be followed,
and the hop limit that stops a runaway one.

Every stored message carries `metadata.trace` = `{"trace_id", "parent_id", "hops"}`, written by the bus. Its parent
is the message named by the sender's `metadata.trace.parent_id` (the SDK names the message its handler is
handling), else, for a response, its request; the trace id and hop count follow from the parent (its hops + 1),
whatever the sender claims. A message without a parent starts a trace of its own (trace id = its message id,
hops 0). The runaway guards (app.services.guards) limit how deep and how large a trace grows.
"""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import Database
from app.errors import InvalidRequest, NotFound
from app.models import ANY_CAPABLE, BROADCAST, DeadLetter, MailboxEntry, Message, isoformat

MAX_TRACE_MESSAGES = 1000  # a trace's tree lists at most this many messages (oldest first)


def _claimed_parent(metadata: dict) -> str | None:
    trace = metadata.get("trace")
    if trace is None:
        return None
    parent_id = trace.get("parent_id") if isinstance(trace, dict) else None
    if not isinstance(trace, dict) or not (parent_id is None or isinstance(parent_id, str)):
        raise InvalidRequest("metadata.trace must be an object; its parent_id, the id of the message this one "
                             "follows from (or null)", details={"metadata": {"trace": ["must be an object with "
                                                                                      "a string parent_id"]}})
    return parent_id


def parent_of(session, metadata: dict, message_type: str, correlation_id: str | None) -> Message | None:
    """The message a new one follows from (see the module's rule); InvalidRequest when the sender names a parent
    that does not exist."""
    parent_id = _claimed_parent(metadata or {})
    if parent_id is not None:
        parent = session.get(Message, parent_id)
        if parent is None:
            raise InvalidRequest(f"metadata.trace.parent_id {parent_id!r} names no message",
                                 details={"metadata": {"trace": {"parent_id": ["names no message"]}}})
        return parent
    if message_type == "response" and correlation_id:
        return request_for(session, correlation_id)
    return None


def request_for(session, correlation_id: str) -> Message | None:
    """The request `correlation_id` refers to (by its message id, else its correlation id; the latest), or None."""
    request = session.get(Message, correlation_id)
    if request is None or request.message_type != "request":
        request = session.scalar(select(Message).where(
            Message.correlation_id == correlation_id, Message.message_type == "request",
        ).order_by(Message.created_at.desc()).limit(1))
    return request


def parent_of_send(db: Database, data: dict) -> Message | None:
    """The stored message a validated AgentMessage about to be sent follows from (see `parent_of`), or None; no
    database read for a message that starts a trace (most sends: the hot path)."""
    metadata, message_type = data.get("metadata") or {}, data["message_type"]
    correlation_id = data.get("correlation_id")
    if _claimed_parent(metadata) is None and not (message_type == "response" and correlation_id):
        return None
    with db.read() as session:
        return parent_of(session, metadata, message_type, correlation_id)


def message_count(db: Database, trace_id: str) -> int:
    """How many stored messages belong to trace `trace_id`."""
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Message).where(Message.trace_id == trace_id))


def stamp(session, message: Message) -> None:
    """Set a new message's trace (columns and `metadata.trace`) from its parent, in the accepting transaction."""
    parent = parent_of(session, message.meta or {}, message.message_type, message.correlation_id)
    if parent is None:
        message.trace_id, message.parent_id, message.hops = message.id, None, 0
    else:
        message.trace_id, message.parent_id, message.hops = parent.trace_id or parent.id, parent.id, parent.hops + 1
    message.meta = {**(message.meta or {}), "trace": {"trace_id": message.trace_id, "parent_id": message.parent_id,
                                                      "hops": message.hops}}


def recent(db: Database, *, sandbox: str | None = None, since=None, limit: int = 50) -> list[dict]:
    """The most recently active traces (latest message first), each summarised: root message, first and last
    message times, message count, deepest hop, the sandboxes taking part (senders and the recipients messages
    reached, also of broadcasts and capability-routed ones) and how many of its messages are dead.
    `sandbox` keeps the traces it sent or received a message in (also by broadcast, topic or capability routing);
    `since` those active since then."""
    activity = select(Message.trace_id, func.max(Message.created_at).label("last_at")).where(
        Message.trace_id.is_not(None)).group_by(Message.trace_id)
    if sandbox is not None:
        activity = activity.where((Message.from_sandbox == sandbox) | (Message.to_sandbox == sandbox) | Message.id.in_(
            select(MailboxEntry.message_id).where(MailboxEntry.sandbox_id == sandbox)))
    if since is not None:
        activity = activity.having(func.max(Message.created_at) >= since)
    with db.read() as session:
        ids = [row.trace_id for row in session.execute(activity.order_by(func.max(Message.created_at).desc(),
                                                                         Message.trace_id.desc()).limit(limit))]
        members = session.scalars(select(Message).where(Message.trace_id.in_(ids))
                                  .order_by(Message.created_at, Message.id)).all() if ids else []
        recipients = session.execute(select(MailboxEntry.message_id, MailboxEntry.sandbox_id).where(
            MailboxEntry.message_id.in_([m.id for m in members]))).all() if members else []
    grouped: dict[str, list[Message]] = {trace_id: [] for trace_id in ids}
    for message in members:
        grouped[message.trace_id].append(message)
    reached: dict[str, set[str]] = {}
    for message_id, sandbox_id in recipients:
        reached.setdefault(message_id, set()).add(sandbox_id)
    return [_summary(trace_id, found, reached) for trace_id, found in grouped.items() if found]


def _summary(trace_id: str, messages: list[Message], reached: dict[str, set[str]]) -> dict:
    root = next((m for m in messages if m.id == trace_id), messages[0])
    sandboxes = {m.from_sandbox for m in messages} | {m.to_sandbox for m in messages
                                                       if m.to_sandbox not in (BROADCAST, ANY_CAPABLE)}
    sandboxes = sorted(sandboxes.union(*(reached.get(m.id, set()) for m in messages)))
    return {"trace_id": trace_id, "root_message_id": root.id, "root_from_sandbox": root.from_sandbox,
            "started_at": isoformat(messages[0].created_at), "last_at": isoformat(messages[-1].created_at),
            "message_count": len(messages), "max_hops": max(m.hops for m in messages), "sandboxes": sandboxes,
            "dead_messages": sum(1 for m in messages if m.status == "dead")}


def tree(db: Database, trace_id: str) -> dict:
    """A trace as a tree: each message with its timings (accepted, routed, delivered and acked per recipient),
    delivery states and dead letters, and the messages that follow from it (`children`, in acceptance order).
    NotFound `unknown_trace` when no message carries it."""
    with db.read() as session:
        messages = session.scalars(select(Message).where(Message.trace_id == trace_id)
                                   .order_by(Message.created_at, Message.id).limit(MAX_TRACE_MESSAGES)).all()
        if not messages:
            raise NotFound(f"no message belongs to trace {trace_id!r}", code="unknown_trace",
                           details={"trace_id": trace_id})
        ids = [m.id for m in messages]
        entries = session.scalars(select(MailboxEntry).where(MailboxEntry.message_id.in_(ids))
                                  .order_by(MailboxEntry.sandbox_id)).all()
        dead = session.scalars(select(DeadLetter).where(DeadLetter.message_id.in_(ids))).all()
    nodes = {m.id: _node(m) for m in messages}
    for entry in entries:
        nodes[entry.message_id]["deliveries"].append({
            "sandbox_id": entry.sandbox_id, "seq": entry.seq, "state": entry.state, "attempts": entry.attempts,
            "delivered_at": isoformat(entry.created_at), "acked_at": isoformat(entry.acked_at)})
    for letter in dead:
        nodes[letter.message_id]["dead_letters"].append({
            "sandbox_id": letter.sandbox_id, "reason": letter.reason, "last_error": letter.last_error,
            "created_at": isoformat(letter.created_at)})
    roots = []
    for message in messages:
        parent = nodes.get(message.parent_id) if message.parent_id else None
        (parent["children"] if parent else roots).append(nodes[message.id])
    return {"trace_id": trace_id, "message_count": len(messages), "truncated": len(messages) == MAX_TRACE_MESSAGES,
            "roots": roots}


def _node(message: Message) -> dict:
    return {"message": message.to_protocol(), "status": message.status, "hops": message.hops,
            "parent_id": message.parent_id, "accepted_at": isoformat(message.created_at),
            "routed_at": isoformat(message.routed_at), "deliveries": [], "dead_letters": [], "children": []}
