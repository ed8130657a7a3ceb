"""The bus's configuration as operators may read it: every setting under its environment variable, with secrets
hidden, next to its default."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from app.config import Settings
from app.config_fields import env_names, secret_names

SECRET_SETTINGS = secret_names(Settings)
HIDDEN = "********"
_ENV_NAME_OF = env_names(Settings)


def env_name(setting: str) -> str:
    """The environment variable that sets `setting` (a Settings field), as its declaration in app.config names it."""
    return _ENV_NAME_OF[setting]


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
