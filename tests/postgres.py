"""A real PostgreSQL server for tests: `initdb` + `pg_ctl` into a temporary directory, on a free loopback port."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers import TEST_JWT_SECRET, _port_open, free_port, wait_for

UNPRIVILEGED_USER = "nobody"  # initdb and postgres refuse to run as root


def find_postgres_bin(name: str) -> str | None:
    """The path of PostgreSQL program `name`: on PATH, else under /usr/lib/postgresql/<newest>/bin (Debian)."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple:
        part = Path(path).parent.parent.name
        return tuple(int(p) if p.isdigit() else 0 for p in part.split("."))

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version, reverse=True)
    return candidates[0] if candidates else None


def postgres_settings(url: str, **env: str):
    """Settings for a PostgreSQL DATABASE_URL (with authentication on, it needs the shared token-signing secret)."""
    from app.config import Settings

    return Settings.from_env({"DATABASE_URL": url, "AUTH_JWT_SECRET": TEST_JWT_SECRET, **env})


class PostgresServer:
    """A PostgreSQL cluster in its own directory on a free loopback port, superuser `postgres`, trust authentication.

    As root, the cluster belongs to `nobody` (initdb and postgres refuse root): the directory is chowned to it and
    every server command runs through `runuser -u nobody --`. Durability is switched off (fsync, synchronous_commit):
    the data is thrown away at the end. `create_database()` gives each bus or test a database of its own.
    """

    _names = itertools.count(1)

    def __init__(self):
        self.initdb = find_postgres_bin("initdb")
        self.pg_ctl = find_postgres_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise RuntimeError("PostgreSQL is not installed: run `make test-deps` (apt-get install postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        try:
            if self.as_root:
                shutil.chown(self.dir, user=UNPRIVILEGED_USER)
            self._run([self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                       "-E", "UTF8", "--locale=C"])
            self.start()
        except BaseException:
            self.cleanup()
            raise

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        if self.as_root:
            argv = ["runuser", "-u", UNPRIVILEGED_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}\n{self.logs()}")
        return done

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the `postgres` database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """The SQLAlchemy (psycopg 3) URL of database `name`."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        """Start the server (again, after `stop()`) and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400 "
                   "-c shared_buffers=32MB")
        self._run([self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "postgres.log"),
                   "-w", "-t", "60", "start"])
        wait_for(lambda: _port_open(self.port), 10, f"postgres on port {self.port}")

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a new database (a fresh name unless `name` is given), empty or a copy of database `template`
        (which nobody may be connected to), and return its URL."""
        name = name or f"bus_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.database_url(name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database made by `create_database()` (its URL or its name), closing its remaining connections."""
        name = url_or_name.rsplit("/", 1)[-1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait for it to exit."""
        if (self.data / "postmaster.pid").exists():
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])

    def logs(self) -> str:
        """The server's log, for failure messages."""
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
