"""GET /api/v1/configuration through an in-process app on a real SQLite database: every setting under the
environment variable that sets it, secrets and URL passwords never shown, defaults and changes told apart, and
who may read it."""

from __future__ import annotations

import re
from pathlib import Path

from app.composition import create_app
from app.config import Settings
from app.migrate import upgrade
from app.services import auth
from tests.test_policies import error_of

ADMIN_KEY = "cbk_admin-key-0123456789abcdefghij"
JWT_SECRET = "s3cret-" * 6


def configured_app(tmp_path, **env):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "redis", "ADMIN_API_KEY": ADMIN_KEY,
                                  "AUTH_JWT_SECRET": JWT_SECRET, **env})
    upgrade(settings)
    return create_app(settings, start_listener=False)


def settings_by_name(answer) -> dict[str, dict]:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return {item["name"]: item for item in answer.get_json()["settings"]}


def test_every_setting_is_shown_by_its_environment_variable_with_secrets_hidden(tmp_path):
    application = configured_app(tmp_path, REDIS_URL="redis://bus:pa55word@redis.internal:6379/2",
                                 MAX_TRACE_HOPS="7")
    _, admin = auth.create_key(application.extensions["bus"].db, "admin", "admin")
    answer = application.test_client().get("/api/v1/configuration", headers={"Authorization": f"Bearer {admin}"})
    body = answer.get_json()
    assert (body["edition"], body["broker"]) == ("community", "redis")
    shown = settings_by_name(answer)
    # each name is an environment variable Settings.from_env reads
    read_by_settings = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', Path("app/config.py").read_text()))
    assert set(shown) <= read_by_settings and {"MAX_TRACE_HOPS", "REDIS_URL", "DATABASE_URL"} <= set(shown)
    assert shown["MAX_TRACE_HOPS"] == {"name": "MAX_TRACE_HOPS", "value": 7, "default": 32, "changed": True,
                                       "secret": False}
    assert shown["PAIR_RATE_PER_MINUTE"]["changed"] is False
    assert shown["REDIS_URL"]["value"] == "redis://bus:********@redis.internal:6379/2"
    assert shown["ADMIN_API_KEY"] == {"name": "ADMIN_API_KEY", "value": "********", "default": None, "changed": True,
                                      "secret": True}
    assert shown["AUTH_JWT_SECRET"]["value"] == "********"
    text = answer.get_data(as_text=True)
    assert ADMIN_KEY not in text and JWT_SECRET not in text and "pa55word" not in text
    application.extensions["bus"].db.dispose()


def test_viewers_read_it_registrars_and_strangers_do_not(tmp_path):
    application = configured_app(tmp_path)
    ctx = application.extensions["bus"]
    _, viewer = auth.create_key(ctx.db, "viewer", "viewer")
    _, registrar = auth.create_key(ctx.db, "registrar", "registrar", workspace="team")
    http = application.test_client()
    assert settings_by_name(http.get("/api/v1/configuration", headers={"Authorization": f"Bearer {viewer}"}))
    refused = http.get("/api/v1/configuration", headers={"Authorization": f"Bearer {registrar}"})
    error = error_of(refused, 403)
    assert error["code"] == "forbidden" and error["details"] == {
        "permission": "configuration.read", "role": "registrar", "allowed_roles": ["admin", "operator", "viewer"]}
    assert error_of(http.get("/api/v1/configuration"), 401)["code"] == "unauthorized"
    ctx.db.dispose()
