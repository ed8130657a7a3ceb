"""POST /messages, POST /broadcast, GET /messages/{id}."""

from __future__ import annotations

import logging

from flask import jsonify, request

from app.api import api
from app.api.helpers import json_body
from app.auth import current_actor, require
from app.context import bus
from app.errors import Forbidden
from app.models import BROADCAST, Role
from app.schemas import (IDEMPOTENCY_KEY_HEADER, AgentMessageSchema, BroadcastSchema, IdempotencyKeyHeaderSchema,
                         load_or_raise)
from app.services import audit, idempotency, messages, policies
from app.services.events import MESSAGE_ACCEPTED, event_notification

log = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"
PRIVILEGED_ROLES = (Role.ADMIN, Role.OPERATOR)  # API keys that speak for the operators: policy defaults allow them


@api.post("/messages")
def send_message():
    """Accept a direct message (or a broadcast when to_sandbox is "broadcast"): 202 with its id."""
    return _accept(AgentMessageSchema())


@api.post("/broadcast")
def broadcast():
    """Accept a message for every registered sandbox of the sender's workspace except the sender: 202 with its id."""
    return _accept(BroadcastSchema())


def _idempotency_key() -> str | None:
    """The request's Idempotency-Key, validated; None without one. Repeated headers are read as one
    comma-separated value (as HTTP combines them), which the schema refuses."""
    values = request.headers.getlist(IDEMPOTENCY_KEY_HEADER)
    if not values:
        return None
    header = {IDEMPOTENCY_KEY_HEADER: ", ".join(values)}
    return load_or_raise(IdempotencyKeyHeaderSchema(), header, what=f"{IDEMPOTENCY_KEY_HEADER} header")["key"]


def _accept(schema):
    principal = require("messages.send")
    key = _idempotency_key()
    data = load_or_raise(schema, json_body())
    ctx = bus()
    messages.check_content_size(data, ctx.settings.max_content_bytes)  # 413 before any lookup
    _check_sender(ctx, principal, data)
    accepted = idempotency.accept(ctx.db, data, key, max_content_bytes=ctx.settings.max_content_bytes,
                                  window=ctx.settings.idempotency_window, actor=current_actor())
    message = accepted.message
    body = jsonify({"message_id": message.id, "status": message.status, "timestamp": message.timestamp})
    if accepted.replayed:  # the original send announced and enqueued it
        return body, 202, {REPLAYED_HEADER: "true"}
    # Announced before the enqueue so that, from this process, "accepted" precedes the worker's "delivered".
    ctx.notifier.publish(event_notification(
        MESSAGE_ACCEPTED, message_id=message.id, from_sandbox=message.from_sandbox,
        to_sandbox=message.to_sandbox, message_type=message.message_type))
    try:
        ctx.delivery.enqueue(message.id, message.priority,
                             message.timestamp + message.ttl if message.ttl else None)
    except Exception as exc:  # durable already: the outbox sweep enqueues it later
        log.warning("message %s accepted but not enqueued (%s); the outbox sweep will retry", message.id, exc)
    return body, 202


def _check_sender(ctx, principal, data: dict) -> None:
    """A sandbox sends only as itself (403 sandbox_mismatch, never rewritten); a direct message obeys the
    policies (403 policy_denied; an unknown recipient stays 404). Refusals are audited as `message.refused`."""
    try:
        if principal.is_sandbox and data["from_sandbox"] != principal.sandbox_id:
            raise Forbidden(f"the token of sandbox {principal.sandbox_id!r} may not send as {data['from_sandbox']!r}",
                            code="sandbox_mismatch",
                            details={"token_sandbox": principal.sandbox_id, "from_sandbox": data["from_sandbox"]})
        recipient = data.get("to_sandbox")
        if recipient:  # responses addressed by correlation_id go back to their requester unchecked
            policies.check_send(ctx.db, from_sandbox=data["from_sandbox"], to_sandbox=recipient,
                                message_type=data["message_type"], privileged=principal.role in PRIVILEGED_ROLES)
    except Forbidden as exc:
        audit.record_now(ctx.db, current_actor(), "message.refused", audit.REFUSED,
                         target=f"sandbox:{data.get('to_sandbox') or BROADCAST}", code=exc.code,
                         reason=exc.message, from_sandbox=data["from_sandbox"], message_type=data["message_type"])
        raise


@api.get("/messages/<message_id>")
def get_message(message_id: str):
    """The message and its delivery state in each recipient's mailbox (a sandbox sees only its own messages)."""
    principal = require("messages.read")
    report = messages.report(bus().db, message_id)
    if principal.is_sandbox:
        involved = {report["message"]["from_sandbox"], *(d["sandbox_id"] for d in report["deliveries"])}
        if principal.sandbox_id not in involved:
            require("messages.read", sandbox_id=report["message"]["from_sandbox"])  # refused and audited
    return jsonify(report)
