"""Sandbox registry endpoints and the polling view of a mailbox."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app import metrics
from app.api.helpers import json_body
from app.auth import current_actor, require
from app.context import bus
from app.models import SandboxState
from app.schemas import (
    AckSchema,
    MailboxQuery,
    NackSchema,
    RegisterSandboxSchema,
    SandboxListQuery,
    TokenRequestSchema,
    load_or_raise,
    query_args,
)
from app.services import audit, auth, mailbox, managed, redelivery, registry
from app.services.events import SANDBOX_REGISTERED, SANDBOX_UNREGISTERED, event_notification

bp = Blueprint("sandboxes", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_SANDBOX_LIST_QUERY = SandboxListQuery()
_REGISTER_SANDBOX_SCHEMA = RegisterSandboxSchema()
_TOKEN_REQUEST_SCHEMA = TokenRequestSchema()
_ACK_SCHEMA = AckSchema()
_NACK_SCHEMA = NackSchema()
_MAILBOX_QUERY = MailboxQuery()


@bp.get("/sandboxes")
def list_sandboxes():
    """Registered sandboxes, filtered by `workspace` and `status` (a sandbox token sees its own workspace)."""
    query = load_or_raise(_SANDBOX_LIST_QUERY, query_args(request.args), what="query string")
    principal = require("sandboxes.read", workspace=query["workspace"])
    if principal.is_sandbox:
        query["workspace"] = principal.workspace
    sandboxes = registry.list_sandboxes(bus().db, **query)
    return jsonify({"sandboxes": sandboxes, "count": len(sandboxes)})


@bp.post("/sandboxes/register")
def register_sandbox():
    """Register a sandbox (201), or update a registered one's agents and metadata (200).

    The answer carries a fresh sandbox token (`token`, `token_expires_at`) bound to the sandbox and its workspace.
    """
    data = load_or_raise(_REGISTER_SANDBOX_SCHEMA, json_body())
    require("sandboxes.register", sandbox_id=data["sandbox_id"], workspace=data["workspace"])
    ctx = bus()
    sandbox, created = registry.register(ctx.db, data["sandbox_id"], data["workspace"], data["agents"],
                                         data["metadata"], actor=current_actor())
    issued = auth.rotate_sandbox_token(ctx.db, ctx.jwt_secret, sandbox["sandbox_id"], ctx.settings.sandbox_token_ttl,
                                       revoke_others=False)
    ctx.notifier.publish(event_notification(SANDBOX_REGISTERED, sandbox_id=sandbox["sandbox_id"],
                                            workspace=sandbox["workspace"], created=created))
    return jsonify({**sandbox, "token": issued["token"], "token_expires_at": issued["expires_at"]}), \
        201 if created else 200


@bp.post("/sandboxes/<sandbox_id>/token")
def sandbox_token(sandbox_id: str):
    """A fresh token for the sandbox (refresh before expiry); `{"rotate": true}` also revokes all earlier ones."""
    data = load_or_raise(_TOKEN_REQUEST_SCHEMA, json_body(optional=True))
    require("sandboxes.token", sandbox_id=sandbox_id)
    ctx = bus()
    issued = auth.rotate_sandbox_token(ctx.db, ctx.jwt_secret, sandbox_id, ctx.settings.sandbox_token_ttl,
                                       revoke_others=data["rotate"])
    audit.record_now(ctx.db, current_actor(), "sandbox.token_issued", target=f"sandbox:{sandbox_id}",
                     rotate=data["rotate"], expires_at=issued["expires_at"])
    return jsonify({"sandbox_id": sandbox_id, **issued})


@bp.get("/sandboxes/<sandbox_id>")
def get_sandbox(sandbox_id: str):
    """One registered sandbox (a sandbox token sees those of its own workspace)."""
    require("sandboxes.read")
    sandbox = registry.get_registered(bus().db, sandbox_id)
    require("sandboxes.read", workspace=sandbox["workspace"])
    return jsonify(sandbox)


@bp.post("/sandboxes/<sandbox_id>/heartbeat")
def sandbox_heartbeat(sandbox_id: str):
    """A sign of life from a sandbox without a socket (or in addition to it): it is online again."""
    require("mailbox.settle", sandbox_id=sandbox_id)
    ctx = bus()
    sandbox, events = registry.heartbeat(ctx.db, sandbox_id)
    for event in events:
        ctx.notifier.publish(event)
    return jsonify({"sandbox_id": sandbox_id, "status": sandbox["status"], "last_heartbeat": sandbox["last_heartbeat"]})


@bp.post("/sandboxes/<sandbox_id>/ack")
def ack_entry(sandbox_id: str):
    """ACK mailbox entry `seq` (for clients that poll instead of holding a socket)."""
    require("mailbox.settle", sandbox_id=sandbox_id)
    data = load_or_raise(_ACK_SCHEMA, json_body())
    message_id = redelivery.ack(bus().db, sandbox_id, data["seq"], on_acked=metrics.observe_ack)
    return jsonify({"sandbox_id": sandbox_id, "seq": data["seq"], "message_id": message_id, "state": "acked"})


@bp.post("/sandboxes/<sandbox_id>/nack")
def nack_entry(sandbox_id: str):
    """NACK mailbox entry `seq` with a reason: it is dead-lettered `nacked`."""
    require("mailbox.settle", sandbox_id=sandbox_id)
    data = load_or_raise(_NACK_SCHEMA, json_body())
    ctx = bus()
    event = redelivery.nack(ctx.db, sandbox_id, data["seq"], data["reason"])
    ctx.notifier.publish(event)
    return jsonify({"sandbox_id": sandbox_id, "seq": data["seq"], "message_id": event["event"]["data"]["message_id"],
                    "state": "dead"})


@bp.delete("/sandboxes/<sandbox_id>")
def unregister_sandbox(sandbox_id: str):
    """Unregister a sandbox (its tokens stop working); its mailbox is kept for a later re-registration.

    A managed sandbox is deleted instead: 202, its container is stopped and removed by a lifecycle task, and then
    it is unregistered."""
    require("sandboxes.unregister", sandbox_id=sandbox_id)
    ctx = bus()
    if registry.is_managed(ctx.db, sandbox_id):
        require("sandboxes.manage")
        sandbox = managed.request_state(ctx.db, sandbox_id, SandboxState.DELETED, current_actor())
        managed.converge_later(ctx.lifecycle, [sandbox_id])
        return jsonify(sandbox), 202
    sandbox = registry.unregister(ctx.db, sandbox_id, actor=current_actor())
    ctx.notifier.publish(event_notification(SANDBOX_UNREGISTERED, sandbox_id=sandbox_id))
    return jsonify(sandbox)


@bp.get("/sandboxes/<sandbox_id>/messages")
def poll_mailbox(sandbox_id: str):
    """Mailbox entries after `since` (default 0), at most `limit` (default 100): for clients without a socket."""
    require("mailbox.read", sandbox_id=sandbox_id)
    query = load_or_raise(_MAILBOX_QUERY, query_args(request.args), what="query string")
    registry.get_registered(bus().db, sandbox_id)
    return jsonify(mailbox.page(bus().db, sandbox_id, query["since"], query["limit"]))
