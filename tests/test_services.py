"""app.services by plain calls on a real database (SQLite, PostgreSQL): registry, acceptance, routing, order, ACK."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.errors import Conflict, NotFound, PayloadTooLarge, UnknownMessage, UnknownSandbox
from app.models import DeadLetter, MailboxEntry, Message
from app.services import delivery, mailbox, messages, redelivery, registry

LIMIT = 256 * 1024


def make(sender="a", to="b", content=None, **extra) -> dict:
    return {"from_sandbox": sender, "to_sandbox": to, "from_agent": "agent", "to_agent": "any",
            "message_type": "notification", "content": content or {"x": 1}, "priority": 5,
            "requires_response": False, "correlation_id": None, "ttl": None, "metadata": {}, **extra}


def register(db, *ids: str, workspace: str = "default") -> None:
    for sandbox_id in ids:
        registry.register(db, sandbox_id, workspace, [], {})


def entry_count(db, message_id: str | None = None) -> int:
    query = select(func.count()).select_from(MailboxEntry)
    if message_id:
        query = query.where(MailboxEntry.message_id == message_id)
    with db.read() as session:
        return session.scalar(query)


def test_register_is_idempotent_and_updates_agents(db):
    first, created = registry.register(db, "a", "ws1", [{"name": "x", "capabilities": []}], {"k": 1})
    again, created_again = registry.register(db, "a", "ws1", [{"name": "y", "capabilities": ["c"]}], {"k": 2})
    assert (created, created_again) == (True, False)
    assert again["agents"] == [{"name": "y", "capabilities": ["c"]}] and again["metadata"] == {"k": 2}
    assert len(registry.list_sandboxes(db)) == 1


def test_register_refuses_moving_workspace(db):
    register(db, "a", workspace="ws1")
    with pytest.raises(Conflict) as err:
        registry.register(db, "a", "ws2", [], {})
    assert err.value.code == "workspace_mismatch"


def test_unregister_then_register_keeps_mailbox_sequence(db):
    register(db, "a", "b")
    message = messages.accept(db, make(), max_content_bytes=LIMIT)
    delivery.deliver(db, message.id)
    registry.unregister(db, "b")
    with pytest.raises(UnknownSandbox):
        registry.get_registered(db, "b")
    assert [s["sandbox_id"] for s in registry.list_sandboxes(db)] == ["a"]
    assert [s["sandbox_id"] for s in registry.list_sandboxes(db, include_unregistered=True)] == ["a", "b"]
    _, created = registry.register(db, "b", "other-workspace", [], {})
    assert created and mailbox.head_seq(db, "b") == 1


def test_accept_assigns_id_and_timestamp_and_refuses_unknown_recipient(db):
    register(db, "a", "b")
    message = messages.accept(db, make(), max_content_bytes=LIMIT)
    assert len(message.id) == 32 and message.timestamp > 0 and message.status == "accepted"
    with pytest.raises(UnknownSandbox):
        messages.accept(db, make(to="nobody"), max_content_bytes=LIMIT)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_accept_refuses_oversized_content_and_duplicate_ids(db):
    register(db, "a", "b")
    with pytest.raises(PayloadTooLarge):
        messages.accept(db, make(content={"blob": "x" * 2000}), max_content_bytes=1000)
    messages.accept(db, make(message_id="m-1"), max_content_bytes=LIMIT)
    with pytest.raises(Conflict):
        messages.accept(db, make(message_id="m-1"), max_content_bytes=LIMIT)


def test_deliver_twice_makes_one_entry_per_recipient(db):
    register(db, "a", "b", "c", "d")
    message = messages.accept(db, make(to="broadcast"), max_content_bytes=LIMIT)
    first = delivery.deliver(db, message.id)
    second = delivery.deliver(db, message.id)
    assert sorted(first.new_recipients) == ["b", "c", "d"]
    assert second.new_recipients == [] and second.recipients == first.recipients
    assert entry_count(db, message.id) == 3


def test_broadcast_skips_sender_and_unregistered_sandboxes(db):
    register(db, "a", "b", "c")
    registry.unregister(db, "c")
    message = messages.accept(db, make(to="broadcast"), max_content_bytes=LIMIT)
    result = delivery.deliver(db, message.id)
    assert [sandbox for sandbox, _ in result.recipients] == ["b"]


def test_recipient_unregistered_before_delivery_is_dead_lettered(db):
    register(db, "a", "b")
    message = messages.accept(db, make(), max_content_bytes=LIMIT)
    registry.unregister(db, "b")
    result = delivery.deliver(db, message.id)
    delivery.deliver(db, message.id)
    assert [e["event"]["data"]["sandbox_id"] for e in result.dead_letter_events] == ["b"] and result.recipients == []
    report = messages.report(db, message.id)
    assert report["status"] == "dead"
    assert [d["reason"] for d in report["dead_letters"]] == ["recipient_gone"]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1
    kinds = [n["event"]["event"] for n in result.notifications() if n["kind"] == "event"]
    assert kinds == ["message.dead_lettered"]


def test_deliver_unknown_message_raises(db):
    with pytest.raises(UnknownMessage):
        delivery.deliver(db, "no-such-message")


def test_concurrent_deliveries_give_contiguous_unique_seqs(db):
    """Eight threads deliver 200 messages into one mailbox at once: seq is 1..200, one entry each."""
    register(db, "a", "b")
    ids = [messages.accept(db, make(content={"i": i}), max_content_bytes=LIMIT).id for i in range(200)]
    chunks = [ids[i::8] for i in range(8)]
    errors: list[BaseException] = []

    def work(chunk):
        try:
            for message_id in chunk:
                delivery.deliver(db, message_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = mailbox.entries_after(db, "b", 0, limit=1000)
    assert [e.seq for e in entries] == list(range(1, 201))
    assert sorted(e.message["message_id"] for e in entries) == sorted(ids)


def test_mailbox_paging_and_ack(db):
    register(db, "a", "b")
    for i in range(5):
        delivery.deliver(db, messages.accept(db, make(content={"i": i}), max_content_bytes=LIMIT).id)
    page = mailbox.page(db, "b", since=2, limit=2)
    assert [e["seq"] for e in page["entries"]] == [3, 4] and page["next_since"] == 4 and page["head_seq"] == 5
    message_id = redelivery.ack(db, "b", 3)
    report = messages.report(db, message_id)
    assert report["deliveries"][0]["state"] == "acked"
    with pytest.raises(NotFound):
        redelivery.ack(db, "b", 99)


def test_heartbeat_brings_a_sandbox_online_and_silence_takes_it_offline(db):
    from datetime import timedelta

    from app.models import utcnow

    register(db, "a")
    assert registry.get_registered(db, "a")["status"] == "offline"  # registered, not connected yet
    sandbox, events = registry.heartbeat(db, "a")
    assert sandbox["status"] == "online" and [e["event"]["event"] for e in events] == ["sandbox.online"]
    assert registry.heartbeat(db, "a")[1] == []  # already online: no event
    assert registry.sweep_silent(db, timeout=30) == []
    gone = registry.sweep_silent(db, timeout=30, now=utcnow() + timedelta(seconds=31))
    assert [e["event"]["event"] for e in gone] == ["sandbox.offline"]
    assert registry.get_registered(db, "a")["status"] == "offline"
    with pytest.raises(UnknownSandbox):
        registry.heartbeat(db, "ghost")


def test_settled_seq_is_the_end_of_the_acknowledged_or_dead_prefix(db):
    register(db, "a", "b", "c")
    for _ in range(4):
        delivery.deliver(db, messages.accept(db, make(), max_content_bytes=LIMIT).id)
    assert registry.get_registered(db, "b")["settled_seq"] == 0
    redelivery.ack(db, "b", 1)
    redelivery.ack(db, "b", 3)
    assert registry.get_registered(db, "b")["settled_seq"] == 1  # 2 is still open
    redelivery.nack(db, "b", 2, "broken")
    assert registry.get_registered(db, "b")["settled_seq"] == 3
    redelivery.ack(db, "b", 4)
    listed = {s["sandbox_id"]: s["settled_seq"] for s in registry.list_sandboxes(db)}
    assert listed == {"a": 0, "b": 4, "c": 0}
    assert registry.register(db, "b", "default", [], {})[0]["settled_seq"] == 4
