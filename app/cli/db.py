"""`collab-bus db`: the database schema's migrations (Alembic), and with a Redis broker the one-off upgrade of the
key layout earlier versions left in Redis."""

from __future__ import annotations

import click

from app.cli.database_name import describe_database
from app.cli.process import require_database
from app.cli.process import settings as _settings


@click.group()
def db() -> None:
    """Database schema migrations (Alembic) on DATABASE_URL (default: DATA_DIR/collab-bus.db)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head), creating it when it does not exist yet.

    With MESSAGE_BACKEND=redis, also bring the keys an earlier bus left in Redis (the ':' separator) to the
    current layout: tasks still queued under the former names are moved, in order. Run it once per upgrade,
    before starting the new version's API nodes and workers.
    """
    from app.migrate import upgrade

    configured = _settings()
    upgrade(configured, revision)
    click.echo(f"database {describe_database(configured)} at {revision}")
    upgraded = configured.broker.upgrade()  # Redis: the key layout of earlier versions
    if upgraded:
        click.echo(upgraded)


@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (`base` drops every table)."""
    from app.migrate import downgrade

    configured = _settings()
    require_database(configured)
    downgrade(configured, revision)
    click.echo(f"database {describe_database(configured)} at {revision}")


@db.command("current")
def db_current() -> None:
    """Show the database's current revision."""
    from app.migrate import current

    configured = _settings()
    require_database(configured)
    current(configured)
