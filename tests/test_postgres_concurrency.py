"""Concurrent delivery on a real PostgreSQL: where SQLite serialises every writer, PostgreSQL runs deliveries side
by side, held in order only by row locks. Many connections (threads, processes, two real workers) delivering into
the same mailboxes at once must give each recipient contiguous, unique seqs, one entry per message, and no
deadlock, serialization or integrity error on the way (not even one a retry would hide)."""

from __future__ import annotations

import multiprocessing
import random
import threading
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import select

from app.db import Database
from app.models import MailboxEntry, Message, MessageStatus
from app.services import delivery, messages, registry
from tests.servers import BusProcess, bus_client, wait_for

LIMIT = 256 * 1024
BACKLOG = 240  # messages the two workers drain


@pytest.fixture
def pg_url(postgres_server, postgres_template):
    """A migrated PostgreSQL database of this test's own."""
    url = postgres_server.database_url(f"conc_{uuid.uuid4().hex[:12]}")
    postgres_server.create_database(url.rsplit("/", 1)[1], template=postgres_template)
    yield url
    postgres_server.drop_database(url)


def make(sender: str, to: str, i: int, message_type: str = "notification") -> dict:
    return {"from_sandbox": sender, "to_sandbox": to, "from_agent": "agent", "to_agent": "any",
            "message_type": message_type, "content": {"i": i}, "priority": 5, "requires_response": False,
            "correlation_id": None, "ttl": None, "metadata": {}}


def mailboxes(db: Database) -> dict[str, list[tuple[int, str]]]:
    """Every mailbox: sandbox id → [(seq, message id)] in seq order."""
    with db.read() as session:
        rows = session.execute(select(MailboxEntry.sandbox_id, MailboxEntry.seq, MailboxEntry.message_id)
                               .order_by(MailboxEntry.sandbox_id, MailboxEntry.seq)).all()
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for sandbox_id, seq, message_id in rows:
        out[sandbox_id].append((seq, message_id))
    return out


def run_threads(databases: list[Database], work: list[list[str]]) -> list[BaseException]:
    """Deliver each list of `work` in a thread of its own, thread i on databases[i % len]; return the errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def run(db: Database, chunk: list[str]) -> None:
        try:
            start.wait()
            for message_id in chunk:
                delivery.deliver(db, message_id)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(databases[i % len(databases)], chunk))
               for i, chunk in enumerate(work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a delivery thread hangs"
    return errors


def test_many_connections_delivering_to_one_recipient_give_contiguous_unique_seqs(pg_url):
    """12 threads on 4 Database objects (engines) deliver 240 messages into one mailbox at once."""
    databases = [Database(pg_url) for _ in range(4)]
    try:
        db = databases[0]
        for sandbox_id in ("a", "b"):
            registry.register(db, sandbox_id, "default", [], {})
        ids = [messages.accept(db, make("a", "b", i), max_content_bytes=LIMIT).id for i in range(240)]
        errors = run_threads(databases, [ids[i::12] for i in range(12)])
        assert not errors, errors[:3]
        box = mailboxes(db)["b"]
        assert [seq for seq, _ in box] == list(range(1, 241))
        assert sorted(message_id for _, message_id in box) == sorted(ids)
        assert registry.get_registered(db, "b")["head_seq"] == 240
    finally:
        for database in databases:
            database.dispose()


def test_duplicate_and_broadcast_deliveries_at_once_stay_exact(pg_url):
    """Every message is delivered by two threads at the same time (a task run twice), and broadcasts lock several
    mailboxes at once: still one entry per message and recipient, contiguous seqs, no deadlock."""
    databases = [Database(pg_url) for _ in range(4)]
    try:
        db = databases[0]
        sandboxes = ["a", "b", "c", "d", "e"]
        for sandbox_id in sandboxes:
            registry.register(db, sandbox_id, "default", [], {})
        rng = random.Random(7)
        ids, expected = [], defaultdict(set)
        for i in range(160):
            sender = rng.choice(sandboxes)
            if i % 4 == 0:
                message = messages.accept(db, make(sender, "broadcast", i), max_content_bytes=LIMIT)
                for recipient in sandboxes:
                    if recipient != sender:
                        expected[recipient].add(message.id)
            else:
                recipient = rng.choice([s for s in sandboxes if s != sender])
                message = messages.accept(db, make(sender, recipient, i, "request" if i % 3 else "notification"),
                                          max_content_bytes=LIMIT)
                expected[recipient].add(message.id)
            ids.append(message.id)
        work = []
        for _ in range(2):  # each message twice, the copies in different threads and in different orders
            shuffled = ids[:]
            rng.shuffle(shuffled)
            work += [shuffled[i::6] for i in range(6)]
        errors = run_threads(databases, work)
        assert not errors, errors[:3]
        boxes = mailboxes(db)
        for recipient in sandboxes:
            box = boxes.get(recipient, [])
            assert [seq for seq, _ in box] == list(range(1, len(box) + 1)), recipient
            assert sorted(message_id for _, message_id in box) == sorted(expected[recipient]), recipient
        with db.read() as session:
            statuses = set(session.scalars(select(Message.status)))
        assert statuses == {MessageStatus.DELIVERED}
    finally:
        for database in databases:
            database.dispose()


def test_simultaneous_registrations_of_one_new_id_all_succeed(pg_url):
    """Eight callers register the same new sandbox at once: one creates it, the others update it, none fails."""
    databases = [Database(pg_url) for _ in range(4)]
    try:
        for round in range(10):
            sandbox_id = f"new-{round}"
            start = threading.Barrier(8)
            results, errors = [], []

            def run(db: Database, i: int, start=start, results=results, errors=errors, sandbox_id=sandbox_id) -> None:
                try:
                    start.wait()
                    results.append(registry.register(db, sandbox_id, "default", [{"name": f"agent{i}"}], {}))
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(databases[i % 4], i)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors[:3]
            assert sorted(created for _, created in results) == [False] * 7 + [True]
            assert registry.get_registered(databases[0], sandbox_id)["head_seq"] == 0
    finally:
        for database in databases:
            database.dispose()


def _deliver_in_process(url: str, chunk: list[str], barrier) -> None:
    db = Database(url)
    try:
        barrier.wait(60)
        for message_id in chunk:
            delivery.deliver(db, message_id)
    finally:
        db.dispose()


def test_processes_delivering_to_one_recipient_give_contiguous_unique_seqs(pg_url):
    """Four processes, each with its own Database, deliver 200 messages into one mailbox (and a second one)."""
    db = Database(pg_url)
    try:
        for sandbox_id in ("a", "b", "c"):
            registry.register(db, sandbox_id, "default", [], {})
        ids = [messages.accept(db, make("a", "b" if i % 5 else "c", i), max_content_bytes=LIMIT).id
               for i in range(200)]
        db.dispose()  # no pooled connection inherited by the children
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(4)
        processes = [context.Process(target=_deliver_in_process, args=(pg_url, ids[i::4], barrier)) for i in range(4)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(120)
        assert [p.exitcode for p in processes] == [0] * 4
        boxes = mailboxes(db)
        for recipient, count in (("b", 160), ("c", 40)):
            assert [seq for seq, _ in boxes[recipient]] == list(range(1, count + 1))
        assert sorted(m for box in boxes.values() for _, m in box) == sorted(ids)
    finally:
        db.dispose()


def test_two_workers_drain_a_backlog_into_contiguous_mailboxes(postgres_server, redis_server, unique):
    """A bus on Redis and PostgreSQL builds a backlog with no worker, then two worker processes (4 each) drain it."""
    database_url = postgres_server.create_database()
    bus = BusProcess("redis", redis_url=redis_server.url, worker=False,
                     extra_env={"DATABASE_URL": database_url, "CELERY_PREFETCH_MULTIPLIER": "1"})
    try:
        sandboxes = [unique(f"s{i}") for i in range(4)]
        expected: dict[str, set[str]] = defaultdict(set)
        with bus_client(bus.url, timeout=10) as client:
            for sandbox in sandboxes:
                assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
            for i in range(BACKLOG):
                sender = sandboxes[i % 4]
                if i % 5 == 0:
                    response = client.post("/api/v1/broadcast", json={"from_sandbox": sender, "from_agent": "x",
                                                                       "content": {"i": i}})
                    recipients = [s for s in sandboxes if s != sender]
                else:
                    recipient = sandboxes[(i + 1 + i // 4) % 4]
                    recipient = recipient if recipient != sender else sandboxes[(i + 2) % 4]
                    response = client.post("/api/v1/messages", json={
                        "from_sandbox": sender, "to_sandbox": recipient, "from_agent": "agent",
                        "message_type": "notification", "content": {"i": i}})
                    recipients = [recipient]
                assert response.status_code == 202, response.text
                for recipient in recipients:
                    expected[recipient].add(response.json()["message_id"])

        db = Database(bus.database_url)
        try:
            assert mailboxes(db) == {}  # no worker yet: the whole backlog waits on the broker
            starters = [threading.Thread(target=bus.start_worker, args=(name,)) for name in ("worker", "worker2")]
            for t in starters:  # at once, so neither drains the whole backlog before the other is up
                t.start()
            for t in starters:
                t.join(60)
            assert set(bus.workers) == {"worker", "worker2"}
            total = sum(len(v) for v in expected.values())
            wait_for(lambda: sum(len(v) for v in mailboxes(db).values()) >= total, 90,
                     f"{total} mailbox entries")
            boxes = mailboxes(db)
        finally:
            db.dispose()
        for sandbox in sandboxes:
            box = boxes[sandbox]
            assert [seq for seq, _ in box] == list(range(1, len(box) + 1)), sandbox
            assert sorted(m for _, m in box) == sorted(expected[sandbox]), sandbox
        for name in ("worker", "worker2"):
            log = (bus.dir / f"{name}.log").read_text()
            assert "succeeded" in log, f"{name} did no work"  # both drained part of the backlog
            for trouble in ("deadlock", "IntegrityError", "OperationalError", "Traceback", "Retry in"):
                assert trouble not in log, f"{name}: {trouble}\n{log[-3000:]}"
    finally:
        bus.cleanup()
        postgres_server.drop_database(database_url)
