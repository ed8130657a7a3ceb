"""ACK, NACK, redelivery with backoff, max attempts, TTL and undeliverable, by plain calls on a real database
(SQLite and PostgreSQL).

Time is passed in (`now`), so no test sleeps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.errors import Conflict
from app.models import Message, utcnow
from app.services import delivery, mailbox, messages, redelivery, registry
from app.services.redelivery import RedeliveryPolicy

POLICY = RedeliveryPolicy(ack_timeout=10, max_attempts=3, max_backoff=25, jitter=0.2)


def message_data(**overrides) -> dict:
    """A validated AgentMessage from a to b (a request unless overridden)."""
    return {"from_sandbox": "a", "to_sandbox": "b", "from_agent": "x", "to_agent": "any", "message_type": "request",
            "content": {}, "priority": 5, "requires_response": False, "correlation_id": None, "ttl": None,
            "metadata": {}, **overrides}


def accept(db, **overrides):
    """Accept a message (see message_data) and return it."""
    return messages.accept(db, message_data(**overrides), max_content_bytes=1024)


def register_ab(db) -> None:
    for sandbox in ("a", "b"):
        registry.register(db, sandbox, "default", [], {})


def setup(db, *, message_type="request", ttl=None, online=True) -> str:
    register_ab(db)
    if online:  # as when b holds a mailbox socket
        registry.mark_status(db, "b", "online")
    message = accept(db, message_type=message_type, ttl=ttl)
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
    assert result.redeliveries == []
    assert [n["event"]["data"]["reason"] for n in result.notifications] == ["max_attempts"]
    assert state(db, message_id)["dead"] == [("max_attempts", "b")]
    assert state(db, message_id)["entry"]["state"] == "dead"
    with pytest.raises(Conflict):
        redelivery.ack(db, "b", 1)


def test_ack_stops_redelivery(db):
    setup(db)
    redelivery.ack(db, "b", 1)
    assert redelivery.sweep_unacked(db, POLICY, utcnow() + timedelta(hours=1)).all_notifications() == []


def test_notifications_need_no_ack_and_do_not_expire_once_pushed(db):
    message_id = setup(db, message_type="notification", ttl=5)
    assert state(db, message_id)["entry"]["attempts"] == 1  # pushed live: delivered
    assert redelivery.sweep_unacked(db, POLICY, utcnow() + timedelta(hours=1)).all_notifications() == []
    assert redelivery.sweep_expired(db, utcnow() + timedelta(hours=1)).notifications == []


def test_notification_for_a_recipient_never_connected_expires(db):
    message_id = setup(db, message_type="notification", ttl=5, online=False)
    assert state(db, message_id)["entry"]["attempts"] == 0
    assert len(redelivery.sweep_expired(db, utcnow() + timedelta(seconds=6)).notifications) == 1


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
    register_ab(db)
    message = accept(db, ttl=1)
    with db.write() as session:  # as if the broker held the task for longer than the ttl
        session.get(Message, message.id).timestamp -= 10
    result = delivery.deliver(db, message.id, POLICY)
    assert result.recipients == [] and [n["event"]["data"]["reason"] for n in result.notifications()] == ["expired"]
    assert state(db, message.id) == {"entry": None, "dead": [("expired", "b")], "status": "dead"}


def test_giving_up_after_retries_dead_letters_undeliverable(db):
    register_ab(db)
    message = accept(db, message_type="command")
    events = delivery.give_up(db, message.id, "OperationalError: disk I/O error")
    assert [e["event"]["data"]["reason"] for e in events] == ["undeliverable"]
    assert state(db, message.id)["dead"] == [("undeliverable", "b")] and state(db, message.id)["status"] == "dead"
    assert delivery.give_up(db, message.id, "again") == []


# ------------------------------------------------------------------------------------------- replay

from app.services import dead_letters  # noqa: E402
from app.services.dead_letters import DeadLetterFilter  # noqa: E402


def only_dead_letter(db, reason: str) -> dict:
    page = dead_letters.list_page(db, DeadLetterFilter(reason=reason))
    assert page["count"] == 1, page
    return page["dead_letters"][0]


def replay_and_route(db, dead_letter_id: int):
    outcome = dead_letters.replay(db, dead_letter_id, POLICY)
    if outcome.enqueue:  # what the worker does with the re-enqueued message
        delivery.deliver(db, outcome.enqueue[0], POLICY)
    return outcome


@pytest.mark.parametrize("reason", ["max_attempts", "nacked", "expired"])
def test_replay_of_an_entry_resets_it_in_the_mailbox(db, reason):
    message_id = setup(db, ttl=5 if reason == "expired" else None)
    later = utcnow() + timedelta(seconds=6)
    if reason == "max_attempts":
        for step in range(1, 4):
            redelivery.sweep_unacked(db, POLICY, utcnow() + timedelta(seconds=60 * step))
    elif reason == "nacked":
        redelivery.nack(db, "b", 1, "boom")
    else:
        redelivery.sweep_expired(db, later)
    dead = only_dead_letter(db, reason)
    outcome = replay_and_route(db, dead["id"])
    assert outcome.enqueue is None
    assert [(n["kind"], n.get("seq")) for n in outcome.notifications] == [("redeliver", 1), ("event", None)]
    report = messages.report(db, message_id)
    assert report["dead_letters"] == [] and report["deliveries"][0]["state"] == "delivered"
    assert redelivery.sweep_expired(db, later + timedelta(days=1)).notifications == []  # ttl cleared
    redelivery.ack(db, "b", 1)
    assert messages.report(db, message_id)["deliveries"][0]["state"] == "acked"


def test_replay_of_recipient_gone_routes_again_once_the_sandbox_is_back(db):
    register_ab(db)
    message = accept(db)
    registry.unregister(db, "b")
    delivery.deliver(db, message.id, POLICY)
    dead = only_dead_letter(db, "recipient_gone")
    registry.register(db, "b", "default", [], {})
    outcome = replay_and_route(db, dead["id"])
    assert outcome.enqueue == (message.id, 5)
    report = messages.report(db, message.id)
    assert report["status"] == "delivered" and [d["sandbox_id"] for d in report["deliveries"]] == ["b"]


@pytest.mark.parametrize("reason", ["expired", "undeliverable"])
def test_replay_of_a_message_that_never_reached_a_mailbox_delivers_it(db, reason):
    register_ab(db)
    message = accept(db, ttl=1)
    if reason == "expired":
        redelivery.sweep_expired(db, utcnow() + timedelta(seconds=2))
    else:
        delivery.give_up(db, message.id, "worker kept crashing")
    outcome = replay_and_route(db, only_dead_letter(db, reason)["id"])
    assert outcome.enqueue is not None
    report = messages.report(db, message.id)
    assert report["status"] == "delivered" and report["dead_letters"] == [] and report["message"]["ttl"] is None


def test_list_filters_pages_and_purges(db):
    for sandbox in ("a", "b", "c"):
        registry.register(db, sandbox, "default", [], {})
    for i in range(5):
        message = accept(db, to_sandbox="b" if i % 2 else "c", message_type="command", content={"i": i})
        delivery.give_up(db, message.id, f"failure {i}")
    first = dead_letters.list_page(db, DeadLetterFilter(), limit=2)
    second = dead_letters.list_page(db, DeadLetterFilter(), after=first["next_after"], limit=2)
    assert first["total"] == 5 and first["count"] == second["count"] == 2
    assert first["dead_letters"][-1]["id"] < second["dead_letters"][0]["id"]
    assert dead_letters.list_page(db, DeadLetterFilter(sandbox_id="b"))["total"] == 2
    assert dead_letters.purge(db, DeadLetterFilter(sandbox_id="c")) == 3
    assert dead_letters.list_page(db, DeadLetterFilter())["total"] == 2


# ------------------------------------------------------------------------------------ request / response

def request_from_a(db, **extra) -> str:
    register_ab(db)
    return accept(db, from_agent="planner", content={"task": "t"}, requires_response=True, **extra).id


def respond(db, correlation_id: str, to_sandbox=None) -> str:
    return accept(db, from_sandbox="b", to_sandbox=to_sandbox, from_agent="researcher", message_type="response",
                  content={"answer": 42}, correlation_id=correlation_id).id


@pytest.mark.parametrize("by", ["message_id", "correlation_id"])
def test_response_without_recipient_goes_to_the_requester_and_shows_on_the_request(db, by):
    request_id = request_from_a(db, correlation_id="conv-1" if by == "correlation_id" else None)
    assert messages.report(db, request_id)["response_state"] == "awaiting"
    response_id = respond(db, request_id if by == "message_id" else "conv-1")
    delivery.deliver(db, response_id, POLICY)
    assert messages.report(db, response_id)["message"]["to_sandbox"] == "a"
    assert [e.message["message_id"] for e in mailbox.entries_after(db, "a", 0)] == [response_id]
    report = messages.report(db, request_id)
    assert report["response_state"] == "answered" and [r["message_id"] for r in report["responses"]] == [response_id]


def test_response_to_an_unknown_request_is_refused(db):
    request_from_a(db)
    from app.errors import NotFound

    with pytest.raises(NotFound) as err:
        respond(db, "no-such-request")
    assert err.value.code == "unknown_correlation_id"


def test_request_unanswered_before_its_ttl_is_reported_once(db):
    request_id = request_from_a(db, ttl=5)
    answered_id = request_from_a(db, ttl=5)
    respond(db, answered_id)
    later = utcnow() + timedelta(seconds=6)
    events = [n for n in redelivery.sweep_expired(db, later).notifications
              if n["event"]["event"] == "request.unanswered"]
    assert [e["event"]["data"]["message_id"] for e in events] == [request_id]
    assert messages.report(db, request_id)["response_state"] == "unanswered"
    assert messages.report(db, answered_id)["response_state"] == "answered"
    again = redelivery.sweep_expired(db, later + timedelta(seconds=1)).notifications
    assert not [n for n in again if n["event"]["event"] == "request.unanswered"]
