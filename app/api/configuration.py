"""The bus's configuration, read-only: what the settings are on the API node that answers."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.auth import require
from app.context import bus
from app.services import configuration

bp = Blueprint("configuration", __name__, url_prefix="/api/v1")


@bp.get("/configuration")
def get_configuration():
    """The settings of the API node that answers, each by its environment variable.

    Each comes with its default and whether it was changed; secrets (ADMIN_API_KEY, AUTH_JWT_SECRET) and passwords
    in URLs are hidden."""
    require("configuration.read")
    ctx = bus()
    return jsonify({"edition": ctx.settings.edition, "broker": ctx.settings.broker.name,
                    "settings": configuration.describe(ctx.settings)})
