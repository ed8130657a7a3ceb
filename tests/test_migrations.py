"""The Alembic migration chain on SQLite and on PostgreSQL: walked one revision at a time up, down and up again,
ending in the schema the models describe; and the `collab-bus db` commands on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from app.config import Settings
from app.migrate import alembic_config, downgrade, upgrade
from app.models import metadata
from tests.postgres import postgres_settings
from tests.servers import TEST_JWT_SECRET

CLI = str(Path(sys.executable).parent / "collab-bus")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path):
    """Settings for an empty database: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield Settings.from_env({"DATA_DIR": str(tmp_path)})
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield postgres_settings(url, DATA_DIR=str(tmp_path))
    server.drop_database(url)


def chain(settings: Settings) -> list[str]:
    """The revisions from the first to head, in order."""
    script = ScriptDirectory.from_config(alembic_config(settings))
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def state(settings: Settings) -> tuple[str | None, set[str]]:
    """The database's current revision and its tables (alembic_version left out)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
        return revision, tables
    finally:
        engine.dispose()


def schema_differences(settings: Settings) -> list:
    """What autogenerate would change to make the database match the models (nothing, at head)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_chain_walks_up_down_and_up_one_revision_at_a_time(settings):
    revisions = chain(settings)
    assert len(revisions) >= 5 and revisions[0] == "0001"
    assert state(settings) == (None, set())

    seen_tables: list[set[str]] = []
    for revision in revisions:
        upgrade(settings, revision)
        current, tables = state(settings)
        assert current == revision
        assert not seen_tables or seen_tables[-1] <= tables  # no revision drops a table on the way up
        seen_tables.append(tables)
    assert {"sandboxes", "messages", "mailbox_entries", "dead_letters", "idempotency_keys", "api_keys",
            "audit_events", "policies"} <= seen_tables[-1]
    assert schema_differences(settings) == []

    for index in range(len(revisions) - 1, -1, -1):
        downgrade(settings, "-1")
        current, tables = state(settings)
        expected = revisions[index - 1] if index > 0 else None
        assert current == expected
        assert tables == (seen_tables[index - 1] if index > 0 else set())  # each downgrade undoes its upgrade

    for revision in revisions:
        upgrade(settings, revision)
        assert state(settings)[0] == revision
    assert state(settings) == (revisions[-1], seen_tables[-1])
    assert schema_differences(settings) == []


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_db_commands_on_postgresql(postgres_server, tmp_path):
    url = postgres_server.create_database()
    env = {"DATABASE_URL": url, "AUTH_JWT_SECRET": TEST_JWT_SECRET, "DATA_DIR": str(tmp_path)}
    settings = postgres_settings(url)
    try:
        head = chain(settings)[-1]
        current = run_cli("db", "current", env=env)
        assert current.returncode == 0 and head not in current.stdout, current.stdout + current.stderr

        done = run_cli("db", "upgrade", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        current = run_cli("db", "current", env=env)
        assert current.returncode == 0 and f"{head} (head)" in current.stdout, current.stdout + current.stderr
        assert state(settings)[0] == head and schema_differences(settings) == []

        previous = chain(settings)[-2]
        done = run_cli("db", "downgrade", previous, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        current = run_cli("db", "current", env=env)
        assert previous in current.stdout and "(head)" not in current.stdout, current.stdout + current.stderr

        done = run_cli("db", "downgrade", "base", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert state(settings) == (None, set())
        assert not (tmp_path / "collab-bus.db").exists()  # the PostgreSQL database was used, not a SQLite file
    finally:
        postgres_server.drop_database(url)
