"""Sandbox registry endpoints and the polling view of a mailbox."""

from __future__ import annotations

from flask import jsonify, request

from app.api import api
from app.api.helpers import json_body
from app.context import bus
from app.schemas import (
    AckSchema, MailboxQuery, NackSchema, RegisterSandboxSchema, SandboxListQuery, load_or_raise, query_args,
)
from app.services import mailbox, redelivery, registry
from app.services.events import SANDBOX_REGISTERED, SANDBOX_UNREGISTERED, event_notification


@api.get("/sandboxes")
def list_sandboxes():
    """Registered sandboxes, filtered by `workspace` and `status`."""
    query = load_or_raise(SandboxListQuery(), query_args(request.args), what="query string")
    sandboxes = registry.list_sandboxes(bus().db, **query)
    return jsonify({"sandboxes": sandboxes, "count": len(sandboxes)})


@api.post("/sandboxes/register")
def register_sandbox():
    """Register a sandbox (201), or update a registered one's agents and metadata (200)."""
    data = load_or_raise(RegisterSandboxSchema(), json_body())
    ctx = bus()
    sandbox, created = registry.register(ctx.db, data["sandbox_id"], data["workspace"], data["agents"], data["metadata"])
    ctx.notifier.publish(event_notification(SANDBOX_REGISTERED, sandbox_id=sandbox["sandbox_id"],
                                            workspace=sandbox["workspace"], created=created))
    return jsonify(sandbox), 201 if created else 200


@api.get("/sandboxes/<sandbox_id>")
def get_sandbox(sandbox_id: str):
    """One registered sandbox."""
    return jsonify(registry.get_registered(bus().db, sandbox_id))


@api.post("/sandboxes/<sandbox_id>/heartbeat")
def sandbox_heartbeat(sandbox_id: str):
    """A sign of life from a sandbox without a socket (or in addition to it): it is online again."""
    ctx = bus()
    sandbox, events = registry.heartbeat(ctx.db, sandbox_id)
    for event in events:
        ctx.notifier.publish(event)
    return jsonify({"sandbox_id": sandbox_id, "status": sandbox["status"], "last_heartbeat": sandbox["last_heartbeat"]})


@api.post("/sandboxes/<sandbox_id>/ack")
def ack_entry(sandbox_id: str):
    """ACK mailbox entry `seq` (for clients that poll instead of holding a socket)."""
    data = load_or_raise(AckSchema(), json_body())
    message_id = redelivery.ack(bus().db, sandbox_id, data["seq"])
    return jsonify({"sandbox_id": sandbox_id, "seq": data["seq"], "message_id": message_id, "state": "acked"})


@api.post("/sandboxes/<sandbox_id>/nack")
def nack_entry(sandbox_id: str):
    """NACK mailbox entry `seq` with a reason: it is dead-lettered `nacked`."""
    data = load_or_raise(NackSchema(), json_body())
    ctx = bus()
    event = redelivery.nack(ctx.db, sandbox_id, data["seq"], data["reason"])
    ctx.notifier.publish(event)
    return jsonify({"sandbox_id": sandbox_id, "seq": data["seq"], "message_id": event["event"]["data"]["message_id"],
                    "state": "dead"})


@api.delete("/sandboxes/<sandbox_id>")
def unregister_sandbox(sandbox_id: str):
    """Unregister a sandbox; its mailbox is kept for a later re-registration."""
    ctx = bus()
    sandbox = registry.unregister(ctx.db, sandbox_id)
    ctx.notifier.publish(event_notification(SANDBOX_UNREGISTERED, sandbox_id=sandbox_id))
    return jsonify(sandbox)


@api.get("/sandboxes/<sandbox_id>/messages")
def poll_mailbox(sandbox_id: str):
    """Mailbox entries after `since` (default 0), at most `limit` (default 100): for clients without a socket."""
    query = load_or_raise(MailboxQuery(), query_args(request.args), what="query string")
    registry.get_registered(bus().db, sandbox_id)
    return jsonify(mailbox.page(bus().db, sandbox_id, query["since"], query["limit"]))
