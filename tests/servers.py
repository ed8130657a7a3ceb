"""Real servers for tests and benchmarks: redis-server and the bus itself, started as processes on free ports."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Call `predicate` until it returns a truthy value; raise TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server on a free loopback port in its own directory; `stop()` shuts it down."""

    def __init__(self, appendonly: bool = False):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run `make test-deps` (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.port = free_port()
        self.appendonly = appendonly
        self.start()

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, after `stop()`) and wait until it accepts connections."""
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--dir", str(self.dir), "--pidfile", str(self.dir / "redis.pid"), "--logfile", str(self.dir / "redis.log"),
             "--save", "", "--appendonly", "yes" if self.appendonly else "no"],
            check=True,
        )
        wait_for(lambda: _port_open(self.port), 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Shut the server down and wait for it to exit."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        wait_for(lambda: not _port_open(self.port), 10, "redis-server to stop")

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class BusProcess:
    """The bus started as real processes: `embedded` (collab-bus up) or `redis` (collab-bus api + worker).

    `url` is the HTTP base URL; `ws_url` the WebSocket base. Logs are in `dir`. Each bus on Redis takes a
    Redis database number of its own, so buses sharing one redis-server never consume each other's tasks.
    """

    _redis_databases = itertools.count(1)

    def __init__(self, mode: str, redis_url: str | None = None, extra_env: dict | None = None,
                 plain_celery_worker: bool = False):
        self.mode = mode
        self.plain_celery_worker = plain_celery_worker
        self.dir = Path(tempfile.mkdtemp(prefix=f"bus-{mode}-"))
        self.port = free_port()
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.dir),
            "LOG_LEVEL": os.environ.get("TEST_BUS_LOG_LEVEL", "INFO"),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        if mode == "redis":
            if not redis_url:
                raise ValueError("redis mode needs redis_url")
            database = next(self._redis_databases) % 16
            self.env.update(MESSAGE_BACKEND="redis", REDIS_URL=f"{redis_url.rsplit('/', 1)[0]}/{database}")
        else:
            self.env.update(MESSAGE_BACKEND="memory")
        self.processes: list[subprocess.Popen] = []
        try:
            self.start()
        except BaseException:
            self.stop()  # never leave half a bus running
            raise

    @property
    def url(self) -> str:
        """HTTP base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket base URL of the API."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """The SQLite database the bus writes."""
        return f"sqlite:///{self.dir / 'collab-bus.db'}"

    def _spawn(self, name: str, *args: str, program: str = "collab-bus") -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen([str(BIN / program), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)
        self.processes.append(proc)
        return proc

    def start(self) -> None:
        """Start the processes and wait until the API answers and (redis mode) the worker is ready."""
        self.processes = []
        if self.mode == "embedded":
            self._spawn("up", "up", "--port", str(self.port), "--data-dir", str(self.dir))
        else:
            self._spawn("api", "api", "--port", str(self.port), "--threads", "64")
            self.start_worker()
        wait_for(self._healthy, 30, f"the bus ({self.mode}) to answer on {self.url}")

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        """Start one more Celery worker process (redis mode) and wait until it is ready.

        It is `collab-bus worker`, or plain `celery -A workers.celery_app worker -Q delivery,maintenance`
        when the bus was made with `plain_celery_worker=True`.
        """
        log_path = self.dir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        hostname = f"{name}-{self.port}@%h"
        if self.plain_celery_worker:
            proc = self._spawn(name, "-A", "workers.celery_app", "worker", "-Q", "delivery,maintenance", "-l", "INFO",
                               "--hostname", hostname, program="celery")
        else:
            proc = self._spawn(name, "worker", "-c", "4", "--hostname", hostname)
        wait_for(lambda: b" ready" in log_path.read_bytes()[offset:] or proc.poll() is not None, 30,
                 f"celery worker {name} to be ready")
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited: {log_path.read_text()[-2000:]}")
        return proc

    def _healthy(self) -> bool:
        for proc in self.processes:
            if proc.poll() is not None:
                logs = "\n".join(p.read_text()[-3000:] for p in self.dir.glob("*.log"))
                raise RuntimeError(f"a bus process exited with {proc.returncode}:\n{logs}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def logs(self) -> str:
        """Every log file of this bus, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(self.dir.glob("*.log")))

    def cleanup(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
