"""Request helpers shared by the blueprints: strict JSON body parsing."""

from __future__ import annotations

from flask import request

from app.errors import InvalidRequest
from app.schemas import parse_json


def json_body():
    """The request body parsed as strict JSON; InvalidRequest (`invalid_json`) when empty or malformed."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidRequest("request body is empty; send a JSON object", code="invalid_json")
    return parse_json(raw)
