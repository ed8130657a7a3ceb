"""Conversation traces: GET /traces/{trace_id}, the tree of messages of one conversation with their timings."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.auth import require
from app.context import bus
from app.services import traces

bp = Blueprint("traces", __name__, url_prefix="/api/v1")


@bp.get("/traces/<trace_id>")
def get_trace(trace_id: str):
    """A conversation as a tree: who asked whom (`children` follow from their parent), each message's status,
    when it was accepted and routed, its delivery and ACK per recipient, and its dead letters. 404
    `unknown_trace`."""
    require("traces.read")
    return jsonify(traces.tree(bus().db, trace_id))
