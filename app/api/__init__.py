"""REST API v1: thin blueprints that validate with a schema, call a service and serialize the result."""

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/api/v1")

from app.api import audit, dead_letters, docs, messages, policies, sandboxes  # noqa: E402,F401  (registers routes on `api`)
