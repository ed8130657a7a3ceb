"""GET /api/v1/openapi.json (the OpenAPI document) and GET /api/docs (its HTML page); both open, no token."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.openapi import build_document, render_html

bp = Blueprint("docs", __name__, url_prefix="/api/v1")

DOCS_PAGE = "/api/docs"


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of the REST API (open: no token needed)."""
    return jsonify(build_document())


def docs_page():
    """The API reference as one self-contained HTML page, generated from the OpenAPI document (open)."""
    return render_html(build_document()), 200, {"Content-Type": "text/html; charset=utf-8"}


# The page lives outside the blueprint's /api/v1 prefix: add it to the app when the blueprint is registered.
bp.record_once(lambda state: state.app.add_url_rule(DOCS_PAGE, "api_docs", docs_page, methods=["GET"]))
