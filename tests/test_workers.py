"""The Celery side against a real redis-server and a real worker process: idempotent `deliver`, priority mapping."""

from __future__ import annotations

import logging

import pytest

from app.broker import make_celery
from app.config import Settings
from tests.servers import bus_client, wait_for


def test_protocol_priority_maps_onto_each_broker():
    # Celery on Redis pops 0 first: protocol 9 (highest) must become 0.
    redis = Settings.from_env({"MESSAGE_BACKEND": "redis"}).broker
    rabbitmq = Settings.from_env({"MESSAGE_BACKEND": "rabbitmq"}).broker
    assert [redis.priority(p) for p in (0, 5, 9)] == [9, 4, 0]
    assert [rabbitmq.priority(p) for p in (0, 5, 9)] == [0, 5, 9]
    assert redis.priority(42) == 0 and redis.priority(-3) == 9


@pytest.mark.parametrize("bus", ["redis"], indirect=True)
def test_deliver_task_run_repeatedly_makes_one_entry_per_recipient(bus, client, unique):
    sender, b, c = unique("sender"), unique("b"), unique("c")
    for sandbox in (sender, b, c):
        assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
    accepted = client.post("/api/v1/broadcast", json={"from_sandbox": sender, "from_agent": "x", "content": {}})
    message_id = accepted.json()["message_id"]

    celery = make_celery(Settings.from_env({"MESSAGE_BACKEND": "redis", "REDIS_URL": bus.env["REDIS_URL"]}))
    task_ids = [celery.send_task("workers.delivery.deliver", args=[message_id], queue="delivery").id for _ in range(3)]

    worker_log = bus.dir / "worker.log"
    wait_for(lambda: all(f"deliver[{tid}] succeeded" in worker_log.read_text() for tid in task_ids), 20,
             "the worker to run the extra deliver tasks")
    report = client.get(f"/api/v1/messages/{message_id}").json()
    recipients = [d["sandbox_id"] for d in report["deliveries"]]
    mine = sorted(r for r in recipients if r in (b, c))
    assert mine == sorted([b, c]) and len(recipients) == len(set(recipients))
    assert report["status"] == "delivered"


def test_plain_celery_worker_command_delivers(redis_server, unique):
    """Operators may skip the wrapper: `celery -A workers.celery_app worker -Q delivery` is a full worker."""

    from tests.servers import BusProcess

    bus = BusProcess("redis", redis_url=redis_server.url, plain_celery_worker=True)
    try:
        with bus_client(bus.url, timeout=10) as client:
            a, b = unique("a"), unique("b")
            for sandbox in (a, b):
                client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
            sent = client.post("/api/v1/messages", json={"from_sandbox": a, "to_sandbox": b, "from_agent": "x",
                                                         "message_type": "command", "content": {"do": "it"}})
            message_id = sent.json()["message_id"]
            report = wait_for(lambda: (r := client.get(f"/api/v1/messages/{message_id}").json())["deliveries"] and r,
                              20, "delivery by the plain celery worker")
        assert [d["sandbox_id"] for d in report["deliveries"]] == [b]
        assert "deliver[" in (bus.dir / "worker.log").read_text()
    finally:
        bus.cleanup()


def test_outbox_sweep_delivers_a_message_that_was_never_enqueued(unique):
    """A message committed while the broker was unreachable is found by beat's sweep and delivered."""
    from app.db import Database
    from app.services import messages, registry
    from tests.servers import BusProcess

    bus = BusProcess("embedded", extra_env={"OUTBOX_SWEEP_INTERVAL": "0.5", "OUTBOX_SWEEP_AFTER": "0.5"})
    database = Database(bus.database_url)
    try:
        a, b = unique("a"), unique("b")
        for sandbox in (a, b):
            registry.register(database, sandbox, "default", [], {})
        stranded = messages.accept(database, {
            "from_sandbox": a, "to_sandbox": b, "from_agent": "x", "to_agent": "any", "message_type": "notification",
            "content": {"stranded": True}, "priority": 5, "requires_response": False, "correlation_id": None,
            "ttl": None, "metadata": {}}, max_content_bytes=1024)  # committed, never enqueued
        report = wait_for(lambda: (r := messages.report(database, stranded.id))["status"] == "delivered" and r, 20,
                          "the outbox sweep to deliver the stranded message")
        assert [d["sandbox_id"] for d in report["deliveries"]] == [b]
        assert "outbox sweep: re-enqueued" in (bus.dir / "up.log").read_text()
    finally:
        database.dispose()
        bus.cleanup()


@pytest.mark.parametrize("level, text, shown", [
    (logging.INFO, "Scheduler: Sending due task sweep-unacked (workers.maintenance.sweep_unacked)", False),
    (logging.INFO, "Task workers.maintenance.sweep_expired[1f] received", False),
    (logging.INFO, "Task workers.maintenance.sweep_expired[1f] succeeded in 0.02s: 0", False),
    (logging.INFO, "Task workers.maintenance.sweep_unacked[1f] succeeded in 0.02s: 3", True),
    (logging.ERROR, "Task workers.maintenance.sweep_expired[1f] raised unexpected: OperationalError()", True),
    (logging.INFO, "Task workers.delivery.deliver[1f] received", True),
])
def test_routine_sweep_lines_are_quiet_and_the_rest_is_logged(level, text, shown):
    from workers.bootstrap import QuietRoutineSweeps
    record = logging.LogRecord("celery.app.trace", level, __file__, 1, text, None, None)
    assert QuietRoutineSweeps().filter(record) is shown
