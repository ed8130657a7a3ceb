"""Request helpers shared by the blueprints: strict JSON body parsing."""

from __future__ import annotations

from flask import request

from app.errors import InvalidRequest
from app.schemas import parse_json


def json_body(optional: bool = False):
    """The request body parsed as strict JSON; InvalidRequest (`invalid_json`) when malformed, or when empty
    unless `optional` (then an empty body reads as `{}`)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise InvalidRequest("request body is empty; send a JSON object", code="invalid_json")
    return parse_json(raw)
