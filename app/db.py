"""Database access: one engine per process, short transactions through `Database.write()` / `read()`. A SQLite
database file the bus creates is readable by its owner only (it holds every message and the API keys' hashes)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


class Database:
    """A connection pool to DATABASE_URL and the sessions that use it.

    `write()` yields a session whose transaction holds the database's write lock from its
    first statement on SQLite (BEGIN IMMEDIATE), so concurrent writers queue instead of failing;
    it commits on success and rolls back on error. `read()` yields a session that is never committed.

    On SQLite, writers of one process queue on a Python lock (handed over as soon as it is free), and
    the one at the head polls the database's write lock every 0.1-2 ms: SQLite's own busy handler
    sleeps in steps of up to 100 ms, which costs throughput and tail latency when processes contend.
    """

    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            path = sqlite_file(url)
            if path is not None and path.parent.is_dir():  # a missing directory stays an unreachable database
                create_private_sqlite_file(path)
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE"),
                                   expire_on_commit=False)
        self._writer_lock = threading.Lock() if self.is_sqlite else nullcontext()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session for one transaction that changes data; committed when the block ends without error."""
        with self._writer_lock, self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; its transaction is rolled back at the end."""
        with self._read() as session:
            yield session

    def scalar(self, query: str):
        """What plain SQL `query` (no parameters) returns in the first column of its first row; None when it returns
        no row. One statement on a pooled connection, without the ORM and Core (for the queries every request
        runs); a database error is raised as SQLAlchemy's DBAPIError, as a session would raise it (an unreachable
        database is a 503)."""
        dbapi = self.engine.dialect.loaded_dbapi
        try:
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(query)
                row = cursor.fetchone()
                cursor.close()
                return None if row is None else row[0]
            finally:
                connection.close()  # back to the pool, which rolls back what the query began
        except dbapi.Error as exc:
            raise DBAPIError.instance(query, None, exc, dbapi.Error) from exc

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        """Close every pooled connection (after fork, at shutdown)."""
        self.engine.dispose()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases, in-memory SQLite and `file:` URIs."""
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_private_sqlite_file(path: Path) -> None:
    """Create the SQLite database file `path` (in an existing directory), empty and readable by its owner only
    (0600), unless it exists; SQLite gives the -wal and -shm files it makes next to it the same mode. An existing
    file that others may read is left as it is, with a warning."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("the database %s has mode %o: others may read every message and the API keys' hashes; "
                        "`chmod 600` it (and its -wal and -shm files)", path, mode)


def _configure_sqlite(engine: Engine) -> None:
    """WAL mode, a busy timeout and explicit BEGINs, so pysqlite's implicit transactions stay out of the way."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        statement = conn.get_execution_options().get("sqlite_begin", "BEGIN")
        if statement == "BEGIN":
            conn.exec_driver_sql(statement)
        else:
            _begin_when_unlocked(conn.connection.driver_connection, statement)


SQLITE_LOCK_WAIT = 30.0  # seconds a writer waits for the database's write lock before failing


def _begin_when_unlocked(raw: sqlite3.Connection, statement: str) -> None:
    """Run `statement` (BEGIN IMMEDIATE), retrying at short intervals while another writer holds the lock."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT
    delay = 0.0001
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                raw.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    finally:
        raw.execute("PRAGMA busy_timeout=30000")
