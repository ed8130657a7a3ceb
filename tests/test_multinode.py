"""Several nodes: two API processes and two worker processes on one database and one Redis, or one NATS server.

A socket held on API node A receives what was sent through node B and delivered by either worker, and the other
way round; a broadcast observer on A sees broadcasts sent through B. Every message is accounted for exactly once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from tests.nats_server import NatsServer
from tests.servers import BusProcess, RedisServer, bus_client
from tests.servers import ws_connect as connect
from tests.traffic import (
    MailboxReader,
    Senders,
    assert_exactly_once,
    assert_reader_saw_every_entry,
    log_lines,
    register,
    report,
    settle,
)

PER_SENDER = 80


@pytest.fixture(params=["redis", "nats"])
def two_node_bus(request):
    """API nodes `api` (A) and `api2` (B), workers `worker` and `worker2`, on one Redis or one NATS server; workers
    log at DEBUG so each delivery can be traced to the worker that made it."""
    server = RedisServer() if request.param == "redis" else NatsServer()
    bus = None
    try:
        broker = {"redis_url": server.url} if request.param == "redis" else {"nats_url": server.url}
        bus = BusProcess(request.param, extra_env={"LOG_LEVEL": "DEBUG"}, **broker)
        bus.start_worker("worker2")
        bus.start_api("api2")
        yield bus
    finally:
        if bus is not None:
            bus.cleanup()
        server.cleanup()


def _delivered_by(bus: BusProcess, worker: str) -> set[str]:
    """Ids of the messages that `worker`'s deliver tasks put into mailboxes (its DEBUG log)."""
    return {line.split("deliver: message ", 1)[1].split()[0]
            for line in log_lines(bus, worker, "deliver: message ") if not line.rstrip().endswith(" 0 new")}


class BroadcastObserver(threading.Thread):
    """Reads `/ws/broadcast` and records the ids of the broadcast messages it sees."""

    def __init__(self, ws_url: str):
        super().__init__(name="broadcast-observer", daemon=True)
        self.ws = connect(f"{ws_url}/ws/broadcast", open_timeout=10)
        assert json.loads(self.ws.recv(timeout=10))["type"] == "welcome"
        self.seen: set[str] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                frame = json.loads(self.ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception:
                return
            if frame.get("type") == "message":
                self.seen.add(frame["message"]["message_id"])

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.ws.close()


def test_a_socket_on_node_a_receives_what_node_b_accepted_and_either_worker_delivered(two_node_bus):
    bus = two_node_bus
    started = time.monotonic()
    node_a, node_b = bus.api_url("api"), bus.api_url("api2")
    tag = uuid.uuid4().hex[:6]
    senders = [f"s{i}-{tag}" for i in range(3)]
    recipients = [f"r{i}-{tag}" for i in range(3)]
    everyone = senders + recipients
    with bus_client(node_b, timeout=10) as http_b, bus_client(node_a, timeout=10) as http_a:
        register(http_b, *everyone)
        on_a = MailboxReader(bus.api_ws_url("api"), recipients[0]).start_and_wait()
        on_b = MailboxReader(bus.api_ws_url("api2"), recipients[1]).start_and_wait()
        observer = BroadcastObserver(bus.api_ws_url("api"))
        observer.start()
        # s0 and s2 send through node B, s1 through node A.
        load = Senders([node_b, node_a], senders, recipients, tag, PER_SENDER, pause=0.005, request_every=4).start()
        outcome = load.join()
        account = settle(http_a, outcome, everyone, 120)
        for reader in (on_a, on_b):
            reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)
            reader.stop()
        observer.stop()
    through_b = {mid for mid, (sender, _) in outcome.intended.items() if sender in (senders[0], senders[2])}
    by_worker = {w: _delivered_by(bus, w) for w in ("worker", "worker2")}
    on_a_from_b = {w: len(set(on_a.entries.values()) & through_b & ids) for w, ids in by_worker.items()}
    on_b_from_a = {w: len((set(on_b.entries.values()) - through_b) & ids) for w, ids in by_worker.items()}
    broadcasts = {mid for mid in outcome.accepted if outcome.intended[mid][1] == "broadcast"}
    report("two nodes", outcome, account, started, on_a.summary(), on_b.summary(),
           f"socket on A got, sent through B, delivered per worker: {on_a_from_b}",
           f"socket on B got, sent through A, delivered per worker: {on_b_from_a}",
           f"broadcasts: {len(broadcasts)}, seen by the observer on A: {len(observer.seen & broadcasts)}")

    assert_exactly_once(account)
    assert len(outcome.accepted) == 3 * PER_SENDER and not outcome.failed, outcome.failed
    for reader in (on_a, on_b):
        assert_reader_saw_every_entry(reader, account)
    assert all(on_a_from_b.values()), on_a_from_b  # B accepted, each worker delivered, A's socket received
    assert all(on_b_from_a.values()), on_b_from_a
    assert by_worker["worker"].isdisjoint(by_worker["worker2"])  # nothing was delivered twice
    assert observer.seen >= broadcasts
    assert not any(log_lines(bus, name, "Traceback") for name in ("api", "api2", "worker", "worker2"))
