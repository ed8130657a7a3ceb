"""POST /messages, POST /broadcast, POST /messages/batch, GET /messages/{id}."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.helpers import accepted_response, idempotency_key, json_body, limit_body
from app.auth import current_actor, require
from app.context import bus
from app.errors import InvalidRequest, PayloadTooLarge
from app.schemas import AgentMessageSchema, BroadcastSchema, load_or_raise
from app.schemas.sending import BatchEnvelopeSchema
from app.services import messages
from app.services.sending import ItemResult, Sender

bp = Blueprint("messages", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_AGENT_MESSAGE_SCHEMA = AgentMessageSchema()
_BROADCAST_SCHEMA = BroadcastSchema()
_BATCH_ENVELOPE_SCHEMA = BatchEnvelopeSchema()


@bp.post("/messages")
def send_message():
    """Accept a direct message (or a broadcast when to_sandbox is "broadcast"): 202 with its id."""
    return _accept(_AGENT_MESSAGE_SCHEMA)


@bp.post("/broadcast")
def broadcast():
    """Accept a message for every registered sandbox of the sender's workspace except the sender: 202 with its id."""
    return _accept(_BROADCAST_SCHEMA)


@bp.post("/messages/batch")
def send_batch():
    """Accept several messages, each validated and answered on its own: 202 when all were accepted, else 207 with
    the accepted ids and the per-item errors (not all-or-nothing)."""
    principal = require("messages.send")
    ctx = bus()
    limit_body(ctx.settings.max_batch_bytes, "MAX_BATCH_BYTES")
    envelope = load_or_raise(_BATCH_ENVELOPE_SCHEMA, json_body())
    items = envelope["messages"]
    if len(items) > ctx.settings.max_batch_messages:
        raise PayloadTooLarge(f"a batch carries at most {ctx.settings.max_batch_messages} messages; "
                              f"this one has {len(items)}", code="batch_too_large",
                              details={"messages": len(items), "limit": ctx.settings.max_batch_messages})
    results: list[ItemResult | None] = [None] * len(items)
    valid = []
    for index, item in enumerate(items):
        try:
            valid.append((index, load_or_raise(_AGENT_MESSAGE_SCHEMA, item, what=f"messages[{index}]")))
        except InvalidRequest as exc:
            results[index] = ItemResult(index, error=exc)
    stored = ctx.sending.send_batch([data for _, data in valid], Sender.of(principal, current_actor()))
    for (index, _), outcome in zip(valid, stored, strict=True):
        results[index] = ItemResult(index, outcome.message, outcome.error)
    refused = sum(1 for r in results if not r.accepted)
    body = {"accepted": len(results) - refused, "refused": refused, "results": [_item(r) for r in results]}
    return jsonify(body), 207 if refused else 202


def _item(result: ItemResult) -> dict:
    if result.accepted:
        message = result.message
        return {"index": result.index, "status": 202, "message_id": message.id, "timestamp": message.timestamp}
    return {"index": result.index, "status": result.error.status, **result.error.to_dict()}


def _accept(schema):
    principal = require("messages.send")
    key = idempotency_key()
    data = load_or_raise(schema, json_body())
    return accepted_response(bus().sending.send(data, Sender.of(principal, current_actor()), key))


@bp.get("/messages/<message_id>")
def get_message(message_id: str):
    """The message and its delivery state in each recipient's mailbox (a sandbox sees only its own messages)."""
    principal = require("messages.read")
    report = messages.report(bus().db, message_id)
    if principal.is_sandbox:
        involved = {report["message"]["from_sandbox"], *(d["sandbox_id"] for d in report["deliveries"])}
        if principal.sandbox_id not in involved:
            require("messages.read", sandbox_id=report["message"]["from_sandbox"])  # refused and audited
    return jsonify(report)
