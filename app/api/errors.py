"""The one error handler: BusError and HTTP errors become `{"error": {"code", "message", "details"}}`; a body over
the limit is reported as the bus's own PayloadTooLarge (the limit named), whoever noticed it."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.api.helpers import body_too_large
from app.auth import audit_refusal
from app.errors import BusError, Unavailable

log = logging.getLogger(__name__)

AUDITED_STATUSES = (413, 429)  # refusals the audit trail records here (401/403 are audited where they arise)

_HTTP_CODES = {
    400: "bad_request", 500: "internal_error", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
    415: "unsupported_media_type", 429: "too_many_requests",
}


def register_error_handlers(app: Flask) -> None:
    """Install JSON error handlers for BusError, werkzeug HTTP errors and anything unexpected."""

    @app.errorhandler(BusError)
    def _bus_error(exc: BusError):
        if exc.status >= 500:
            log.error("request failed: %s", exc.message)
        if exc.status in AUDITED_STATUSES:
            audit_refusal(exc.status, exc.code)
        return jsonify(exc.to_dict()), exc.status, exc.headers()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if isinstance(exc, RequestEntityTooLarge):  # werkzeug's, with no limit named: the bus's own instead
            return _bus_error(body_too_large())
        if exc.code >= 500:
            log.error("request failed", exc_info=getattr(exc, "original_exception", None) or exc)
        body = {"error": {"code": _HTTP_CODES.get(exc.code, "http_error"), "message": exc.description, "details": {}}}
        if exc.code in AUDITED_STATUSES:
            audit_refusal(exc.code, body["error"]["code"])
        return jsonify(body), exc.code

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError):
        log.error("database unavailable: %s", str(exc.orig).splitlines()[0] if exc.orig else exc)
        error = Unavailable("the database is unavailable; retry shortly", code="database_unavailable")
        return jsonify(error.to_dict()), error.status, {"Retry-After": "1"}

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        body = {"error": {"code": "internal_error", "message": "the bus failed to handle this request; see its log",
                          "details": {}}}
        return jsonify(body), 500
