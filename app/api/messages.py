"""POST /messages, POST /broadcast, GET /messages/{id}."""

from __future__ import annotations

import logging

from flask import jsonify

from app.api import api
from app.api.helpers import json_body
from app.context import bus
from app.schemas import AgentMessageSchema, BroadcastSchema, load_or_raise
from app.services import messages
from app.services.events import MESSAGE_ACCEPTED, event_notification

log = logging.getLogger(__name__)


@api.post("/messages")
def send_message():
    """Accept a direct message (or a broadcast when to_sandbox is "broadcast"): 202 with its id."""
    return _accept(load_or_raise(AgentMessageSchema(), json_body()))


@api.post("/broadcast")
def broadcast():
    """Accept a message for every registered sandbox except the sender: 202 with its id."""
    return _accept(load_or_raise(BroadcastSchema(), json_body()))


def _accept(data: dict):
    ctx = bus()
    message = messages.accept(ctx.db, data, max_content_bytes=ctx.settings.max_content_bytes)
    # Announced before the enqueue so that, from this process, "accepted" precedes the worker's "delivered".
    ctx.notifier.publish(event_notification(
        MESSAGE_ACCEPTED, message_id=message.id, from_sandbox=message.from_sandbox,
        to_sandbox=message.to_sandbox, message_type=message.message_type))
    try:
        ctx.delivery.enqueue(message.id, message.priority,
                             message.timestamp + message.ttl if message.ttl else None)
    except Exception as exc:  # durable already: the outbox sweep enqueues it later
        log.warning("message %s accepted but not enqueued (%s); the outbox sweep will retry", message.id, exc)
    return jsonify({"message_id": message.id, "status": message.status, "timestamp": message.timestamp}), 202


@api.get("/messages/<message_id>")
def get_message(message_id: str):
    """The message and its delivery state in each recipient's mailbox."""
    return jsonify(messages.report(bus().db, message_id))
