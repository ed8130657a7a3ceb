"""Schema migrations through Alembic, callable from the CLI and from tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import Settings
from app.db import create_private_sqlite_file

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    """An Alembic Config for the migrations shipped with the bus and the database of `settings`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def prepare_storage(settings: Settings) -> None:
    """When the database is a local SQLite file: create its directory, and the file readable by its owner only."""
    path = settings.sqlite_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private_sqlite_file(path)


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate the database up to `revision` (default: the newest)."""
    prepare_storage(settings)
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Migrate the database down to `revision` (`base` removes every table)."""
    prepare_storage(settings)
    command.downgrade(alembic_config(settings), revision)


def current(settings: Settings) -> None:
    """Print the database's current revision."""
    prepare_storage(settings)
    command.current(alembic_config(settings), verbose=False)
