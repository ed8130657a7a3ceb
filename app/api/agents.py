"""Agent cards: GET /agents finds the agents of registered sandboxes by skill and tag, with their liveness."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth import require
from app.context import bus
from app.schemas import load_or_raise, query_args
from app.schemas.skills import AgentListQuery
from app.services import skills

bp = Blueprint("agents", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_AGENT_LIST_QUERY = AgentListQuery()


@bp.get("/agents")
def list_agents():
    """The agents of registered sandboxes with their skills, filtered by `skill` id, skill `tag`, `workspace` and
    `online` (connected with a heartbeat within HEARTBEAT_TIMEOUT: what capability routing may choose). A sandbox
    token sees its own workspace."""
    query = load_or_raise(_AGENT_LIST_QUERY, query_args(request.args), what="query string")
    principal = require("sandboxes.read", workspace=query["workspace"])
    if principal.is_sandbox:
        query["workspace"] = principal.workspace
    ctx = bus()
    agents = skills.agent_cards(ctx.db, **query, stale_after=ctx.settings.heartbeat_timeout)
    return jsonify({"agents": agents, "count": len(agents)})
