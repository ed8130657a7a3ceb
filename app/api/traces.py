"""Conversation traces: GET /traces lists recent ones; GET /traces/{trace_id} is the tree of messages of one
conversation with their timings."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth import require
from app.context import bus
from app.schemas import load_or_raise, query_args
from app.schemas.topics import TraceListQuery
from app.services import traces

bp = Blueprint("traces", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_TRACE_LIST_QUERY = TraceListQuery()


@bp.get("/traces/<trace_id>")
def get_trace(trace_id: str):
    """A conversation as a tree: who asked whom (`children` follow from their parent), each message's status,
    when it was accepted and routed, its delivery and ACK per recipient, and its dead letters. 404
    `unknown_trace`."""
    require("traces.read")
    return jsonify(traces.tree(bus().db, trace_id))


@bp.get("/traces")
def list_traces():
    """Recent conversations, the latest active first: each trace's root message, first and last message times,
    message count, deepest hop, the sandboxes taking part and its dead messages; filtered by `sandbox` (sent or
    received a message in it) and `since` (active since then)."""
    require("traces.read")
    query = load_or_raise(_TRACE_LIST_QUERY, query_args(request.args), what="query string")
    found = traces.recent(bus().db, **query)
    return jsonify({"traces": found, "count": len(found)})
