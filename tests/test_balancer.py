"""The bus behind the balancer it ships: Debian's HAProxy running `docker/haproxy.cfg` (rendered for loopback by
tests/balancer.py) in front of two `collab-bus api` nodes on one PostgreSQL database and one Redis, with a worker
and beat. SDK agents talk only to the balancer.

Each fault test counts what the senders sent, what the receiver handled, what was lost and what was handled twice,
and how many `collaborate_with` requests were answered; it prints the longest gap between two consecutive handled
messages (nothing asserts a timing).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from aintandem_agent_sdk import (
    AgentMessage,
    BaseAgent,
    BusConnectionError,
    BusServerError,
    ConnectionStatus,
    ContainerAgent,
    ContainerAgentConfig,
    MessageType,
)
from tests.balancer import BACKEND, HAProxy
from tests.servers import TEST_ADMIN_KEY, BusProcess, RedisServer, bus_client, wait_for, ws_connect

NODES = {"api-1": "api", "api-2": "api2"}  # the shipped file's server name -> the BusProcess's API process
SWEEP = {"OUTBOX_SWEEP_AFTER": "2", "OUTBOX_SWEEP_INTERVAL": "1"}  # a send committed by a node killed before it
# enqueued is enqueued by beat's outbox sweep 2 s later
SENDERS = 4
PER_SENDER = 50  # notifications per sender, at least (200 in all); every REQUEST_EVERY-th is also a request
REQUEST_EVERY = 10  # 20 requests
SEND_PAUSE = 0.1
REQUEST_TIMEOUT = 40
EVENTUALLY = 60


@dataclass
class Cluster:
    bus: BusProcess
    haproxy: HAProxy


@pytest.fixture(scope="module")
def cluster(postgres_server):
    """Redis, a PostgreSQL database, API nodes `api` and `api2` with a worker and beat, and HAProxy in front of
    both nodes (TRUSTED_PROXIES=1, as the shipped file says)."""
    redis = RedisServer()
    database = postgres_server.create_database()
    bus = haproxy = None
    try:
        bus = BusProcess("redis", redis_url=redis.url, with_beat=True,
                         extra_env={"DATABASE_URL": database, "TRUSTED_PROXIES": "1", **SWEEP})
        bus.start_api("api2")
        haproxy = HAProxy({server: bus.api_ports[node] for server, node in NODES.items()})
        for server in NODES:
            haproxy.wait_status(server, "UP")
        yield Cluster(bus, haproxy)
    finally:
        if haproxy is not None:
            haproxy.cleanup()
        if bus is not None:
            bus.cleanup()
        redis.cleanup()
        postgres_server.drop_database(database)


def _metric(url: str, name: str) -> float:
    """The sum of metric `name`'s samples in a node's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if re.match(rf"{re.escape(name)}(\{{|\s)", line))


def _per_node(bus: BusProcess, name: str) -> dict[str, float]:
    return {node: _metric(bus.api_url(node), name) for node in NODES.values()}


def _register(http: httpx.Client, *sandboxes: str) -> None:
    for sandbox in sandboxes:
        answer = http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
        assert answer.status_code in (200, 201), answer.text


# ------------------------------------------------------------------------------------------ a: the plain paths

def test_requests_reach_both_nodes_and_a_mailbox_socket_works_through_the_balancer(cluster):
    """Concurrent calls through the balancer are spread over both nodes (each node's own count of accepted messages
    rises); a mailbox socket opened through it gets its entries and its ACKs reach the bus."""
    bus, haproxy = cluster.bus, cluster.haproxy
    tag = uuid.uuid4().hex[:6]
    sender, recipient = f"a-s-{tag}", f"a-r-{tag}"
    before = _per_node(bus, "collab_bus_messages_accepted_total")
    with bus_client(haproxy.url, timeout=10) as http:
        _register(http, sender, recipient)
        ws = ws_connect(f"{haproxy.ws_url}/ws/sandboxes/{recipient}?since=0", open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        # Eight at a time: by leastconn, one call at a time would all go to the node without the socket.
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda n: _send(http, sender, recipient, n, "request"), range(40)))
        frames = [_next_message(ws) for _ in ids]  # four delivery threads: in the mailbox in any order
        for frame in frames:
            ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
        assert sorted(frame["seq"] for frame in frames) == list(range(1, 41))
        assert {frame["message"]["message_id"] for frame in frames} == set(ids)
        wait_for(lambda: _states(http, recipient) == {"acked"}, 30, "every entry to be acknowledged")
        ws.close()
    accepted = {node: count - before[node]
                for node, count in _per_node(bus, "collab_bus_messages_accepted_total").items()}
    print(f"\n[balancer] 40 sends through HAProxy, accepted per node: {accepted}; HAProxy's sessions per node: "
          f"{ {name: row['stot'] for name, row in haproxy.servers().items()} }")
    assert sum(accepted.values()) == 40 and all(accepted.values()), accepted


def _send(http: httpx.Client, sender: str, recipient: str, n: int, message_type: str = "notification") -> str:
    answer = http.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "t",
                                                 "message_type": message_type, "content": {"n": n}})
    assert answer.status_code == 202, answer.text
    return answer.json()["message_id"]


def _next_message(ws) -> dict:
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame["type"] == "message":
            return frame


def _states(http: httpx.Client, sandbox: str) -> set[str]:
    page = http.get(f"/api/v1/sandboxes/{sandbox}/messages", params={"since": 0, "limit": 1000}).json()
    return {entry["state"] for entry in page["entries"]}


@pytest.mark.parametrize("tunnel", [True, False], ids=["shipped", "without-timeout-tunnel"])
def test_an_idle_socket_outlives_the_client_timeout_because_of_timeout_tunnel(cluster, tunnel):
    """A balancer from the shipped file with client and server timeouts of 1 s: a mailbox socket idle for 3 s (no
    pings: the bus pings every 25 s, this client never) still carries frames both ways, because upgraded
    connections obey `timeout tunnel`. The control, the same file without `timeout tunnel`, cuts it."""
    bus = cluster.bus
    overrides: dict[str, str | None] = {"timeout client": "1s", "timeout server": "1s"}
    if not tunnel:
        overrides["timeout tunnel"] = None
    short = HAProxy({server: bus.api_ports[node] for server, node in NODES.items()}, overrides)
    tag = uuid.uuid4().hex[:6]
    sender, recipient = f"idle-s-{tag}", f"idle-r-{tag}"
    try:
        for server in NODES:
            short.wait_status(server, "UP")
        with bus_client(short.url, timeout=10) as http:
            _register(http, sender, recipient)
            with ws_connect(f"{short.ws_url}/ws/sandboxes/{recipient}?since=0", open_timeout=10,
                            ping_interval=None) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
                closed_after = _idle(ws, 3.0)
                print(f"\n[idle socket, timeout tunnel {'as shipped' if tunnel else 'unset'}] "
                      f"{f'cut after {closed_after:.1f} s' if closed_after else 'open after 3 s idle'}")
                if not tunnel:
                    assert closed_after is not None  # the control: 1 s client/server timeouts cut an idle socket
                    return
                assert closed_after is None
                message_id = _send(http, sender, recipient, 1, "request")
                frame = _next_message(ws)
                assert frame["message"]["message_id"] == message_id
                ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
                wait_for(lambda: _states(http, recipient) == {"acked"}, 30, "the ACK sent after the idle time")
    finally:
        short.cleanup()


def _idle(ws, seconds: float) -> float | None:
    """Wait `seconds` on the socket without sending; the time it was closed after, or None if it stayed open."""
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        try:
            frame = json.loads(ws.recv(timeout=left))
            assert frame["type"] != "message", frame
        except TimeoutError:
            return None
        except ConnectionClosed:
            return time.monotonic() - started
    return None


def test_the_bus_sees_the_address_haproxy_saw_not_one_the_client_claims(cluster):
    """`option forwardfor` with TRUSTED_PROXIES=1: a client on 127.0.0.2 that sends its own X-Forwarded-For is
    audited (a failed authentication) under 127.0.0.2, the address HAProxy saw; not under the one it claimed, nor
    under HAProxy's own 127.0.0.1."""
    target = f"/api/v1/sandboxes/xff-{uuid.uuid4().hex[:6]}"
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=cluster.haproxy.url, transport=transport, timeout=10) as anonymous:
        answer = anonymous.get(target, headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 401, answer.text
    with bus_client(cluster.haproxy.url) as admin:
        def audited() -> list[str]:
            page = admin.get("/api/v1/audit", params={"action": "auth.failed", "limit": 1000}).json()
            return [event["remote_addr"] for event in page["events"] if event["target"] == target]

        addresses = wait_for(audited, 10, f"the failed authentication on {target} in the audit trail")
    assert addresses == ["127.0.0.2"], addresses


# ------------------------------------------------------------------------------------- b, c: faults under load

class Receiver(BaseAgent):
    """Handles every message once per call, recording its key and when; answers requests with their key."""

    def __init__(self, name: str):
        super().__init__(name, capabilities=["receive"])
        self.handled: Counter[str] = Counter()
        self.times: list[float] = []

    async def handle(self, message: AgentMessage) -> dict | None:
        key = message.content["key"]
        self.handled[key] += 1
        self.times.append(time.monotonic())
        return {"answer": key} if message.message_type is MessageType.REQUEST else None


@dataclass
class Tally:
    """What the senders did: notification keys accepted, request keys asked and answered, failures seen."""

    sent: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    send_failures: list[str] = field(default_factory=list)
    request_failures: list[str] = field(default_factory=list)


class Traffic:
    """SDK agents on both ends, all through the balancer: one receiver and `SENDERS` senders, each sending at least
    PER_SENDER notifications with idempotency keys (and every REQUEST_EVERY-th a `collaborate_with` request) and
    going on until the fault is over. A send that fails after the SDK's own retries is sent again with its key."""

    def __init__(self, url: str, tag: str):
        self.url = url
        self.tag = tag
        self.receiver = Receiver(f"recv-{tag}")
        self.receiver_agent = self._agent(f"recv-{tag}", self.receiver)
        self.senders = [self._agent(f"send{i}-{tag}", BaseAgent(f"send{i}-{tag}")) for i in range(SENDERS)]
        self.tally = Tally()
        self.reconnects: Counter[str] = Counter()
        self.fault_over = asyncio.Event()
        self._requests: list[asyncio.Task] = []

    def _agent(self, sandbox: str, agent: BaseAgent) -> ContainerAgent:
        bus = ContainerAgent(sandbox, self.url, agent, ContainerAgentConfig(token=TEST_ADMIN_KEY))

        def count(status: ConnectionStatus, detail: str) -> None:
            if status is ConnectionStatus.RECONNECTING:
                self.reconnects[sandbox] += 1

        bus.add_status_listener(count)
        return bus

    @property
    def accepted(self) -> int:
        return len(self.tally.sent)

    async def send_all(self) -> None:
        """Run every sender to its end and wait for every request's answer (or failure)."""
        await asyncio.gather(*(self._sender(agent, i) for i, agent in enumerate(self.senders)))
        await asyncio.gather(*self._requests)

    async def _sender(self, agent: ContainerAgent, index: int) -> None:
        n = 0
        while n < PER_SENDER or not self.fault_over.is_set():
            key = f"{self.tag}-{index}-{n:04d}"
            if n % REQUEST_EVERY == 0:
                self._requests.append(asyncio.create_task(self._ask(agent, f"{key}-req")))
            await self._notify(agent, key)
            n += 1
            await asyncio.sleep(SEND_PAUSE)

    async def _notify(self, agent: ContainerAgent, key: str) -> None:
        for _ in range(10):
            try:
                await agent.send_message(self.receiver_agent.sandbox_id, {"key": key}, MessageType.NOTIFICATION,
                                         idempotency_key=key)
                self.tally.sent.add(key)
                return
            except (BusConnectionError, BusServerError) as exc:
                self.tally.send_failures.append(f"{key}: {type(exc).__name__}: {exc}")
        raise AssertionError(f"{key}: ten sends failed: {self.tally.send_failures[-3:]}")

    async def _ask(self, agent: ContainerAgent, key: str) -> None:
        self.tally.asked.add(key)
        try:
            answer = await agent.collaborate_with(self.receiver_agent.sandbox_id, {"key": key},
                                                  timeout=REQUEST_TIMEOUT, idempotency_key=key)
            if answer == {"answer": key}:
                self.tally.answered.add(key)
        except Exception as exc:  # counted and reported: every request must be answered
            self.tally.request_failures.append(f"{key}: {type(exc).__name__}: {exc}")

    def lost(self) -> set[str]:
        return (self.tally.sent | self.tally.asked) - set(self.receiver.handled)

    def twice(self) -> dict[str, int]:
        return {key: count for key, count in self.receiver.handled.items() if count > 1}

    def longest_stall(self) -> float:
        times = sorted(self.receiver.times)
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def report(self, what: str, took: float, *extra: str) -> None:
        tally = self.tally
        print(f"\n[{what}] sent={len(tally.sent)} notifications + {len(tally.asked)} requests, "
              f"handled={len(self.receiver.handled)} lost={len(self.lost())} handled_twice={len(self.twice())} "
              f"answered={len(tally.answered)}/{len(tally.asked)} send_failures={len(tally.send_failures)} "
              f"longest_stall={self.longest_stall():.2f}s took={took:.1f}s")
        print(f"[{what}] reconnects: receiver {self.reconnects[self.receiver_agent.sandbox_id]}, "
              f"senders {sum(self.reconnects.values()) - self.reconnects[self.receiver_agent.sandbox_id]}")
        for line in [*extra, *tally.send_failures[:5], *tally.request_failures[:5]]:
            print(f"[{what}] {line}")

    def assert_exactly_once(self) -> None:
        assert not self.lost(), f"lost: {sorted(self.lost())[:20]}"
        assert not self.twice(), f"handled twice: {self.twice()}"
        assert self.tally.answered == self.tally.asked, self.tally.request_failures[:10]
        assert len(self.tally.sent) >= SENDERS * PER_SENDER


def _open_sockets(bus: BusProcess) -> dict[str, float]:
    return _per_node(bus, "collab_bus_open_websockets")


async def _run(cluster: Cluster, what: str, fault) -> tuple[Traffic, list[str]]:
    """Start the receiver (noting the node its socket landed on), then the senders; run `fault(traffic, node)`
    once a quarter of the notifications are accepted; wait until every send was handled; return the traffic and
    what the fault reported."""
    bus = cluster.bus
    traffic = Traffic(cluster.haproxy.url, uuid.uuid4().hex[:6])
    before = await asyncio.to_thread(_open_sockets, bus)
    await traffic.receiver_agent.start()
    after = await asyncio.to_thread(_open_sockets, bus)
    receiver_node = max(after, key=lambda node: after[node] - before[node])
    for agent in traffic.senders:
        await agent.start()
    try:
        sending = asyncio.create_task(traffic.send_all())
        await _eventually(lambda: traffic.accepted >= SENDERS * PER_SENDER // 4 or sending.done(), "a quarter sent")
        notes = await fault(traffic, receiver_node)
        traffic.fault_over.set()
        await sending
        await _eventually(lambda: not traffic.lost(), "every sent message to be handled")
    finally:
        for agent in (*traffic.senders, traffic.receiver_agent):
            await agent.stop()
    return traffic, [f"receiver's socket was on {receiver_node}", *notes]


async def _eventually(predicate, what: str, timeout: float = EVENTUALLY) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return  # the counts and assertions say what is missing
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


def test_kill_9_of_the_node_holding_the_receivers_socket(cluster):
    """The node that holds the receiver's socket is killed with SIGKILL mid-stream: the receiver reconnects through
    HAProxy to the other node and resumes from its cursor; senders' calls caught on the dead node are retried by
    the SDK with their idempotency keys. Nothing lost, nothing handled twice, every request answered."""
    bus, haproxy = cluster.bus, cluster.haproxy

    async def kill(traffic: Traffic, node: str) -> list[str]:
        killed_at = time.monotonic()
        await asyncio.to_thread(bus.stop_api, node, signal.SIGKILL)
        server = next(s for s, n in NODES.items() if n == node)
        await asyncio.to_thread(haproxy.wait_status, server, "DOWN")
        await asyncio.sleep(3)  # traffic goes on on the survivor
        return [f"killed {node}; HAProxy had it DOWN after {time.monotonic() - killed_at - 3:.1f}s + 3 s of traffic"]

    started, watch = time.monotonic(), BalancerWatch(haproxy)
    try:
        traffic, notes = asyncio.run(asyncio.wait_for(_run(cluster, "kill -9", kill), 150))
    finally:
        _restore(cluster)
    traffic.report("kill -9 node", time.monotonic() - started, *notes, *watch.notes())
    traffic.assert_exactly_once()
    assert traffic.reconnects[traffic.receiver_agent.sandbox_id] >= 1  # it was on the killed node


@pytest.mark.parametrize("drain", [False, True], ids=["sigterm", "drain-then-sigterm"])
def test_rolling_restart(cluster, drain):
    """Each node in turn is stopped with SIGTERM (gunicorn's graceful stop), started again, and waited for until
    HAProxy has it UP, under the same traffic: nothing lost, nothing handled twice, every request answered, and
    HAProxy answers no request with an error (a stopping node refuses new connections at once, so HAProxy retries
    them elsewhere). With `drain`, the shipped file's gentlest procedure: the node is first set to drain through the
    runtime API (no new connection goes to it) and back to ready after its restart."""
    bus, haproxy = cluster.bus, cluster.haproxy

    async def rolling(traffic: Traffic, node: str) -> list[str]:
        notes = []
        for server, name in NODES.items():
            stopped_at = time.monotonic()
            await asyncio.to_thread(_restart_node, haproxy, bus, server, name, drain)
            notes.append(f"{name}: {'drain, ' if drain else ''}SIGTERM to UP again in HAProxy "
                         f"{time.monotonic() - stopped_at:.1f}s")
        return notes

    what = f"rolling restart{', drained first' if drain else ''}"
    started, watch = time.monotonic(), BalancerWatch(haproxy)
    try:
        traffic, notes = asyncio.run(asyncio.wait_for(_run(cluster, what, rolling), 150))
    finally:
        _restore(cluster)
    traffic.report(what, time.monotonic() - started, *notes, *watch.notes())
    traffic.assert_exactly_once()
    assert watch.counts()["hrsp_5xx"] == 0 and not watch.failed_requests(), watch.notes()


def _restart_node(haproxy: HAProxy, bus: BusProcess, server: str, node: str, drain: bool) -> None:
    """SIGTERM API process `node` and start it again; wait until HAProxy has it UP. With `drain`, set it to drain
    first and back to ready after the restart."""
    if drain:
        haproxy.runtime(f"set server {BACKEND}/{server} state drain")
    bus.restart_api(node, signal.SIGTERM)
    if drain:
        haproxy.runtime(f"set server {BACKEND}/{server} state ready")
    haproxy.wait_status(server, "UP")


def _restore(cluster: Cluster) -> None:
    """Both nodes running and UP in HAProxy, for the tests after this one."""
    for server, node in NODES.items():
        if node not in cluster.bus.apis:
            cluster.bus.start_api(node)
        cluster.haproxy.wait_status(server, "UP")

