"""Delivery guarantees over real processes and real sockets, with timeouts made short by configuration:
ACK timeout and redelivery, max attempts, NACK, TTL expiry, a recipient unregistered before delivery, a delivery
task that keeps failing, and replay from the dead-letter queue."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing, contextmanager

import pytest

from tests.servers import BROKER_KINDS, BusProcess, bus_client, bus_on, wait_for
from tests.servers import ws_connect as connect

DELIVERY_RETRIES = 3
FAST = {
    "ACK_TIMEOUT": "0.4",
    "MAX_DELIVERY_ATTEMPTS": "3",
    "MAX_REDELIVERY_BACKOFF": "0.8",
    "REDELIVERY_SWEEP_INTERVAL": "0.1",
    "DELIVERY_MAX_RETRIES": str(DELIVERY_RETRIES),
}
RECV_TIMEOUT = 10


@pytest.fixture(scope="module", params=BROKER_KINDS)
def fast_bus(request):
    """A bus (with beat) whose ACK timeout, attempts and sweeps are short, on each broker."""
    bus = bus_on(request, request.param, extra_env=FAST, with_beat=True)
    yield bus
    bus.cleanup()


@pytest.fixture
def http(fast_bus):
    with bus_client(fast_bus.url, timeout=10) as client:
        yield client


def pair(http, unique) -> tuple[str, str]:
    a, b = unique("a"), unique("b")
    for sandbox in (a, b):
        assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code in (200, 201)
    return a, b


def send(http, a: str, b: str, message_type: str = "request", **extra) -> str:
    response = http.post("/api/v1/messages", json={"from_sandbox": a, "to_sandbox": b, "from_agent": "x",
                                                    "message_type": message_type, "content": {"q": 1}, **extra})
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def recv(ws) -> dict:
    return json.loads(ws.recv(timeout=RECV_TIMEOUT))


def mailbox(fast_bus, sandbox: str, since: int = 0):
    ws = connect(f"{fast_bus.ws_url}/ws/sandboxes/{sandbox}?since={since}", open_timeout=RECV_TIMEOUT)
    assert recv(ws)["type"] == "welcome"
    return ws


def dead_letters_of(http, message_id: str) -> list[dict]:
    return http.get("/api/v1/dead-letters", params={"message_id": message_id}).json()["dead_letters"]


def wait_dead_letter(http, message_id: str, reason: str) -> dict:
    found = wait_for(lambda: [d for d in dead_letters_of(http, message_id) if d["reason"] == reason], 20,
                     f"a {reason} dead letter for {message_id}")
    return found[0]


def entry_state(http, message_id: str) -> str:
    return http.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["state"]


def ack_and_wait(http, ws, seq: int, message_id: str) -> None:
    """ACK entry `seq` on the socket and wait until the bus records `message_id`'s entry as acked."""
    ws.send(json.dumps({"type": "ack", "seq": seq}))
    wait_for(lambda: entry_state(http, message_id) == "acked", 10, f"the ACK of seq {seq}")


def replay_to_socket_and_ack(bus: BusProcess, http, dead: dict, message_id: str) -> None:
    """Replay dead letter `dead` while its recipient holds a socket: the message arrives as seq 1 and is ACKed,
    and no dead letter of it is left."""
    with mailbox(bus, dead["sandbox_id"]) as ws:
        assert http.post(f"/api/v1/dead-letters/{dead['id']}/replay").status_code == 202
        frame = recv(ws)
        assert (frame["seq"], frame["message"]["message_id"]) == (1, message_id)
        ack_and_wait(http, ws, 1, message_id)
    assert dead_letters_of(http, message_id) == []


def test_unacked_request_is_pushed_again_until_dead_lettered_then_replayed(fast_bus, http, unique):
    a, b = pair(http, unique)
    with mailbox(fast_bus, b) as ws:
        message_id = send(http, a, b)
        first = recv(ws)
        assert first["seq"] == 1 and "redelivered" not in first
        again = [recv(ws) for _ in range(2)]
        assert [(f["seq"], f["redelivered"], f["attempt"]) for f in again] == [(1, True, 2), (1, True, 3)]
        dead = wait_dead_letter(http, message_id, "max_attempts")
        assert dead["attempts"] == 3 and dead["sandbox_id"] == b and entry_state(http, message_id) == "dead"

        replayed = http.post(f"/api/v1/dead-letters/{dead['id']}/replay")
        assert replayed.status_code == 202 and replayed.json()["redelivery"] == "mailbox"
        frame = recv(ws)
        assert (frame["seq"], frame["message"]["message_id"], frame["attempt"]) == (1, message_id, 1)
        ack_and_wait(http, ws, 1, message_id)
    assert dead_letters_of(http, message_id) == []


def test_acked_request_is_not_pushed_again(fast_bus, http, unique):
    a, b = pair(http, unique)
    with mailbox(fast_bus, b) as ws:
        message_id = send(http, a, b, message_type="command")
        assert recv(ws)["seq"] == 1
        ack_and_wait(http, ws, 1, message_id)
        probe = send(http, a, b, message_type="notification")  # needs no ACK, is never pushed again
        frames = [recv(ws)]
        assert frames[0]["message"]["message_id"] == probe
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2.5)  # several ACK timeouts: nothing is pushed again
    assert dead_letters_of(http, message_id) == [] and dead_letters_of(http, probe) == []


def test_nack_dead_letters_at_once_and_replay_delivers_again(fast_bus, http, unique):
    a, b = pair(http, unique)
    with mailbox(fast_bus, b) as ws, connect(f"{fast_bus.ws_url}/ws/events") as events:
        assert recv(events)["type"] == "welcome"
        message_id = send(http, a, b)
        assert recv(ws)["seq"] == 1
        ws.send(json.dumps({"type": "nack", "seq": 1, "reason": "tool crashed: KeyError 'url'"}))
        dead = wait_dead_letter(http, message_id, "nacked")
        assert dead["last_error"] == "tool crashed: KeyError 'url'"
        wait_for(lambda: (e := recv(events))["event"] == "message.dead_lettered"
                 and e["data"]["message_id"] == message_id,
                 RECV_TIMEOUT, "the dead-letter event")
        bulk = http.post("/api/v1/dead-letters/replay", json={"message_id": message_id})
        assert bulk.status_code == 202 and bulk.json()["replayed"] == 1
        frame = recv(ws)
        assert frame["seq"] == 1 and frame["redelivered"] is True
        ack_and_wait(http, ws, 1, message_id)


def test_ttl_passing_before_ack_dead_letters_expired_and_replay_delivers(fast_bus, http, unique):
    a, b = pair(http, unique)
    message_id = send(http, a, b, ttl=1)  # b holds no socket: nothing can ACK it
    dead = wait_dead_letter(http, message_id, "expired")
    assert entry_state(http, message_id) == "dead"
    assert http.post(f"/api/v1/dead-letters/{dead['id']}/replay").status_code == 202
    with mailbox(fast_bus, b) as ws:
        frame = recv(ws)
        assert frame["message"]["message_id"] == message_id and frame["message"]["ttl"] is None


def test_recipient_unregistered_before_delivery_is_dead_lettered_then_replayed(fast_bus, http, unique):
    """The message is accepted while the recipient is registered; the recipient is unregistered before the
    (stopped) worker routes it: dead letter `recipient_gone`. Once the sandbox is back, a replay delivers it."""
    if fast_bus.mode == "embedded":
        pytest.skip("the embedded bus cannot hold its worker back; the service test covers the routing decision")
    a, b = pair(http, unique)
    fast_bus.stop_worker()
    try:
        message_id = send(http, a, b, message_type="command")
        assert http.delete(f"/api/v1/sandboxes/{b}").status_code == 200
    finally:
        fast_bus.start_worker()
    dead = wait_dead_letter(http, message_id, "recipient_gone")
    assert dead["sandbox_id"] == b and b in dead["last_error"]
    assert http.get(f"/api/v1/messages/{message_id}").json()["status"] == "dead"

    assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": b}).status_code in (200, 201)
    replay_to_socket_and_ack(fast_bus, http, dead, message_id)


@contextmanager
def mailbox_refusing_entries(bus: BusProcess, sandbox: str):
    """While open, the bus's SQLite database refuses every new entry of `sandbox`'s mailbox (a trigger raising
    an error, as a failing disk or a broken database would), so the worker's deliver task fails on each try."""
    trigger = "refuse_" + re.sub(r"\W", "_", sandbox)
    with closing(sqlite3.connect(bus.database_url.removeprefix("sqlite:///"), timeout=30)) as db:
        db.execute(f"CREATE TRIGGER {trigger} BEFORE INSERT ON mailbox_entries WHEN NEW.sandbox_id = '{sandbox}' "
                   f"BEGIN SELECT RAISE(ABORT, 'mailbox of {sandbox} refused by the test trigger'); END")
        try:
            yield f"mailbox of {sandbox} refused by the test trigger"
        finally:
            db.execute(f"DROP TRIGGER {trigger}")


def test_delivery_that_keeps_failing_is_dead_lettered_undeliverable_then_replayed(fast_bus, http, unique):
    """The deliver task fails on every try: Celery retries it DELIVERY_MAX_RETRIES times, then the message is
    dead-lettered `undeliverable` with the error. Once the database works again, a replay delivers it."""
    a, b = pair(http, unique)
    with mailbox_refusing_entries(fast_bus, b) as error:
        message_id = send(http, a, b, message_type="command")
        dead = wait_dead_letter(http, message_id, "undeliverable")
    assert error in dead["last_error"] and dead["sandbox_id"] == b
    report = http.get(f"/api/v1/messages/{message_id}").json()
    assert report["status"] == "dead" and report["deliveries"] == []
    retries = [line for path in fast_bus.dir.glob("*.log") for line in path.read_text(errors="replace").splitlines()
               if "retry:" in line and error in line]
    assert len(retries) == DELIVERY_RETRIES, retries
    replay_to_socket_and_ack(fast_bus, http, dead, message_id)


@pytest.fixture(scope="module")
def heartbeat_bus(redis_server):
    """A bus on Redis that marks a sandbox offline after one silent second."""
    bus = BusProcess("redis", redis_url=redis_server.url, with_beat=True,
                     extra_env={**FAST, "HEARTBEAT_TIMEOUT": "1"})
    yield bus
    bus.cleanup()


def test_silent_sandbox_goes_offline_and_a_heartbeat_brings_it_back(heartbeat_bus, unique):
    with bus_client(heartbeat_bus.url, timeout=10) as http:
        a, b = pair(http, unique)
        status = lambda: http.get(f"/api/v1/sandboxes/{b}").json()["status"]  # noqa: E731
        with connect(f"{heartbeat_bus.ws_url}/ws/events") as events, mailbox(heartbeat_bus, b) as ws:
            assert recv(events)["type"] == "welcome"
            assert status() == "online"
            seen = []

            def saw(name):
                return lambda: seen.append(recv(events)) or any(
                    e["event"] == name and e["data"]["sandbox_id"] == b for e in seen)

            wait_for(saw("sandbox.offline"), RECV_TIMEOUT, "the offline event of a silent sandbox")
            assert status() == "offline"
            ws.send(json.dumps({"type": "heartbeat"}))
            assert recv(ws) == {"type": "pong"}
            wait_for(saw("sandbox.online"), RECV_TIMEOUT, "the online event after a heartbeat")
            assert status() == "online"
        answer = http.post(f"/api/v1/sandboxes/{b}/heartbeat")
        assert answer.status_code == 200 and answer.json()["status"] == "online"
        assert http.post(f"/api/v1/sandboxes/{unique('ghost')}/heartbeat").status_code == 404


def test_dead_letters_reach_the_brokers_dead_letter_exchange(request, unique):
    """On RabbitMQ the capped queue `collab.dead_letters` holds a record of each dead letter, routed by reason."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    from app.config import Settings
    from app.fanout import dead_letter_queue

    rabbitmq = request.getfixturevalue("rabbitmq_server")
    bus = BusProcess("rabbitmq", rabbitmq=rabbitmq, extra_env=FAST)
    try:
        with bus_client(bus.url, timeout=10) as http:
            a, b = pair(http, unique)
            with mailbox(bus, b) as ws:
                message_id = send(http, a, b)
                assert recv(ws)["seq"] == 1
                ws.send(json.dumps({"type": "nack", "seq": 1, "reason": "cannot parse"}))
                wait_dead_letter(http, message_id, "nacked")
        broker = Settings.from_env({"MESSAGE_BACKEND": "rabbitmq", "RABBITMQ_URL": bus.env["RABBITMQ_URL"]}).broker
        with Connection(bus.env["RABBITMQ_URL"]) as conn:
            def fetch():
                # The API publishes right after committing the dead letter: the queue (declared by that first
                # publish) may not exist yet when the test looks.
                try:
                    return dead_letter_queue(broker)(conn.channel()).get(no_ack=True)
                except NotFound:
                    return None

            record = wait_for(fetch, 10, "the dead-letter record on the broker")
        assert record.delivery_info["routing_key"] == "nacked"
        assert record.payload["message_id"] == message_id and record.payload["error"] == "cannot parse"
    finally:
        bus.cleanup()
