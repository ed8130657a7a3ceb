"""The bus's configuration as operators may read it: every setting under its environment variable, with secrets
hidden, next to its default."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from app.config import Settings

SECRET_SETTINGS = frozenset({"auth_jwt_secret", "admin_api_key"})
HIDDEN = "********"
# the settings whose environment variable is not their name in capitals
_ENV_NAMES = {"broker_url_override": "BROKER_URL", "metrics_multiproc_dir": "PROMETHEUS_MULTIPROC_DIR"}


def env_name(setting: str) -> str:
    """The environment variable that sets `setting` (a Settings field)."""
    return _ENV_NAMES.get(setting, setting.upper())


def describe(settings: Settings) -> list[dict]:
    """Each setting, by environment variable: its value and default as JSON values (secrets shown only as set or
    not, passwords in URLs hidden), whether it differs from the default, and whether it is a secret."""
    defaults = Settings.from_env({})
    described = []
    for field in fields(Settings):
        value, default = getattr(settings, field.name), getattr(defaults, field.name)
        secret = field.name in SECRET_SETTINGS
        described.append({"name": env_name(field.name), "value": _shown(value, secret),
                          "default": _shown(default, secret), "changed": value != default, "secret": secret})
    return sorted(described, key=lambda item: item["name"])


def _shown(value, secret: bool):
    if value is None:
        return None
    if secret:
        return HIDDEN
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return _without_password(value)
    return value


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:{HIDDEN}"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
