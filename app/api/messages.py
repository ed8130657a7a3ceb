"""POST /messages, POST /broadcast, GET /messages/{id}."""

from __future__ import annotations

import logging

from flask import jsonify, request

from app.api import api
from app.api.helpers import json_body
from app.context import bus
from app.schemas import (IDEMPOTENCY_KEY_HEADER, AgentMessageSchema, BroadcastSchema, IdempotencyKeyHeaderSchema,
                         load_or_raise)
from app.services import idempotency, messages
from app.services.events import MESSAGE_ACCEPTED, event_notification

log = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"


@api.post("/messages")
def send_message():
    """Accept a direct message (or a broadcast when to_sandbox is "broadcast"): 202 with its id."""
    return _accept(AgentMessageSchema())


@api.post("/broadcast")
def broadcast():
    """Accept a message for every registered sandbox except the sender: 202 with its id."""
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
    key = _idempotency_key()
    data = load_or_raise(schema, json_body())
    ctx = bus()
    accepted = idempotency.accept(ctx.db, data, key, max_content_bytes=ctx.settings.max_content_bytes,
                                  window=ctx.settings.idempotency_window)
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


@api.get("/messages/<message_id>")
def get_message(message_id: str):
    """The message and its delivery state in each recipient's mailbox."""
    return jsonify(messages.report(bus().db, message_id))
