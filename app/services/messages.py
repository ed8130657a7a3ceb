"""Accepting messages (durably, before anything else happens) and reporting their delivery state."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.errors import Conflict, NotFound, PayloadTooLarge, UnknownMessage, UnknownSandbox
from app.models import (
    ANY_CAPABLE,
    BROADCAST,
    DeadLetter,
    MailboxEntry,
    Message,
    MessageStatus,
    Sandbox,
    isoformat,
    utcnow,
)
from app.services import audit, traces

log = logging.getLogger(__name__)



def content_size(content: dict) -> int:
    """The size in bytes of `content` as compact UTF-8 JSON: what the content limit measures."""
    return len(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode())


def accept(db: Database, data: dict, *, max_content_bytes: int, actor: audit.Actor | None = None) -> Message:
    """Store a validated AgentMessage and return it; once this returns, the message is durable.

    Assigns message_id (when absent) and timestamp. Raises PayloadTooLarge for oversized content,
    UnknownSandbox for a direct message to a sandbox that is not registered, and Conflict when a
    client-chosen message_id is already taken. With `actor`, the acceptance is audited in the same transaction.
    """
    check_content_size(data, max_content_bytes)
    message = new_message(data)
    try:
        with db.write() as session:
            store(session, message, client_chose_id=bool(data.get("message_id")), actor=actor)
    except IntegrityError:
        raise duplicate_message_id(message.id) from None
    return message


def check_content_size(data: dict, max_content_bytes: int) -> None:
    """Raise PayloadTooLarge when the message's content is over `max_content_bytes` (see `content_size`)."""
    size = content_size(data["content"])
    if size > max_content_bytes:
        raise PayloadTooLarge(
            f"content is {size} bytes; the limit is {max_content_bytes} bytes (MAX_CONTENT_BYTES)",
            details={"content_bytes": size, "limit_bytes": max_content_bytes, "limit": max_content_bytes},
        )


def new_message(data: dict) -> Message:
    """A new, not yet stored Message from a validated AgentMessage: its id (client's or a fresh uuid4 hex),
    the server's timestamp, status accepted."""
    fields = {k: v for k, v in data.items() if k not in ("message_id", "timestamp", "metadata")}
    return Message(
        id=data.get("message_id") or uuid.uuid4().hex,
        timestamp=time.time(),
        meta=data.get("metadata") or {},
        status=MessageStatus.ACCEPTED,
        created_at=utcnow(),
        **fields,
    )


def store(session, message: Message, *, client_chose_id: bool, actor: audit.Actor | None = None) -> None:
    """Add `message` to the write transaction of `session` and flush it, after the checks acceptance makes.

    Resolves the recipient of a response without to_sandbox (NotFound `unknown_correlation_id`), raises
    UnknownSandbox for a direct message to a sandbox that is not registered and Conflict
    `duplicate_message_id` for a client-chosen id that is taken. A concurrent insert of the same id surfaces
    as IntegrityError (from the flush or the commit); the caller rolls back. With `actor`, an audit row
    `message.accepted` joins the transaction.
    """
    if message.to_sandbox is None:
        message.to_sandbox = _requester(session, message.correlation_id)
    if message.to_sandbox not in (BROADCAST, ANY_CAPABLE):  # "any": routing chooses the recipient
        recipient = session.get(Sandbox, message.to_sandbox)
        if recipient is None or not recipient.is_registered:
            raise UnknownSandbox(message.to_sandbox)
    if client_chose_id and session.get(Message, message.id) is not None:
        raise duplicate_message_id(message.id)
    traces.stamp(session, message)
    session.add(message)
    session.flush()
    log.debug("message accepted", extra={"message_id": message.id, "sandbox_id": message.to_sandbox,
                                         "correlation_id": message.correlation_id,
                                         "message_type": message.message_type, "state": "accepted"})
    if actor is not None:
        audit.record(session, actor, "message.accepted", target=f"message:{message.id}",
                     from_sandbox=message.from_sandbox, to_sandbox=message.to_sandbox,
                     message_type=message.message_type)


def _requester(session, correlation_id: str) -> str:
    """The sandbox that sent the request `correlation_id` refers to (by message id or correlation id)."""
    request = traces.request_for(session, correlation_id)
    if request is None:
        raise NotFound(f"no request has correlation_id or message_id {correlation_id!r}; set to_sandbox",
                       code="unknown_correlation_id", details={"correlation_id": correlation_id})
    return request.from_sandbox


def responses_to(session, request: Message) -> list[Message]:
    """The responses to `request`: response messages whose correlation_id is its id or its correlation_id."""
    keys = [k for k in (request.id, request.correlation_id) if k]
    return session.scalars(select(Message).where(
        Message.message_type == "response", Message.correlation_id.in_(keys)).order_by(Message.created_at)).all()


def response_state(request: Message, responses: list) -> str | None:
    """For a request that requires a response: answered, unanswered (ttl passed first) or awaiting."""
    if request.message_type != "request" or not request.requires_response:
        return None
    if responses:
        return "answered"
    return "unanswered" if request.unanswered_at else "awaiting"


def duplicate_message_id(message_id: str) -> Conflict:
    """The Conflict `duplicate_message_id` for a client-chosen message_id that is already taken."""
    return Conflict(f"message_id {message_id!r} is already used", code="duplicate_message_id",
                    details={"message_id": message_id})


def report(db: Database, message_id: str) -> dict:
    """The message, its status and its delivery state in every recipient's mailbox (and any dead letters)."""
    with db.read() as session:
        message = session.get(Message, message_id)
        if message is None:
            raise UnknownMessage(message_id)
        entries = session.scalars(
            select(MailboxEntry).where(MailboxEntry.message_id == message_id).order_by(MailboxEntry.sandbox_id)
        ).all()
        dead = session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)).all()
        responses = responses_to(session, message) if message.message_type == "request" else []
        return {
            "message": message.to_protocol(),
            "status": message.status,
            "accepted_at": isoformat(message.created_at),
            "routed_at": isoformat(message.routed_at),
            "deliveries": [
                {
                    "sandbox_id": e.sandbox_id,
                    "seq": e.seq,
                    "state": e.state,
                    "attempts": e.attempts,
                    "delivered_at": isoformat(e.created_at),
                    "acked_at": isoformat(e.acked_at),
                }
                for e in entries
            ],
            "response_state": response_state(message, responses),
            "responses": [{"message_id": r.id, "from_sandbox": r.from_sandbox, "from_agent": r.from_agent,
                           "status": r.status, "accepted_at": isoformat(r.created_at)} for r in responses],
            "dead_letters": [
                {"sandbox_id": d.sandbox_id, "reason": d.reason, "last_error": d.last_error,
                 "created_at": isoformat(d.created_at)}
                for d in dead
            ],
        }


def unrouted(db: Database, older_than: float, limit: int = 500) -> list[tuple[str, int]]:
    """(message_id, priority) of accepted messages not yet routed `older_than` seconds after acceptance."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    query = (
        select(Message.id, Message.priority)
        .where(Message.status == MessageStatus.ACCEPTED, Message.created_at < cutoff)
        .order_by(Message.created_at)
        .limit(limit)
    )
    with db.read() as session:
        return [(row.id, row.priority) for row in session.execute(query)]
