"""The dead-letter queue: list, inspect, replay (one or in bulk), delete and purge."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from app.api.helpers import json_body
from app.auth import current_actor, require
from app.context import BusContext, bus
from app.errors import InvalidRequest, NotFound
from app.schemas import (
    BulkReplaySchema,
    DeadLetterListQuery,
    DeadLetterPurgeQuery,
    load_or_raise,
    query_args,
)
from app.services import audit, dead_letters
from app.services.dead_letters import DeadLetterFilter

bp = Blueprint("dead_letters", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_DEAD_LETTER_LIST_QUERY = DeadLetterListQuery()
_BULK_REPLAY_SCHEMA = BulkReplaySchema()
_DEAD_LETTER_PURGE_QUERY = DeadLetterPurgeQuery()

log = logging.getLogger(__name__)

FILTER_FIELDS = ("reason", "sandbox_id", "message_id", "since", "until")
MAX_ID = 2**63 - 1  # dead-letter ids are 64-bit: a larger id names no dead letter (not a database overflow)


def _known(dead_letter_id: int) -> int:
    """`dead_letter_id`, or NotFound `unknown_dead_letter` when it is beyond any id the database can hold."""
    if dead_letter_id > MAX_ID:
        raise NotFound(f"dead letter {dead_letter_id} does not exist", code="unknown_dead_letter",
                       details={"id": dead_letter_id})
    return dead_letter_id


def _filter(data: dict) -> DeadLetterFilter:
    return DeadLetterFilter(**{name: data.get(name) for name in FILTER_FIELDS})


@bp.get("/dead-letters")
def list_dead_letters():
    """Dead letters filtered by reason, sandbox_id, message_id, since/until; paged with `after` and `limit`."""
    require("dead_letters.read")
    query = load_or_raise(_DEAD_LETTER_LIST_QUERY, query_args(request.args), what="query string")
    return jsonify(dead_letters.list_page(bus().db, _filter(query), query["after"], query["limit"]))


@bp.get("/dead-letters/<int:dead_letter_id>")
def get_dead_letter(dead_letter_id: int):
    """One dead letter with its message."""
    require("dead_letters.read")
    return jsonify(dead_letters.get(bus().db, _known(dead_letter_id)))


@bp.post("/dead-letters/<int:dead_letter_id>/replay")
def replay_dead_letter(dead_letter_id: int):
    """Send one dead letter back through delivery as a new attempt series: 202."""
    require("dead_letters.manage")
    return jsonify(_replay(bus(), _known(dead_letter_id)).to_dict()), 202


@bp.post("/dead-letters/replay")
def replay_dead_letters():
    """Replay every dead letter matching the body's filter (at most `limit` per call): 202 with the count."""
    require("dead_letters.manage")
    data = load_or_raise(_BULK_REPLAY_SCHEMA, json_body(optional=True))
    ctx = bus()
    ids = dead_letters.ids_matching(ctx.db, _filter(data), data["limit"])
    replayed = [_replay(ctx, dead_letter_id).to_dict() for dead_letter_id in ids]
    return jsonify({"replayed": len(replayed), "items": replayed}), 202


@bp.delete("/dead-letters/<int:dead_letter_id>")
def delete_dead_letter(dead_letter_id: int):
    """Remove one dead letter."""
    require("dead_letters.manage")
    dead_letters.delete(bus().db, _known(dead_letter_id))
    audit.record_now(bus().db, current_actor(), "dead_letter.deleted", target=f"dead_letter:{dead_letter_id}")
    return jsonify({"id": dead_letter_id, "deleted": True})


@bp.delete("/dead-letters")
def purge_dead_letters():
    """Remove every dead letter matching the query's filter; `all=true` is needed to purge without a filter."""
    require("dead_letters.manage")
    query = load_or_raise(_DEAD_LETTER_PURGE_QUERY, query_args(request.args), what="query string")
    where = _filter(query)
    if where.is_empty and not query["all"]:
        raise InvalidRequest("purging every dead letter needs `all=true`; or filter by reason, sandbox_id, "
                             "message_id, since or until", code="filter_required")
    purged = dead_letters.purge(bus().db, where)
    audit.record_now(bus().db, current_actor(), "dead_letter.purged", target=None, count=purged,
                     filter={k: str(v) for k, v in query.items() if v is not None and k != "all"})
    return jsonify({"purged": purged})


def _replay(ctx: BusContext, dead_letter_id: int):
    return ctx.sending.replay_dead_letter(dead_letter_id, ctx.policy, current_actor())
