"""Failover under SDK traffic, in the spirit of Jepsen's RabbitMQ harness: shared by tests/test_balancer.py and
bench/failover.py.

A `Cluster` is the bus behind the balancer it ships: Debian's HAProxy running `docker/haproxy.cfg` (tests/balancer.py)
in front of two `collab-bus api` nodes on one PostgreSQL database and one broker (BROKERS: a Redis, Redis behind
Sentinel, or a 3-server NATS JetStream cluster), with two workers and beat. A
`Fault` is a name and a coroutine `inject(cluster, traffic) -> notes`, run once a quarter of the traffic was
accepted; the faults themselves are in tests/failover_faults.py. `run_fault` drives SDK agents through the balancer
(tests/failover_traffic.py's `Traffic`: one receiver, a few senders of notifications with idempotency keys and
`collaborate_with` requests),
injects the fault, waits until every send was handled and gives a `Result`: sent, handled, lost, handled twice,
recovered (needed more than one attempt, handled exactly once), answered, the longest stall between two handled
messages and how long it took. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.balancer import HAProxy
from tests.failover_traffic import Load, Traffic
from tests.nats_server import NatsCluster
from tests.sentinel import SentinelCluster
from tests.servers import BusProcess, RedisServer

NODES = {"api-1": "api", "api-2": "api2"}  # the shipped file's server name -> the BusProcess's API process
WORKERS = ("worker", "worker2")
VISIBILITY_TIMEOUT = 5  # s: the broker gives a killed worker's unacknowledged tasks to another one after this
# (REDIS_VISIBILITY_TIMEOUT, NATS_ACK_WAIT: 3600 s by default); small here so a worker kill resolves within the run
CLUSTER_ENV = {
    "TRUSTED_PROXIES": "1",  # as the shipped haproxy.cfg says
    "OUTBOX_SWEEP_AFTER": "2", "OUTBOX_SWEEP_INTERVAL": "1",  # a send committed by a node (or a task lost with a
    # worker or the broker) before it was enqueued is enqueued by beat's outbox sweep 2 s later
}
EVENTUALLY = 60  # s to wait, after the senders are done, for every send to be handled


@dataclass(frozen=True)
class BrokerKind:
    """A kind of broker server a Cluster runs on: the class of its server object (started with no arguments; it
    has `cleanup()` or `stop()`), the BusProcess mode, the BusProcess arguments naming the server
    (`connect(server)`), the settings every bus process gets on it, and what makes the server whole again after a
    fault (`restore(server)`, Cluster.restore calls it; none: the fault does it itself)."""

    server: type
    mode: str
    connect: Callable[[Any], dict[str, str]]
    settings: dict[str, str] = field(default_factory=dict)
    restore: Callable[[Any], None] | None = None


def _start_stopped(cluster: NatsCluster) -> None:
    """Start every server of the NATS cluster a fault left down (one that failed before starting it again)."""
    for server in cluster.servers:
        if server.process is None or server.process.poll() is not None:
            server.start()


BROKERS = {
    "redis": BrokerKind(RedisServer, "redis", lambda server: {"redis_url": server.url},
                        {"REDIS_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}),
    # tests/sentinel.py: a master, a replica, three sentinels; every process reaches Redis through sentinel://
    "sentinel": BrokerKind(SentinelCluster, "redis", lambda server: {"redis_url": server.url},
                           {"REDIS_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}),
    # tests/nats_server.py: three JetStream servers (`sync_interval: always`); every stream of the bus R3
    "nats": BrokerKind(NatsCluster, "nats", lambda server: {"nats_url": ",".join(server.urls)},
                       {"NATS_REPLICAS": "3", "NATS_ACK_WAIT": str(VISIBILITY_TIMEOUT)}, _start_stopped),
}


def broker_kind(server) -> str:
    """The name of the BROKERS entry whose server class `server` is."""
    return next(name for name, kind in BROKERS.items() if isinstance(server, kind.server))


class Cluster:
    """HAProxy in front of API nodes `api` and `api2` on one PostgreSQL database (from `postgres`, a
    tests/postgres.py PostgresServer) and one broker server, with workers `worker` and `worker2` and beat. The broker
    is `broker`, a server object of one of the BROKERS kinds (its kind found by its class; `environment`, when it
    has one, adds settings, e.g. SentinelCluster's REDIS_SENTINEL_MASTER), or else a new server of kind `kind`
    (default redis). A fault reaches it as `cluster.broker` (also `cluster.redis`), its kind as `cluster.kind`."""

    def __init__(self, postgres, broker=None, extra_env: dict | None = None, kind: str | None = None):
        self.postgres = postgres
        self.kind = kind or (broker_kind(broker) if broker is not None else "redis")
        spec = BROKERS[self.kind]
        self.broker = broker if broker is not None else spec.server()
        self.database = postgres.create_database()
        self.bus: BusProcess | None = None
        self.haproxy: HAProxy | None = None
        try:
            env = {**getattr(self.broker, "environment", {}), "DATABASE_URL": self.database, **CLUSTER_ENV,
                   **spec.settings, **(extra_env or {})}
            self.bus = BusProcess(spec.mode, **spec.connect(self.broker), with_beat=True, extra_env=env)
            for worker in WORKERS[1:]:
                self.bus.start_worker(worker)
            self.bus.start_api("api2")
            self.haproxy = HAProxy({server: self.bus.api_ports[node] for server, node in NODES.items()})
            for server in NODES:
                self.haproxy.wait_status(server, "UP")
        except BaseException:
            self.cleanup()
            raise

    @property
    def redis(self):
        """The broker server (the name the Redis faults knew it by)."""
        return self.broker

    @property
    def url(self) -> str:
        """The balancer's URL: the only one the agents use."""
        return self.haproxy.url

    @staticmethod
    def server(node: str) -> str:
        """HAProxy's name for API process `node`."""
        return next(server for server, name in NODES.items() if name == node)

    def restore(self) -> None:
        """Every API node running and UP in HAProxy and every worker running, for what runs next; the broker's
        servers as its kind restores them."""
        if restore := BROKERS[self.kind].restore:
            restore(self.broker)
        for worker in WORKERS:
            if worker not in self.bus.workers:
                self.bus.start_worker(worker)
        for server, node in NODES.items():
            if node not in self.bus.apis:
                self.bus.start_api(node)
            self.haproxy.wait_status(server, "UP")

    def cleanup(self) -> None:
        try:
            if self.haproxy is not None:
                self.haproxy.cleanup()
            if self.bus is not None:
                self.bus.cleanup()
        finally:
            (getattr(self.broker, "cleanup", None) or self.broker.stop)()
            self.postgres.drop_database(self.database)


def metric(url: str, name: str) -> float:
    """The sum of metric `name`'s samples in a node's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if re.match(rf"{re.escape(name)}(\{{|\s)", line))


def per_node(bus: BusProcess, name: str) -> dict[str, float]:
    """Metric `name` on each running API node."""
    return {node: metric(bus.api_url(node), name) for node in NODES.values() if node in bus.apis}

@dataclass
class Result:
    """What one run under a fault came to: `counts()`, `lines()` to print, `assert_exactly_once()`; `watch` is
    what HAProxy saw during the run."""

    fault: str
    traffic: Traffic
    took: float
    notes: list[str]
    watch: BalancerWatch

    def counts(self) -> dict[str, int | float]:
        """sent (notifications + requests), handled, lost, twice, recovered, answered, asked, stall (s), took (s)."""
        t, tally = self.traffic, self.traffic.tally
        return {"sent": len(tally.sent) + len(tally.asked), "handled": len(t.receiver.handled),
                "lost": len(t.lost()), "twice": len(t.twice()), "recovered": len(t.recovered()),
                "answered": len(tally.answered), "asked": len(tally.asked), "stall": t.longest_stall(),
                "took": self.took}

    def lines(self) -> list[str]:
        """The counts, the reconnects, the notes and the first failures, each line tagged with the fault."""
        c, t, tally = self.counts(), self.traffic, self.traffic.tally
        receiver, delays = t.reconnects[t.receiver_agent.sandbox_id], t.delays()
        head = (f"sent={len(tally.sent)} notifications + {c['asked']} requests, handled={c['handled']} "
                f"lost={c['lost']} handled_twice={c['twice']} recovered={c['recovered']}/{len(t.retried())} retried "
                f"answered={c['answered']}/{c['asked']} send_failures={len(tally.send_failures)} "
                f"longest_stall={c['stall']:.2f}s took={c['took']:.1f}s")
        found = [head, f"reconnects: receiver {receiver}, senders {sum(t.reconnects.values()) - receiver}; "
                       f"send attempts {sum(tally.attempts[key] for key in tally.first_try)} for "
                       f"{len(tally.first_try)} sends; send to handled: slowest {max(delays, default=0):.2f}s, "
                       f"{sum(d > 1 for d in delays)} over 1 s",
                 *self.notes, *tally.send_failures[:5], *tally.request_failures[:5]]
        return [f"[{self.fault}] {line}" for line in found]

    def print(self) -> None:
        print("\n" + "\n".join(self.lines()), flush=True)

    def assert_exactly_once(self) -> None:
        t = self.traffic
        assert not t.lost(), f"lost: {sorted(t.lost())[:20]}"
        assert not t.twice(), f"handled twice: {t.twice()}"
        assert t.tally.answered == t.tally.asked, t.tally.request_failures[:10]
        assert len(t.tally.sent) >= t.load.senders * t.load.per_sender


Inject = Callable[[Cluster, Traffic], Awaitable[list[str]]]


@dataclass(frozen=True)
class Fault:
    """A fault: its name and the coroutine `inject(cluster, traffic)` that does it while the traffic runs (the
    receiver's node is `traffic.receiver_node`) and returns notes to print. `broker` names the kind of broker
    server the cluster needs (bench/failover.py starts one cluster per kind)."""

    name: str
    inject: Inject
    broker: str = "redis"


async def nothing(cluster: Cluster, traffic: Traffic) -> list[str]:
    return []


NO_FAULT = Fault("no-fault", nothing)


def run_fault(cluster: Cluster, fault: Fault, load: Load | None = None, timeout: float = 240) -> Result:
    """Run `load` (default: `Load()`) through the balancer, inject `fault` once a quarter of it was accepted, wait
    until every send was handled (at most EVENTUALLY s after the senders are done), restore the cluster and return
    the counts, with what HAProxy saw during the run among the notes."""
    load = load or Load()
    started, watch = time.monotonic(), BalancerWatch(cluster.haproxy)
    try:
        traffic, notes = asyncio.run(asyncio.wait_for(_run(cluster, fault, load), timeout))
    finally:
        cluster.restore()
    return Result(fault.name, traffic, time.monotonic() - started, [*notes, *watch.notes()], watch)


async def _run(cluster: Cluster, fault: Fault, load: Load) -> tuple[Traffic, list[str]]:
    bus = cluster.bus
    traffic = Traffic(cluster.url, load)
    before = await asyncio.to_thread(per_node, bus, "collab_bus_open_websockets")
    await traffic.receiver_agent.start()
    after = await asyncio.to_thread(per_node, bus, "collab_bus_open_websockets")
    traffic.receiver_node = max(after, key=lambda node: after[node] - before[node])
    for agent in traffic.senders:
        await agent.start()
    try:
        sending = asyncio.create_task(traffic.send_all())
        quarter = load.senders * load.per_sender // 4
        await eventually(lambda: traffic.accepted >= quarter or sending.done(), "a quarter sent")
        notes = await fault.inject(cluster, traffic)
        traffic.fault_over.set()
        await sending
        await eventually(lambda: not traffic.lost(), "every sent message to be handled")
    finally:
        for agent in (*traffic.senders, traffic.receiver_agent):
            await agent.stop()
    return traffic, [f"receiver's socket was on {traffic.receiver_node}", *notes]


async def eventually(predicate, what: str, timeout: float = EVENTUALLY) -> None:
    """Wait until `predicate()`; give up quietly after `timeout` s (the counts and assertions say what is
    missing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


COUNTERS = ("hrsp_5xx", "econ", "eresp", "wretr", "wredis", "cli_abrt", "srv_abrt")


class BalancerWatch:
    """What HAProxy saw from here on: its backend's counters (5xx it answered, connection and response errors,
    retries, redispatches, aborts) and the log lines of failed requests."""

    def __init__(self, haproxy: HAProxy):
        self.haproxy = haproxy
        self.before = self._counters()
        self.log_offset = len(haproxy.logs())

    def _counters(self) -> dict[str, int]:
        backend = self.haproxy.backend()
        return {name: int(backend[name] or 0) for name in COUNTERS}

    def counts(self) -> dict[str, int]:
        return {name: value - self.before[name] for name, value in self._counters().items()}

    def requests(self) -> list[tuple[int, str, str]]:
        """(status, termination state, line) of each request HAProxy logged from here on (status -1: none)."""
        found = []
        for line in self.haproxy.logs()[self.log_offset:].splitlines():
            match = re.search(r"\] bus \S+ \S+ (-?\d+) \d+ - - (\S{4}) ", line)
            if match:
                found.append((int(match.group(1)), match.group(2), line))
        return found

    def failed_requests(self) -> list[str]:
        """Log lines of requests HAProxy answered 5xx, or ended with no answer at all."""
        return [line for status, _, line in self.requests() if status >= 500 or status < 0]

    def notes(self) -> list[str]:
        unusual = [line for status, state, line in self.requests() if status >= 500 or status < 0
                   or (status != 101 and state != "----")]  # sockets (101) end closed by either side
        return [f"HAProxy backend counters during the run: {self.counts()}",
                *(f"HAProxy logged: {line}" for line in unusual[:12])]
