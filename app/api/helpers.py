"""Request helpers shared by the blueprints: strict JSON body parsing within the body limit, the Idempotency-Key
header and the answer to an accepted send."""

from __future__ import annotations

from flask import g, jsonify, request

from app.config import BODY_OVERHEAD_BYTES
from app.context import bus
from app.errors import InvalidRequest, PayloadTooLarge
from app.schemas import IDEMPOTENCY_KEY_HEADER, IdempotencyKeyHeaderSchema, load_or_raise, parse_json
from app.services.idempotency import Accepted

REPLAYED_HEADER = "Idempotent-Replayed"

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_IDEMPOTENCY_KEY_HEADER_SCHEMA = IdempotencyKeyHeaderSchema()


def limit_body(limit: int, setting: str) -> None:
    """Hold the current request's body to `limit` bytes instead of the app's limit; a refusal names `setting`."""
    request.max_content_length = limit
    g.body_limit_setting = setting


def body_too_large() -> PayloadTooLarge:
    """The refusal of a request body over the request's limit: the limit in bytes (`details.limit_bytes`), where
    it comes from, and the body's size when the client announced it (`details.body_bytes`)."""
    limit = request.max_content_length
    origin = g.get("body_limit_setting") or (f"MAX_CONTENT_BYTES={bus().settings.max_content_bytes} for the content "
                                             f"and {BODY_OVERHEAD_BYTES} for the rest of the request")
    size = request.content_length
    if size is None:
        return PayloadTooLarge(f"the request body is over the limit of {limit} bytes ({origin})",
                               details={"limit_bytes": limit})
    return PayloadTooLarge(f"the request body is {size} bytes; the limit is {limit} bytes ({origin})",
                           details={"limit_bytes": limit, "body_bytes": size})


def request_body() -> bytes:
    """The request body; PayloadTooLarge when it is over the request's limit, also when it came without a
    Content-Length (chunked): werkzeug then stops reading at the limit and returns what it read, without
    refusing, so one more byte is asked of the server's input to tell a body of exactly the limit from a longer
    one."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if (request.content_length is None and limit is not None and len(raw) >= limit
            and request.environ["wsgi.input"].read(1)):
        raise body_too_large()
    return raw


def json_body(optional: bool = False):
    """The request body (within its limit: `request_body`) parsed as strict JSON; InvalidRequest (`invalid_json`)
    when malformed, or when empty unless `optional` (then an empty body reads as `{}`)."""
    raw = request_body()
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
    return load_or_raise(_IDEMPOTENCY_KEY_HEADER_SCHEMA, header, what=f"{IDEMPOTENCY_KEY_HEADER} header")["key"]


def accepted_response(accepted: Accepted):
    """202 with the accepted message's id, status and timestamp (and Idempotent-Replayed when a retry)."""
    message = accepted.message
    body = jsonify({"message_id": message.id, "status": message.status, "timestamp": message.timestamp})
    if accepted.replayed:  # the original send announced and enqueued it
        return body, 202, {REPLAYED_HEADER: "true"}
    return body, 202
