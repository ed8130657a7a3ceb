"""Direct delivery (app.services.direct_delivery): a message to a sandbox with a mailbox socket on the accepting
process is routed in the accepting transaction and pushed by that process, with no delivery task.

The service tests run on real SQLite and PostgreSQL databases (the `db` fixture) with recorders for the delivery
queue and the notifier; the process tests on a real bus (collab-bus api + worker on Redis) and a real socket.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from app.models import EntryState, MailboxEntry, Message, SandboxStatus, utcnow
from app.services import audit, delivery, mailbox, redelivery, registry
from app.services.direct_delivery import DirectRouter
from app.services.directory import Directory
from app.services.events import unbatched
from app.services.redelivery import RedeliveryPolicy
from app.services.sending import Sender, SendService
from tests.servers import BusProcess, RedisServer, bus_client, wait_for, ws_connect

ACTOR = audit.Actor("test", "admin", None)
SENDER = Sender(None, True, ACTOR)


class Recorder:
    """A delivery queue and notifier that record what they are asked (nothing is pushed: as if the process died
    right after its commit)."""

    def __init__(self):
        self.enqueued: list = []
        self.published: list[dict] = []

    def enqueue(self, message_id, priority, expires_at=None):
        self.enqueued.append(message_id)

    def enqueue_many(self, message_ids, priority):
        self.enqueued.append(list(message_ids))

    def publish(self, notification):
        self.published.append(notification)


def message(sender: str, recipient: str, n: int, message_type: str = "request") -> dict:
    return {"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "a", "to_agent": "any",
            "message_type": message_type, "content": {"n": n}, "priority": 5, "requires_response": False,
            "correlation_id": None, "ttl": None}


@pytest.fixture
def service(db):
    """A SendService whose local sockets are those of the `connected` set."""
    for sandbox in ("s1", "r1", "r2"):
        registry.register(db, sandbox, "default", [], {})
    connected: set[str] = set()
    recorder = Recorder()
    policy = RedeliveryPolicy(ack_timeout=30.0)
    sending = SendService(db, Directory(db), recorder, recorder, max_content_bytes=1 << 20,
                          idempotency_window=3600, direct=DirectRouter(connected.__contains__, policy))
    return sending, connected, recorder, policy


def statuses(db, ids: list[str]) -> list[str]:
    with db.read() as session:
        return [session.get(Message, message_id).status for message_id in ids]


def test_a_message_to_a_connected_recipient_is_routed_when_it_is_stored_and_no_task_is_sent(db, service):
    sending, connected, recorder, _ = service
    connected.add("r1")
    direct = [sending.send(message("s1", "r1", n), SENDER).message.id for n in range(3)]
    other = sending.send(message("s1", "r2", 9), SENDER).message.id

    assert statuses(db, direct) == ["delivered"] * 3 and statuses(db, [other]) == ["accepted"]
    assert recorder.enqueued == [other]
    assert [(e.seq, e.message["message_id"]) for e in mailbox.entries_after(db, "r1", 0)] == list(
        zip([1, 2, 3], direct, strict=True))
    entries = [n for published in recorder.published for n in unbatched(published)
               if n.get("kind") == "entries"]  # what the process pushes after its commit
    assert [(n["message"]["message_id"], n["recipients"]) for n in entries] == [
        (message_id, [["r1", seq]]) for seq, message_id in enumerate(direct, 1)]


def test_entries_committed_but_never_pushed_are_read_back_by_seq_and_pushed_again_unacknowledged(db, service):
    """The process dies between its commit and its push: nothing reached a socket. What the bus promised is in the
    database: a reconnecting socket reads the entries by seq, and the redelivery sweep pushes an unacknowledged
    request again once its ACK is due."""
    sending, connected, recorder, policy = service
    connected.add("r1")
    registry.mark_status(db, "r1", SandboxStatus.ONLINE)  # as its socket marked it
    ids = [sending.send(message("s1", "r1", n), SENDER).message.id for n in range(2)]

    assert [e.message["message_id"] for e in mailbox.entries_after(db, "r1", 0)] == ids
    with db.read() as session:
        entries = session.query(MailboxEntry).filter_by(sandbox_id="r1").order_by(MailboxEntry.seq).all()
        assert [(e.state, e.attempts, e.requires_ack) for e in entries] == [(EntryState.DELIVERED, 1, True)] * 2
    swept = redelivery.sweep_unacked(db, policy, now=utcnow() + timedelta(seconds=31))
    assert [(n["sandbox_id"], n["seq"], n["attempt"]) for n in swept.redeliveries] == [("r1", 1, 2), ("r1", 2, 2)]
    assert redelivery.ack(db, "r1", 1) == ids[0]


def test_a_message_waits_behind_an_earlier_one_still_awaiting_its_delivery_task(db, service):
    """Per-mailbox order: r1 connects after a first message went to the delivery task; the next ones to r1 take
    the task too (else they would overtake it), until nothing to r1 waits any more."""
    sending, connected, recorder, _ = service
    first = sending.send(message("s1", "r1", 1), SENDER).message.id
    connected.add("r1")
    second = sending.send(message("s1", "r1", 2), SENDER).message.id
    assert recorder.enqueued == [first, second] and statuses(db, [first, second]) == ["accepted"] * 2

    delivery.deliver_many(db, [first, second])  # the worker's turn
    third = sending.send(message("s1", "r1", 3), SENDER).message.id
    assert statuses(db, [third]) == ["delivered"] and recorder.enqueued == [first, second]
    assert [e.message["message_id"] for e in mailbox.entries_after(db, "r1", 0)] == [first, second, third]


def test_a_broadcast_awaiting_its_task_holds_direct_messages_back_and_a_batch_routes_directly(db, service):
    sending, connected, recorder, _ = service
    connected.update({"r1", "r2"})
    shout = sending.send({**message("s1", "broadcast", 0, "notification")}, SENDER).message.id
    held = sending.send(message("s1", "r1", 1), SENDER).message.id
    assert recorder.enqueued == [shout, held]

    delivery.deliver_many(db, [shout, held])
    results = sending.send_batch([message("s1", "r1", 2), message("s1", "r2", 3)], SENDER)
    assert statuses(db, [r.message.id for r in results]) == ["delivered"] * 2
    assert recorder.enqueued == [shout, held]


# --- a real bus ------------------------------------------------------------------------------------------------

def test_a_connected_recipient_gets_its_messages_while_the_broker_is_down(unique):
    """Redis is stopped: no delivery task can be sent, no notification published. A recipient connected to the
    accepting API process still gets each message at once, in order, marked delivered; once Redis is back nothing
    is delivered twice."""
    redis = RedisServer()
    bus = BusProcess("redis", redis_url=redis.url, with_beat=True)
    try:
        with bus_client(bus.url, timeout=30) as http:
            a, b = unique("a"), unique("b")
            for sandbox in (a, b):
                assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
            with ws_connect(f"{bus.ws_url}/ws/sandboxes/{b}?since=0", open_timeout=10) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
                redis.stop()
                answers = [http.post("/api/v1/messages", json={
                    "from_sandbox": a, "to_sandbox": b, "from_agent": "x", "message_type": "request",
                    "content": {"i": i}}) for i in range(5)]
                assert [r.status_code for r in answers] == [202] * 5, [r.text for r in answers]
                ids = [r.json()["message_id"] for r in answers]
                frames = [json.loads(ws.recv(timeout=10)) for _ in ids]
                assert [(f["seq"], f["message"]["message_id"]) for f in frames] == list(
                    zip(range(1, 6), ids, strict=True))
                assert [r.json()["status"] for r in answers] == ["delivered"] * 5
                for frame in frames:
                    ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
                redis.start()
                wait_for(lambda: all(d["state"] == "acked" for m in ids
                                     for d in http.get(f"/api/v1/messages/{m}").json()["deliveries"]),
                         30, "the five ACKs to be recorded")
                time.sleep(2)  # the broker's return: the outbox sweep and the enqueue retry find nothing to route
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=1)
            reports = [http.get(f"/api/v1/messages/{m}").json() for m in ids]
        assert [[d["seq"] for d in r["deliveries"]] for r in reports] == [[1], [2], [3], [4], [5]]
        assert "Traceback" not in (bus.dir / "api.log").read_text()
    finally:
        bus.cleanup()
        redis.cleanup()
