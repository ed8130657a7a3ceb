"""Collaboration admin: the team's status (connections, message rates, queues, workers), who is connected where,
and disconnecting a sandbox from every API node."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from app.api.helpers import json_body
from app.auth import current_actor, require
from app.broker import workers_seen
from app.context import bus
from app.schemas import load_or_raise, query_args
from app.schemas.managed import CollaborationSandboxesQuery, DisconnectSchema
from app.services import collaboration

bp = Blueprint("collaboration", __name__, url_prefix="/api/v1/collaboration")
log = logging.getLogger(__name__)

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_COLLABORATION_SANDBOXES_QUERY = CollaborationSandboxesQuery()
_DISCONNECT_SCHEMA = DisconnectSchema()


@bp.get("/status")
def status():
    """Connected sandboxes, message rates over the last 1 and 5 minutes, what waits in each queue, and the workers
    that answer Celery's remote control (`null` where the broker cannot tell, with the reason in `unavailable`)."""
    require("collaboration.read")
    ctx = bus()
    body, unavailable, broker = collaboration.traffic(ctx.db), {}, ctx.settings.broker
    try:
        body["queues"] = broker.queue_depths()
    except Exception as exc:
        body["queues"], unavailable["queues"] = None, f"{type(exc).__name__}: {exc}"
    try:
        body["workers"] = workers_seen(ctx.celery, broker)
        if body["workers"] is None:
            unavailable["workers"] = broker.no_remote_control
    except Exception as exc:
        body["workers"], unavailable["workers"] = None, f"{type(exc).__name__}: {exc}"
    return jsonify({**body, "unavailable": unavailable})


@bp.get("/sandboxes")
def sandboxes():
    """Registered sandboxes with their connection details: the API node of the latest socket, since when, from
    which address."""
    require("collaboration.read")
    query = load_or_raise(_COLLABORATION_SANDBOXES_QUERY, query_args(request.args), what="query string")
    found = collaboration.connections(bus().db, query["workspace"])
    return jsonify({"sandboxes": found, "count": len(found)})


@bp.post("/disconnect")
def disconnect():
    """Close a sandbox's mailbox sockets on every API node (close code 4000) and mark it offline (audited, an event
    on /ws/events). Its agent may connect again: rotate its token or unregister it to keep it out."""
    require("collaboration.manage")
    data = load_or_raise(_DISCONNECT_SCHEMA, json_body())
    ctx = bus()
    for notification in collaboration.disconnect(ctx.db, data["sandbox_id"], data["reason"], current_actor()):
        ctx.notifier.publish(notification)
    return jsonify({"sandbox_id": data["sandbox_id"], "status": "offline", "disconnected": True})
