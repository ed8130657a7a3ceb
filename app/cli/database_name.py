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


_command_settings: Settings | None = None  # the Settings the running command read (its options included)


def read_by_command(configured: Settings) -> Settings:
    """Note `configured` as the Settings the running command works on (app.cli.process.settings does), so that
    `database_in_use` names their database, options included; return them."""
    global _command_settings
    _command_settings = configured
    return configured


def database_in_use() -> str:
    """`describe_database` of the Settings the running command read, else of the environment's, or `DATABASE_URL`
    when they do not load."""
    try:
        return describe_database(_command_settings or Settings.from_env())
    except ConfigError:
        return "DATABASE_URL"
