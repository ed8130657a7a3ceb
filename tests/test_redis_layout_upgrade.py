"""Upgrading from a bus that named its Redis keys with ":" (earlier versions set Kombu's separator to ":"): after
`collab-bus db upgrade` the tasks it left queued under `delivery:N` are delivered, and the binding members it wrote
break no publish. Starting an API node or a worker leaves the keys alone: the upgrade is a one-off, not every
start's."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
import redis

from app.broker import CeleryDeliveryQueue, make_celery
from app.brokers import BUS_QUEUES
from app.config import Settings
from app.db import Database
from app.redis_layout import BINDING_SETS, BINDINGS, SEP, queue_key, upgrade_former_layout
from app.services import messages
from tests.servers import BIN, REPO, BusProcess, bus_client, free_port, wait_for

STEPS = list(range(10))
UPGRADED = "Redis key layout upgraded"


def former_bus_celery(settings: Settings):
    """A Celery client configured as an earlier bus configured its own: Kombu's separator set to ":"."""
    celery = make_celery(settings, name="former_bus")
    celery.conf.broker_transport_options = {**settings.broker.transport_options(), "sep": ":"}
    return celery


def leave_former_state(redis_url: str, database: Database, sender: str, receiver: str, priorities) -> list[str]:
    """What an earlier bus leaves in Redis: its queues declared, a reply queue of `celery inspect`, and one deliver
    task per message (accepted in the database, never routed) waiting under the former list names."""
    settings = Settings.from_env({"MESSAGE_BACKEND": "redis", "REDIS_URL": redis_url})
    celery = former_bus_celery(settings)
    with celery.connection_for_write() as connection:
        for queue in celery.amqp.queues.values():
            queue.bind(connection.default_channel).declare()
    celery.control.ping(timeout=0.2)  # no worker runs: nobody answers, the reply binding stays
    queue = CeleryDeliveryQueue(celery, settings.broker)
    ids = []
    for priority in priorities:
        message = messages.accept(database, {
            "from_sandbox": sender, "to_sandbox": receiver, "from_agent": "x", "to_agent": "any",
            "message_type": "notification", "content": {"priority": priority}, "priority": priority,
            "requires_response": False, "correlation_id": None, "ttl": None, "metadata": {}},
            max_content_bytes=1024)
        queue.enqueue(message.id, priority)
        ids.append(message.id)
    celery.close()
    return ids


def former_keys(client: redis.Redis) -> list[bytes]:
    return sorted(k for q in BUS_QUEUES for k in client.keys(f"{q}:*"))


def unreadable_bindings(client: redis.Redis) -> list[bytes]:
    """Binding members Kombu (default separator) cannot parse."""
    keys = [key for sets in BINDING_SETS for key in client.keys(sets + "*")]
    return [m for key in keys for m in client.smembers(key) if SEP.encode() not in m]


@pytest.fixture
def bus_without_worker(redis_server):
    bus = BusProcess("redis", redis_url=redis_server.url, worker=False)
    yield bus
    bus.cleanup()


def db_upgrade(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "collab-bus"), "db", "upgrade"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def upgraded(bus: BusProcess) -> str:
    """What `collab-bus db upgrade` says on the bus's database and broker (it must succeed)."""
    done = db_upgrade(bus.env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tasks_queued_by_a_former_bus_are_delivered_after_db_upgrade(bus_without_worker, unique):
    bus = bus_without_worker
    url = bus.env["REDIS_URL"]
    broker = redis.Redis.from_url(url)
    database = Database(bus.database_url)
    sender, receiver = unique("sender"), unique("receiver")
    try:
        with bus_client(bus.url) as client:
            for sandbox in (sender, receiver):
                assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
        bus.stop_api()
        # The deploy: the earlier bus stopped with tasks waiting; the new API starts: it leaves them alone.
        stranded = leave_former_state(url, database, sender, receiver, [1, 5, 9])
        assert former_keys(broker) == [b"delivery:4", b"delivery:8"] and unreadable_bindings(broker)
        bus.start_api("api")
        assert former_keys(broker) == [b"delivery:4", b"delivery:8"] and unreadable_bindings(broker)
        assert UPGRADED not in (bus.dir / "api.log").read_text()
        said = upgraded(bus)
        assert f"{UPGRADED}: moved 2 task(s)" in said and former_keys(broker) == [], said
        assert unreadable_bindings(broker) == []
        with bus_client(bus.url) as client:
            sent = client.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": receiver,
                                                         "from_agent": "x", "message_type": "notification",
                                                         "content": {"after": "upgrade"}, "priority": 3})
            assert sent.status_code == 202, sent.text
            # Tasks the earlier bus queued after the upgrade (an old node stopped late): a worker's start leaves
            # them too; running `collab-bus db upgrade` again moves them.
            stranded += leave_former_state(url, database, sender, receiver, [2, 7])
            bus.start_worker()
            assert former_keys(broker) == [b"delivery:2", b"delivery:7"] and unreadable_bindings(broker)
            assert UPGRADED not in (bus.dir / "worker.log").read_text()
            assert f"{UPGRADED}: moved 2 task(s)" in upgraded(bus)
            every = [*stranded, sent.json()["message_id"]]

            def all_delivered():
                return all(client.get(f"/api/v1/messages/{m}").json()["status"] == "delivered" for m in every)

            wait_for(all_delivered, 30, "the stranded messages to be delivered (no beat: no outbox sweep)")
        assert former_keys(broker) == [] and unreadable_bindings(broker) == []
        assert "Redis key layout up to date" in upgraded(bus)  # a second upgrade finds nothing left
    finally:
        broker.close()
        database.dispose()


def test_db_upgrade_with_redis_down_says_so_in_one_line(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "redis",
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = db_upgrade(env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("collab-bus: cannot upgrade the Redis key layout"), lines
    assert done.stdout.startswith("database sqlite:///")  # the schema was upgraded first


def test_upgrade_moves_every_task_once_in_order_with_several_processes_at_once(redis_server, unique):
    prefix = unique("layout") + "/"  # Kombu's global_keyprefix: keys of this test only, in database 0 (no bus's)
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.lpush(f"{prefix}delivery:3", *[f"old-{i}" for i in range(3000)])  # Kombu LPUSHes: old-0 is oldest
        client.lpush(queue_key("delivery", 3, prefix), "new-0")  # queued by the new bus before the upgrade ran
        client.sadd(f"{prefix}{BINDINGS}delivery", "delivery::delivery", f"delivery{SEP}{SEP}delivery")
        client.sadd(f"{prefix}{BINDINGS}reply.celery.pidbox", "oid::oid.reply.celery.pidbox", "not-a-binding")
        results = []

        def upgrade():
            with redis.Redis.from_url(redis_server.url) as own:
                results.append(upgrade_former_layout(own, BUS_QUEUES, STEPS, prefix, batch=100))

        threads = [threading.Thread(target=upgrade) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 4 and sum(r.moved.get(f"{prefix}delivery:3", 0) for r in results) == 3000
        assert sum(r.bindings for r in results) == 3  # each rewritten (or dropped) once
        assert client.exists(f"{prefix}delivery:3") == 0
        popped = [client.rpop(queue_key("delivery", 3, prefix)).decode() for _ in range(3001)]  # Kombu BRPOPs
        assert popped == [*[f"old-{i}" for i in range(3000)], "new-0"]  # the older tasks first, in order
        assert client.smembers(f"{prefix}{BINDINGS}delivery") == {f"delivery{SEP}{SEP}delivery".encode()}
        assert client.smembers(f"{prefix}{BINDINGS}reply.celery.pidbox") == {
            f"oid{SEP}{SEP}oid.reply.celery.pidbox".encode()}
        assert not upgrade_former_layout(client, BUS_QUEUES, STEPS, prefix).changed  # idempotent
    finally:
        leftovers = client.keys(f"{prefix}*")
        if leftovers:
            client.delete(*leftovers)
        client.close()
