"""Request helpers shared by the blueprints: strict JSON body parsing."""

from __future__ import annotations

import json

from flask import request

from app.errors import InvalidRequest


def json_body():
    """The request body parsed as JSON; InvalidRequest (`invalid_json`) when empty or malformed."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidRequest("request body is empty; send a JSON object", code="invalid_json")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not UTF-8 text", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             code="invalid_json", details={"line": exc.lineno, "column": exc.colno}) from None
