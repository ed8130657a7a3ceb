"""What the commands that run the bus or open its database share: Settings from the environment and their options,
logging, which database they mean, and the existing, migrated database of the management commands (which never
create one: only `db upgrade`, `up` and `api` do)."""

from __future__ import annotations

import contextlib
import logging
import os

from app.cli.database_name import describe_database, read_by_command
from app.cli.errors import EXIT_USAGE, Failure
from app.config import Settings


def settings(**options) -> Settings:
    """Settings from the environment, with the command's `options` (named by their variable: PORT=..., None when
    not given) in place of those variables; logging configured from them.

    The options are read as their variables are (the same checks and one-line messages, and what follows from
    them: DATABASE_URL's default from DATA_DIR), and go no further than the Settings returned: the environment is
    left as it was. The command hands those Settings to whatever it starts (app.server's gunicorn loader, the
    Celery app of workers.bootstrap, the embedded bus)."""
    given = {name: str(value) for name, value in options.items() if value is not None}
    found = Settings.from_env({**os.environ, **given})
    from app.logs import configure

    configure(found.log_level, found.log_format)
    if found.log_level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return read_by_command(found)


def require_database(configured: Settings) -> None:
    """Refuse (one line, exit status 2) a SQLite database file that does not exist, naming the file and how to
    point at the bus's: a command run without the bus's DATA_DIR must not write to a new database nobody reads."""
    path = configured.sqlite_path
    if path is None or path.exists():
        return
    if os.environ.get("DATABASE_URL"):
        origin = "DATABASE_URL"
    elif os.environ.get("DATA_DIR"):
        origin = f"DATA_DIR={os.environ['DATA_DIR']}"
    else:
        origin = "DATA_DIR unset: ./data"
    raise Failure(f"no database at {path.resolve()} ({origin}); point at the bus's with DATA_DIR=<its data "
                  "directory> or DATABASE_URL=<its database> (`collab-bus db upgrade` creates a new one)", EXIT_USAGE)


@contextlib.contextmanager
def database():
    """The configured database, which must exist (`require_database`), migrated: yields (Database, its
    description for messages)."""
    from app.db import Database
    from app.migrate import upgrade

    configured = settings()
    require_database(configured)
    upgrade(configured)
    opened = Database(configured.database_url)
    try:
        yield opened, describe_database(configured)
    finally:
        opened.dispose()
