"""How the commands name the database they use, for people: a SQLite file's absolute URL, another database's URL
without its password."""

from __future__ import annotations

from app.config import ConfigError, Settings


def describe_database(configured: Settings) -> str:
    """The database as an operator can find it again: a SQLite file's absolute URL, another database's URL without
    its password."""
    path = configured.sqlite_path
    if path is not None:
        return f"sqlite:///{path.resolve()}"
    from sqlalchemy.engine import make_url

    return make_url(configured.database_url).render_as_string(hide_password=True)


def database_in_use() -> str:
    """`describe_database` of the environment's settings, or `DATABASE_URL` when they do not load."""
    try:
        return describe_database(Settings.from_env())
    except ConfigError:
        return "DATABASE_URL"
