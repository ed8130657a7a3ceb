"""The audit trail, for admins and operators."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth import require
from app.context import bus
from app.schemas import AuditQuery, load_or_raise, query_args
from app.services import audit

bp = Blueprint("audit", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_AUDIT_QUERY = AuditQuery()


@bp.get("/audit")
def list_audit_events():
    """Audit rows, oldest first, filtered by action, outcome, actor, target, since/until; paged by `after`."""
    require("audit.read")
    query = load_or_raise(_AUDIT_QUERY, query_args(request.args), what="query string")
    after, limit = query.pop("after"), query.pop("limit")
    return jsonify(audit.list_page(bus().db, audit.AuditFilter(**query), after, limit))
