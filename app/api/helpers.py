"""Request helpers shared by the blueprints: strict JSON body parsing, the Idempotency-Key header and the answer
to an accepted send."""

from __future__ import annotations

from flask import jsonify, request

from app.errors import InvalidRequest
from app.schemas import IDEMPOTENCY_KEY_HEADER, IdempotencyKeyHeaderSchema, load_or_raise, parse_json
from app.services.idempotency import Accepted

REPLAYED_HEADER = "Idempotent-Replayed"


def json_body(optional: bool = False):
    """The request body parsed as strict JSON; InvalidRequest (`invalid_json`) when malformed, or when empty
    unless `optional` (then an empty body reads as `{}`)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise InvalidRequest("request body is empty; send a JSON object", code="invalid_json")
    return parse_json(raw)


def idempotency_key() -> str | None:
    """The request's Idempotency-Key, validated; None without one. Repeated headers are read as one
    comma-separated value (as HTTP combines them), which the schema refuses."""
    values = request.headers.getlist(IDEMPOTENCY_KEY_HEADER)
    if not values:
        return None
    header = {IDEMPOTENCY_KEY_HEADER: ", ".join(values)}
    return load_or_raise(IdempotencyKeyHeaderSchema(), header, what=f"{IDEMPOTENCY_KEY_HEADER} header")["key"]


def accepted_response(accepted: Accepted):
    """202 with the accepted message's id, status and timestamp (and Idempotent-Replayed when a retry)."""
    message = accepted.message
    body = jsonify({"message_id": message.id, "status": message.status, "timestamp": message.timestamp})
    if accepted.replayed:  # the original send announced and enqueued it
        return body, 202, {REPLAYED_HEADER: "true"}
    return body, 202
