"""Real servers for tests and benchmarks: redis-server, rabbitmq-server and the bus itself, started as processes
on free loopback ports."""

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
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Every bus the tests start has authentication on, with this admin key and token-signing secret.
TEST_ADMIN_KEY = "cbk_test-admin-key-0123456789abcdefghijklmnop"
TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ADMIN_HEADERS = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}


def bus_client(base_url: str, timeout: float = 10, token: str | None = TEST_ADMIN_KEY, headers: dict | None = None,
               **kwargs) -> httpx.Client:
    """An HTTP client for a bus, sending `token` (the tests' admin key by default) as a bearer token, and
    `headers`."""
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return httpx.Client(base_url=base_url, timeout=timeout, headers=headers, **kwargs)


def ws_connect(url: str, token: str | None = TEST_ADMIN_KEY, **kwargs):
    """A websockets (sync) connection to `url`, authenticated with `token` (the tests' admin key by default)."""
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(url, additional_headers=headers, **kwargs)


def authenticate_test_app(app) -> None:
    """Give an in-process app (create_app) the tests' admin key, and make its test clients send it."""
    from flask.testing import FlaskClient

    from app.services import auth

    auth.ensure_admin_key(app.extensions["bus"].db, TEST_ADMIN_KEY, Path("/nonexistent"))

    class AdminClient(FlaskClient):
        def open(self, *args, **kwargs):
            headers = kwargs.pop("headers", None) or {}
            pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
            if not any(name.lower() == "authorization" for name, _ in pairs):
                pairs.append(("Authorization", f"Bearer {TEST_ADMIN_KEY}"))
            return super().open(*args, headers=pairs, **kwargs)

    app.test_client_class = AdminClient


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))  # all bound at once, so the kernel hands out distinct ports
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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

    def __init__(self, appendonly: bool = False, extra_args: tuple[str, ...] = ()):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run `make test-deps` (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.port = free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args  # more redis-server options, e.g. ("--replicaof", "127.0.0.1", "6379")
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
             "--save", "", "--appendonly", "yes" if self.appendonly else "no", *self.extra_args],
            check=True,
        )
        wait_for(lambda: _port_open(self.port), 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Shut the server down and wait for it to exit (with appendonly, the append-only file is flushed first)."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        wait_for(lambda: not _port_open(self.port), 10, "redis-server to stop")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the server (a crash with SIGKILL) and wait until its port is closed; `start()` restarts it."""
        pidfile = self.dir / "redis.pid"
        try:
            os.kill(int(pidfile.read_text().strip()), sig)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return
        wait_for(lambda: not _port_open(self.port), 10, "redis-server to die")
        pidfile.unlink(missing_ok=True)  # a killed server leaves it behind

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitMQServer:
    """A rabbitmq-server node (Debian package) on free loopback ports, with its own epmd, in its own directory.

    The node is started by its real start script, `/usr/lib/rabbitmq/bin/rabbitmq-server` (the Debian wrapper in
    /usr/sbin switches user and writes to /var/log), with every path pointing into `dir`. Its epmd is started here
    as a foreground process on a free port, so `stop()` ends exactly the epmd it started. Starting takes a few
    seconds: start one per test session. `add_vhost()` gives each bus a virtual host of its own.
    """

    SBIN = Path("/usr/lib/rabbitmq/bin")
    STOP_TIMEOUT = 30

    def __init__(self):
        if not (self.SBIN / "rabbitmq-server").exists() or shutil.which("epmd") is None:
            raise RuntimeError("rabbitmq-server is not installed: "
                               "run `make test-deps` (apt-get install rabbitmq-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="rabbitmq-"))
        self.port, self.dist_port, self.epmd_port = free_ports(3)
        self.node = f"bus-test-{self.port}@localhost"
        self.env = {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie of the node and of rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),  # not /etc/rabbitmq/rabbitmq-env.conf
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self._epmd: subprocess.Popen | None = None
        self._server: subprocess.Popen | None = None
        try:
            self.start()
        except BaseException:
            self.cleanup()  # never leave a node or an epmd behind
            raise

    @property
    def url(self) -> str:
        """The amqp:// URL of the default virtual host `/`."""
        return self.vhost_url("/")

    def vhost_url(self, vhost: str) -> str:
        """The amqp:// URL of virtual host `vhost` (user guest, allowed from loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    def start(self) -> None:
        """Start epmd and the node (again, after `stop()`) and wait until the node accepts AMQP connections."""
        self._epmd = self._spawn("epmd", ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"])
        wait_for(lambda: self._exited(self._epmd, "epmd") or _port_open(self.epmd_port), 10,
                 f"epmd on port {self.epmd_port}")
        self._server = self._spawn("server", [str(self.SBIN / "rabbitmq-server")])
        wait_for(lambda: self._exited(self._server, "rabbitmq-server") or _port_open(self.port), 60,
                 f"rabbitmq-server on port {self.port}")
        # The port is open, so the node is registered with epmd: await_startup can now tell a booted node from
        # one that fails (e.g. someone else took the port in the meantime).
        self.ctl("await_startup", "--timeout", "60")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                    start_new_session=True)

    def _exited(self, proc: subprocess.Popen, what: str) -> bool:
        if proc.poll() is None:
            return False
        raise RuntimeError(f"{what} exited with {proc.returncode} at start:\n{self.logs()[-3000:]}")

    def ctl(self, *args: str) -> str:
        """Run `rabbitmqctl ARGS` against this node; return its output, raise on failure."""
        done = subprocess.run([str(self.SBIN / "rabbitmqctl"), "-n", self.node, *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def add_vhost(self, vhost: str) -> str:
        """Create virtual host `vhost`, give guest full rights on it, and return its URL."""
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.vhost_url(vhost)

    def delete_vhost(self, vhost: str) -> None:
        """Delete virtual host `vhost` with its exchanges and queues."""
        self.ctl("delete_vhost", vhost)

    def stop(self) -> None:
        """Stop the node (`rabbitmqctl stop`, SIGTERM/SIGKILL to its process group if it hangs), then its epmd."""
        try:
            if self._server is not None and self._server.poll() is None:
                try:
                    self.ctl("stop")
                    self._server.wait(self.STOP_TIMEOUT)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass  # the signals below end it
                end_process_group(self._server)
        finally:
            if self._epmd is not None:
                end_process_group(self._epmd)
            self._server = self._epmd = None

    def logs(self) -> str:
        """The node's and epmd's logs, for failure messages."""
        paths = sorted(self.dir.glob("*.log")) + sorted((self.dir / "log").glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in paths)

    def cleanup(self) -> None:
        """Stop the node and epmd and remove the directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def end_process_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """End `proc`, the leader of its own session, and its process group: SIGTERM, then SIGKILL after `grace` s.

    Signals go only while the leader still runs, so the process group id cannot be anyone else's.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _on_database(redis_url: str, database: int) -> str:
    """`redis_url` pointed at Redis database `database`; for a Sentinel URL (`sentinel://h:p/0;sentinel://…`),
    its first part carries the database."""
    first, *rest = redis_url.split(";")
    return ";".join([f"{first.rsplit('/', 1)[0] if first.count('/') > 2 else first}/{database}", *rest])


BROKER_KINDS = ("embedded", "redis", "rabbitmq", "nats")
"""The kinds of bus the behaviour suites run on (BusProcess modes), each on the session's server of its kind."""


def bus_on(request, kind: str, **kwargs) -> BusProcess:
    """A BusProcess of `kind` (one of BROKER_KINDS) on the session's server of that kind (the `redis_server`,
    `rabbitmq_server` or `nats_server` fixture, asked of pytest's `request`); `kwargs` go to BusProcess."""
    servers = {"redis": lambda: {"redis_url": request.getfixturevalue("redis_server").url},
               "rabbitmq": lambda: {"rabbitmq": request.getfixturevalue("rabbitmq_server")},
               "nats": lambda: {"nats_url": request.getfixturevalue("nats_server").url}}
    return BusProcess(kind, **(servers[kind]() if kind in servers else {}), **kwargs)


class BusProcess:
    """The bus started as real processes: `embedded` (collab-bus up), `redis`, `rabbitmq` or `nats` (collab-bus api +
    worker).

    `url` is the HTTP base URL; `ws_url` the WebSocket base. Logs are in `dir`. Buses sharing one broker never
    consume each other's tasks or notifications: each bus on Redis takes a Redis database number of its own, each
    bus on RabbitMQ a virtual host of its own (deleted by `cleanup()`), each bus on NATS a NATS_PREFIX of its own.
    With `worker=False` a broker bus starts
    with its API only: tasks wait on the broker until `start_worker()`; `stop_worker()` stops a worker again and
    `kill_worker()` kills one (SIGKILL by default). With `with_beat=True` a broker bus also runs `collab-bus beat`
    (the embedded bus always runs its beat).

    A broker bus may run several API processes ("nodes") on the same database and broker: the first is named
    `api` (on `port`); `start_api("api2")` starts another on a port of its own (`api_url(name)`,
    `api_ws_url(name)`); `stop_api()` / `restart_api()` stop or restart one on the same port.
    """

    _redis_databases = itertools.count(1)
    _redis_databases_in_use: set[int] = set()  # of buses not cleaned up yet: a session-scoped bus lives to the end

    def __init__(self, mode: str, redis_url: str | None = None, extra_env: dict | None = None,
                 plain_celery_worker: bool = False, rabbitmq: RabbitMQServer | None = None, worker: bool = True,
                 with_beat: bool = False, scheme: str = "http", port: int | None = None, nats_url: str | None = None):
        if mode not in ("embedded", "redis", "rabbitmq", "nats"):
            raise ValueError(f"unknown bus mode {mode!r}")
        if mode == "redis" and not redis_url:
            raise ValueError("redis mode needs redis_url")
        if mode == "rabbitmq" and rabbitmq is None:
            raise ValueError("rabbitmq mode needs rabbitmq (a RabbitMQServer)")
        if mode == "nats" and not nats_url:
            raise ValueError("nats mode needs nats_url (one server or several, comma-separated)")
        if mode == "embedded" and not worker:
            raise ValueError("the embedded bus always runs its worker")
        self.mode = mode
        self.scheme = scheme
        self.plain_celery_worker = plain_celery_worker
        self.with_worker = worker
        self.with_beat = with_beat
        self.rabbitmq = rabbitmq
        self.vhost: str | None = None
        self.redis_database: int | None = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"bus-{mode}-"))
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.dir),
            "LOG_LEVEL": os.environ.get("TEST_BUS_LOG_LEVEL", "INFO"),
            "PYTHONUNBUFFERED": "1",
            "ADMIN_API_KEY": TEST_ADMIN_KEY,
            "AUTH_JWT_SECRET": TEST_JWT_SECRET,
            "RATE_LIMIT_PER_SECOND": "100000",  # load and fault tests send far faster than one caller should
            "RATE_LIMIT_BURST": "100000",
            "PAIR_RATE_PER_MINUTE": "10000000",  # the runaway guard would stop load tests between two sandboxes
            **(extra_env or {}),
        }
        self.processes: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.apis: dict[str, subprocess.Popen] = {}
        self.api_ports: dict[str, int] = {"api": self.port}
        try:
            if mode == "redis":
                self.redis_database = database = self._claim_redis_database()
                self.env.update(MESSAGE_BACKEND="redis", REDIS_URL=_on_database(redis_url, database))
            elif mode == "rabbitmq":
                vhost_url = rabbitmq.add_vhost(f"bus-{self.port}")
                self.vhost = f"bus-{self.port}"
                self.env.update(MESSAGE_BACKEND="rabbitmq", RABBITMQ_URL=vhost_url)
            elif mode == "nats":  # streams, buckets and subjects of its own on a shared server
                self.env.update(MESSAGE_BACKEND="nats", NATS_URL=nats_url, NATS_PREFIX=f"bus{self.port}")
            else:
                self.env.update(MESSAGE_BACKEND="memory")
            self.start()
        except BaseException:
            self.cleanup()  # never leave half a bus running
            raise

    @classmethod
    def _claim_redis_database(cls) -> int:
        """A Redis database number (1-15, round robin) no running bus uses: two buses on one database would
        consume each other's tasks."""
        for _ in range(16):
            database = next(cls._redis_databases) % 16
            if database and database not in cls._redis_databases_in_use:
                cls._redis_databases_in_use.add(database)
                return database
        raise RuntimeError("every Redis database 1-15 is taken by a running bus")

    @property
    def url(self) -> str:
        """HTTP base URL of the API."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket base URL of the API."""
        return f"{'wss' if self.scheme == 'https' else 'ws'}://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """The database the bus writes: `DATABASE_URL` when given (e.g. PostgreSQL), else its SQLite file."""
        return self.env.get("DATABASE_URL") or f"sqlite:///{self.dir / 'collab-bus.db'}"

    def _spawn(self, name: str, *args: str, program: str = "collab-bus") -> subprocess.Popen:
        with open(self.dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([str(BIN / program), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=REPO, start_new_session=True)
        self.processes.append(proc)
        return proc

    def start(self) -> None:
        """Start the processes and wait until the API answers and (broker modes) the worker is ready."""
        self.processes = []
        self.workers = {}
        self.apis = {}
        if self.mode == "embedded":
            self._spawn("up", "up", "--port", str(self.port), "--data-dir", str(self.dir))
        else:
            self._spawn_api("api")
            if self.with_worker:
                self.start_worker()
            if self.with_beat:
                self._spawn("beat", "beat")
        wait_for(self._healthy, 30, f"the bus ({self.mode}) to answer on {self.url}")

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        """Start one more Celery worker process (broker modes) named `name` and wait until it is ready.

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
        self.workers[name] = proc
        return proc

    def stop_worker(self, name: str = "worker") -> None:
        """Stop worker `name` (warm shutdown: SIGTERM, SIGKILL after 10 s); its unacknowledged tasks go back."""
        proc = self.workers.pop(name)
        self._end(proc)
        self.processes.remove(proc)

    def kill_worker(self, name: str = "worker", sig: int = signal.SIGKILL) -> None:
        """Send `sig` to worker `name`'s process group (SIGKILL: `kill -9`, nothing is cleaned up) and wait for it
        to exit. On Redis its unacknowledged tasks come back only after the broker's visibility timeout."""
        proc = self.workers.pop(name)
        self._signal(proc, sig)
        self.processes.remove(proc)

    def api_url(self, name: str = "api") -> str:
        """HTTP base URL of API process `name`."""
        return f"http://127.0.0.1:{self.api_ports[name]}"

    def api_ws_url(self, name: str = "api") -> str:
        """WebSocket base URL of API process `name`."""
        return f"ws://127.0.0.1:{self.api_ports[name]}"

    def _spawn_api(self, name: str) -> subprocess.Popen:
        proc = self._spawn(name, "api", "--port", str(self.api_ports[name]), "--threads", "64")
        self.apis[name] = proc
        return proc

    def start_api(self, name: str, port: int | None = None) -> str:
        """Start API process `name` (broker modes) on `port` (default: the port it had, else a free one), sharing
        the database and broker of this bus; wait until it answers and return its URL."""
        if self.mode == "embedded":
            raise ValueError("the embedded bus has one process")
        if name in self.apis:
            raise ValueError(f"API process {name} is running")
        self.api_ports[name] = port or self.api_ports.get(name) or free_port()
        proc = self._spawn_api(name)
        url = self.api_url(name)

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"API process {name} exited with {proc.returncode}:\n"
                                   f"{(self.dir / f'{name}.log').read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 30, f"API process {name} to answer on {url}")
        return url

    def stop_api(self, name: str = "api", sig: int = signal.SIGTERM) -> None:
        """Send `sig` to API process `name`'s process group (SIGTERM: gunicorn's graceful stop; SIGKILL: a crash)
        and wait for it to exit; its port stays reserved for `start_api(name)`."""
        proc = self.apis.pop(name)
        self._signal(proc, sig)
        self.processes.remove(proc)

    def restart_api(self, name: str = "api", sig: int = signal.SIGTERM, down_for: float = 0.0) -> None:
        """Stop API process `name` with `sig`, wait `down_for` seconds, start it again on the same port."""
        self.stop_api(name, sig)
        time.sleep(down_for)
        self.start_api(name)

    def _signal(self, proc: subprocess.Popen, sig: int) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            self._end(proc)

    def _healthy(self) -> bool:
        for proc in self.processes:
            if proc.poll() is not None:
                logs = "\n".join(p.read_text()[-3000:] for p in self.dir.glob("*.log"))
                raise RuntimeError(f"a bus process exited with {proc.returncode}:\n{logs}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1, verify=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            self._end(proc)

    @staticmethod
    def _end(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def logs(self) -> str:
        """Every log file of this bus, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(self.dir.glob("*.log")))

    def cleanup(self) -> None:
        """Stop, delete the bus's RabbitMQ virtual host, and remove the data directory."""
        try:
            self.stop()
            if self.vhost is not None:
                self.rabbitmq.delete_vhost(self.vhost)
                self.vhost = None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.redis_database is not None:
                self._redis_databases_in_use.discard(self.redis_database)
                self.redis_database = None
