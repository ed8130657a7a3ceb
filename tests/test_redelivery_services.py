"""ACK, NACK, redelivery with backoff, max attempts, TTL and undeliverable, by plain calls on a real SQLite database.

Time is passed in (`now`), so no test sleeps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.errors import Conflict
from app.models import Message, utcnow
from app.services import delivery, mailbox, messages, redelivery, registry
from app.services.redelivery import RedeliveryPolicy

POLICY = RedeliveryPolicy(ack_timeout=10, max_attempts=3, max_backoff=25, jitter=0.2)


def setup(db, *, message_type="request", ttl=None, online=True) -> str:
    for sandbox in ("a", "b"):
        registry.register(db, sandbox, "default", [], {})
    if not online:
        registry.mark_status(db, "b", "offline")
    message = messages.accept(db, {
        "from_sandbox": "a", "to_sandbox": "b", "from_agent": "x", "to_agent": "any", "message_type": message_type,
        "content": {}, "priority": 5, "requires_response": False, "correlation_id": None, "ttl": ttl, "metadata": {},
    }, max_content_bytes=1024)
    delivery.deliver(db, message.id, POLICY)
    return message.id


def state(db, message_id: str) -> dict:
    report = messages.report(db, message_id)
    return {"entry": report["deliveries"][0] if report["deliveries"] else None,
            "dead": [(d["reason"], d["sandbox_id"]) for d in report["dead_letters"]], "status": report["status"]}


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    assert POLICY.wait_after(1) == timedelta(seconds=10)
    for attempt, base in ((2, 20), (3, 25), (7, 25)):
        wait = POLICY.wait_after(attempt).total_seconds()
        assert base * 0.8 <= wait <= base * 1.2


def test_unacked_request_is_pushed_again_then_dead_lettered_after_max_attempts(db):
    message_id = setup(db)
    assert state(db, message_id)["entry"]["attempts"] == 1
    now = utcnow()
    assert redelivery.sweep_unacked(db, POLICY, now).redeliveries == []  # not due yet
    pushes = []
    for _ in range(2):
        now += timedelta(seconds=40)
        result = redelivery.sweep_unacked(db, POLICY, now)
        pushes += [(n["sandbox_id"], n["seq"], n["attempt"]) for n in result.redeliveries]
    assert pushes == [("b", 1, 2), ("b", 1, 3)]
    result = redelivery.sweep_unacked(db, POLICY, now + timedelta(seconds=40))
    assert result.redeliveries == [] and [n["event"]["data"]["reason"] for n in result.notifications] == ["max_attempts"]
    assert state(db, message_id)["dead"] == [("max_attempts", "b")]
    assert state(db, message_id)["entry"]["state"] == "dead"
    with pytest.raises(Conflict):
        redelivery.ack(db, "b", 1)


def test_ack_stops_redelivery(db):
    setup(db)
    redelivery.ack(db, "b", 1)
    assert redelivery.sweep_unacked(db, POLICY, utcnow() + timedelta(hours=1)).all_notifications() == []


def test_notifications_need_no_ack(db):
    message_id = setup(db, message_type="notification")
    assert state(db, message_id)["entry"]["attempts"] == 0
    assert redelivery.sweep_unacked(db, POLICY, utcnow() + timedelta(hours=1)).all_notifications() == []


def test_attempts_count_only_while_the_recipient_is_connected(db):
    message_id = setup(db, online=False)
    assert state(db, message_id)["entry"]["attempts"] == 0
    later = utcnow() + timedelta(hours=1)
    assert redelivery.sweep_unacked(db, POLICY, later).all_notifications() == []  # offline: waits, no attempt used
    registry.mark_status(db, "b", "online")
    redelivery.start_attempts(db, "b", since=0, policy=POLICY)  # the socket replays it: attempt 1
    assert state(db, message_id)["entry"]["attempts"] == 1
    registry.mark_status(db, "b", "offline")
    assert redelivery.sweep_unacked(db, POLICY, later).all_notifications() == []


def test_reconnect_past_an_unacked_entry_makes_it_due_now(db):
    message_id = setup(db, online=False)
    registry.mark_status(db, "b", "online")
    redelivery.start_attempts(db, "b", since=1, policy=POLICY)  # client says it has seq 1 but never acked it
    result = redelivery.sweep_unacked(db, POLICY, utcnow() + timedelta(seconds=1))
    assert [(n["seq"], n["attempt"]) for n in result.redeliveries] == [(1, 1)]
    assert state(db, message_id)["entry"]["attempts"] == 1


def test_nack_dead_letters_with_the_reason(db):
    message_id = setup(db)
    event = redelivery.nack(db, "b", 1, "handler raised KeyError")
    assert event["event"]["data"]["reason"] == "nacked"
    report = messages.report(db, message_id)
    assert report["dead_letters"][0]["last_error"] == "handler raised KeyError"
    assert report["deliveries"][0]["state"] == "dead"
    with pytest.raises(Conflict):
        redelivery.nack(db, "b", 1, "again")


def test_entry_not_acked_within_ttl_expires(db):
    message_id = setup(db, ttl=5)
    assert redelivery.sweep_expired(db).notifications == []
    result = redelivery.sweep_expired(db, utcnow() + timedelta(seconds=6))
    assert [n["event"]["data"]["reason"] for n in result.notifications] == ["expired"]
    assert state(db, message_id)["dead"] == [("expired", "b")]
    assert mailbox.entries_after(db, "b", 0)[0].state == "dead"


def test_message_expired_before_routing_is_dead_lettered_not_delivered(db):
    for sandbox in ("a", "b"):
        registry.register(db, sandbox, "default", [], {})
    message = messages.accept(db, {
        "from_sandbox": "a", "to_sandbox": "b", "from_agent": "x", "to_agent": "any", "message_type": "request",
        "content": {}, "priority": 5, "requires_response": False, "correlation_id": None, "ttl": 1, "metadata": {},
    }, max_content_bytes=1024)
    with db.write() as session:  # as if the broker held the task for longer than the ttl
        session.get(Message, message.id).timestamp -= 10
    result = delivery.deliver(db, message.id, POLICY)
    assert result.recipients == [] and [n["event"]["data"]["reason"] for n in result.notifications()] == ["expired"]
    assert state(db, message.id) == {"entry": None, "dead": [("expired", "b")], "status": "dead"}


def test_giving_up_after_retries_dead_letters_undeliverable(db):
    for sandbox in ("a", "b"):
        registry.register(db, sandbox, "default", [], {})
    message = messages.accept(db, {
        "from_sandbox": "a", "to_sandbox": "b", "from_agent": "x", "to_agent": "any", "message_type": "command",
        "content": {}, "priority": 5, "requires_response": False, "correlation_id": None, "ttl": None, "metadata": {},
    }, max_content_bytes=1024)
    events = delivery.give_up(db, message.id, "OperationalError: disk I/O error")
    assert [e["event"]["data"]["reason"] for e in events] == ["undeliverable"]
    assert state(db, message.id)["dead"] == [("undeliverable", "b")] and state(db, message.id)["status"] == "dead"
    assert delivery.give_up(db, message.id, "again") == []
