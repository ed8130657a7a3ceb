"""What the commands that run the bus or open its database share: Settings from the environment (with their
options written back), logging, the migrated database, and one-line reports of configuration and database errors."""

from __future__ import annotations

import logging
import os
import sys

import click
from sqlalchemy.exc import DBAPIError

from app.config import ConfigError, Settings


class BusGroup(click.Group):
    """A click group that reports configuration errors as one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"collab-bus: configuration error: {exc}", err=True)
            sys.exit(2)
        except DBAPIError as exc:
            click.echo(f"collab-bus: database error: {str(exc.orig).splitlines()[0]} ({_safe_url(exc)})", err=True)
            sys.exit(1)
        except OSError as exc:  # e.g. a DATA_DIR that cannot be created, a port taken
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"collab-bus: error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)


def _safe_url(exc: DBAPIError) -> str:
    """The failing database URL without its password, for error messages."""
    try:
        return Settings.from_env().database_url.split("@")[-1]
    except ConfigError:
        return "DATABASE_URL"


def settings(**overrides) -> Settings:
    """Settings from the environment, with CLI options written back so every component agrees."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    found = Settings.from_env()
    from app.logs import configure

    configure(found.log_level, found.log_format)
    if found.log_level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return found


class database:  # noqa: N801 - used as `with database() as db:`
    """The configured database, migrated, as a context manager (for the management commands)."""

    def __enter__(self):
        from app.db import Database
        from app.migrate import upgrade

        configured = settings()
        upgrade(configured)
        self.database = Database(configured.database_url)
        return self.database

    def __exit__(self, *exc_info) -> None:
        self.database.dispose()
