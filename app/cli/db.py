"""`collab-bus db`: the database schema's migrations (Alembic)."""

from __future__ import annotations

import click

from app.cli.process import settings as _settings


@click.group()
def db() -> None:
    """Database schema migrations (Alembic) on DATABASE_URL."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from app.migrate import upgrade

    upgrade(_settings(), revision)
    click.echo(f"database at {revision}")


@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (`base` drops every table)."""
    from app.migrate import downgrade

    downgrade(_settings(), revision)
    click.echo(f"database at {revision}")


@db.command("current")
def db_current() -> None:
    """Show the database's current revision."""
    from app.migrate import current

    current(_settings())

