"""Redis with Sentinel, for tests: a master, a replica and three sentinels on loopback (environment-notes.md), each
sentinel from its own config file in a temporary directory (sentinels rewrite it).

The sentinels decide a master is down after DOWN_AFTER_MS and need two of three to agree; `kill_master()` crashes the
current master and waits until they name the replica, `restart()` brings a crashed server back (a former master
comes back as a master, and the sentinels demote it to a replica of the new one).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.servers import RedisServer, _port_open, free_port, wait_for

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 2000
QUORUM = 2


class SentinelCluster:
    """Two Redis servers (master, replica) watched by three sentinels; `url` is the bus's sentinel:// REDIS_URL."""

    def __init__(self, sentinels: int = 3):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run `make test-deps` (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="sentinel-"))
        self.servers: list[RedisServer] = []
        self.sentinel_ports: list[int] = []
        self._sentinel_pids: list[Path] = []
        first = RedisServer(appendonly=True)
        self.servers.append(first)
        self.servers.append(RedisServer(appendonly=True, extra_args=("--replicaof", "127.0.0.1", str(first.port))))
        self._wait_replicating(self.servers[1])
        for index in range(sentinels):
            self._start_sentinel(index, first.port)
        wait_for(lambda: self._sentinels_know_replica(), 20, "the sentinels to see the replica")

    @property
    def url(self) -> str:
        """`sentinel://127.0.0.1:S1/0;sentinel://127.0.0.1:S2;…`, as Celery and the bus take it."""
        first, *rest = self.sentinel_ports
        return ";".join([f"sentinel://127.0.0.1:{first}/0", *(f"sentinel://127.0.0.1:{port}" for port in rest)])

    @property
    def environment(self) -> dict[str, str]:
        """What a bus process needs to reach Redis through the sentinels."""
        return {"MESSAGE_BACKEND": "redis", "REDIS_URL": self.url, "REDIS_SENTINEL_MASTER": MASTER_NAME}

    def master_port(self) -> int:
        """The port of the master the sentinels name now (asks each sentinel until one answers)."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(port=port, socket_timeout=1)
                return int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no sentinel answered")

    def server_on(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def kill_master(self) -> tuple[RedisServer, float]:
        """SIGKILL the current master; wait until the sentinels name the other server. Returns the killed server
        and the seconds the sentinels took."""
        old = self.server_on(self.master_port())
        killed_at = time.monotonic()
        old.kill(signal.SIGKILL)
        wait_for(lambda: self.master_port() != old.port, 30, "the sentinels to elect a new master")
        return old, time.monotonic() - killed_at

    def failover(self) -> tuple[int, float]:
        """A manual failover (`SENTINEL FAILOVER`: the replica is promoted, nothing crashes); waits until the
        sentinels name the other server. Returns the new master's port and the seconds it took. The former master
        goes on as a master until the sentinels convert it (`wait_demoted`)."""
        old = self.master_port()
        started = time.monotonic()
        wait_for(self._start_failover, 30, "a sentinel to start the manual failover")
        try:
            wait_for(lambda: self.master_port() != old, 30, "the manual failover")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; the sentinels' logs:\n{self.logs()[-6000:]}") from None
        return self.master_port(), time.monotonic() - started

    def wait_demoted(self, port: int) -> float:
        """Wait until the former master on `port` is a replica again (after a manual failover the sentinels convert
        it about 10 s later; until then it is a second master); the seconds waited."""
        started = time.monotonic()
        wait_for(lambda: self._role(port)[0] == "slave", 30, f"redis :{port} to be converted to a replica")
        return time.monotonic() - started

    def restart(self, server: RedisServer) -> None:
        """Start a crashed server again; once the sentinels have made it a replica of the current master, return."""
        server.start()
        master = self.master_port()
        if master != server.port:
            wait_for(lambda: self._role(server.port) == ("slave", master), 30,
                     f"redis :{server.port} to become a replica of :{master}")
            self._wait_replicating(server)
            wait_for(lambda: self._sentinels_see_good_replica(server.port), 30,
                     f"every sentinel to see redis :{server.port} as a replica fit to promote")

    def role(self, server: RedisServer) -> str:
        return self._role(server.port)[0]

    def stop(self) -> None:
        """Stop the sentinels and the servers; remove their directories."""
        for pidfile in self._sentinel_pids:
            try:
                pid = int(pidfile.read_text().strip())
                subprocess.run(["kill", str(pid)], capture_output=True)
            except (FileNotFoundError, ValueError):
                pass
        for port in self.sentinel_ports:
            wait_for(lambda port=port: not _port_open(port), 10, f"sentinel :{port} to stop")
        for server in self.servers:  # SIGKILL: a Redis 7 master's SHUTDOWN waits up to 10 s for a lagging replica
            server.kill(signal.SIGKILL)
            shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _start_sentinel(self, index: int, master_port: int) -> None:
        port = free_port()
        directory = self.dir / f"sentinel-{index}"
        directory.mkdir()
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
        pidfile = directory / "sentinel.pid"
        subprocess.run(["redis-server", str(config), "--sentinel", "--daemonize", "yes", "--pidfile", str(pidfile),
                        "--logfile", str(directory / "sentinel.log")], check=True)
        wait_for(lambda: _port_open(port), 10, f"sentinel on port {port}")
        self.sentinel_ports.append(port)
        self._sentinel_pids.append(pidfile)

    def _sentinels_know_replica(self) -> bool:
        for port in self.sentinel_ports:
            try:
                if not redis.Redis(port=port, socket_timeout=1).sentinel_slaves(MASTER_NAME):
                    return False
            except redis.RedisError:
                return False
        return True

    def _start_failover(self) -> bool:
        """Ask the first sentinel for a manual failover; False while it finds no replica fit to promote yet (a
        replica just restarted is not one until the sentinel has refreshed what it knows of it)."""
        try:
            redis.Redis(port=self.sentinel_ports[0], socket_timeout=2).execute_command("SENTINEL", "FAILOVER",
                                                                                      MASTER_NAME)
            return True
        except redis.ResponseError as exc:
            if "NOGOODSLAVE" in str(exc):
                time.sleep(0.5)
                return False
            raise

    def _sentinels_see_good_replica(self, port: int) -> bool:
        """Every sentinel lists the replica on `port` as up, linked to its master (a failover promotes no other)."""
        for sentinel_port in self.sentinel_ports:
            try:
                replicas = redis.Redis(port=sentinel_port, socket_timeout=1).sentinel_slaves(MASTER_NAME)
            except redis.RedisError:
                return False
            fit = [r for r in replicas if int(r["port"]) == port and r.get("master-link-status") == "ok"
                   and not (r["is_sdown"] or r["is_odown"] or r["is_disconnected"])]
            if not fit:
                return False
        return True

    def _role(self, port: int) -> tuple[str, int | None]:
        try:
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
        except redis.RedisError:
            return ("down", None)
        return (info["role"], info.get("master_port"))

    def _wait_replicating(self, server: RedisServer) -> None:
        def linked() -> bool:
            try:
                return redis.Redis(port=server.port, socket_timeout=1).info("replication").get(
                    "master_link_status") == "up"
            except redis.RedisError:
                return False

        wait_for(linked, 20, f"redis :{server.port} to replicate its master")

    def logs(self) -> str:
        """Every sentinel's log, for a failure report."""
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.dir.glob("sentinel-*/sentinel.log")))
