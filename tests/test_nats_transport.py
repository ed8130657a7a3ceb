"""app/brokers/nats_transport.py against a real nats-server with JetStream (tests/nats_server.py), in the style of
Kombu's transport tests: put/get, ack, redelivery after the visibility timeout, reject/requeue, purge, size,
work-queue sharing, fanout, connection errors and reconnect."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import nats
import nats.js.errors
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import OperationalError

import app.brokers.nats_transport as nats_transport
from tests.nats_server import NatsCluster, NatsServer


@pytest.fixture(scope="module")
def server():
    srv = NatsServer()
    yield srv
    srv.cleanup()


def connect(url: str, prefix: str, **options) -> Connection:
    conn = Connection(url, transport_options={"prefix": prefix, **options}, connect_timeout=3)
    conn.connect()
    return conn


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn(server, prefix):
    c = connect(server.url, prefix, visibility_timeout=1)
    yield c
    c.release()


def stream_info(url: str, stream: str):
    """The JetStream info of `stream` as the server at `url` has it, None when there is no such stream."""

    async def ask():
        nc = await nats.connect(url)
        try:
            return await nc.jetstream().stream_info(stream)
        except nats.js.errors.NotFoundError:
            return None
        finally:
            await nc.close()

    return asyncio.run(ask())


def put(queue: Queue, body) -> None:
    """Publish `body` to `queue` through the default (anonymous) exchange."""
    Producer(queue.channel).publish(body, routing_key=queue.name, serializer="json")


def get(queue: Queue, timeout: float = 3):
    """basic_get until a message comes (None after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = queue.get(no_ack=False)
        if message is not None:
            return message
    return None


def test_alias_resolves_to_this_transport(conn):
    assert isinstance(conn.transport, nats_transport.Transport)
    assert conn.transport_cls == "nats"


def test_put_get_ack_round_trip(conn):
    queue = Queue("tasks.a", Exchange("ex", type="direct"), routing_key="a")(conn.default_channel)
    queue.declare()
    Producer(conn.default_channel).publish({"n": 1}, exchange="ex", routing_key="a", serializer="json")
    message = get(queue)
    assert message.payload == {"n": 1}
    assert message.delivery_info["redelivered"] is False
    message.ack()
    assert queue.get() is None
    assert conn.default_channel._size("tasks.a") == 0


def test_bindings_are_shared_with_another_connection(server, conn, prefix):
    queue = Queue("shared", Exchange("ex2", type="direct"), routing_key="k")(conn.default_channel)
    queue.declare()
    with connect(server.url, prefix) as producer_conn:  # never declared the queue nor the exchange
        Producer(producer_conn.default_channel).publish("hi", exchange="ex2", routing_key="k", serializer="json")
    message = get(queue)
    assert message.payload == "hi"
    message.ack()


def test_unacked_message_is_redelivered_after_ack_wait(server, prefix):
    worker = connect(server.url, prefix, visibility_timeout=1)
    queue = Queue("late")(worker.default_channel)
    queue.declare()
    put(queue, "job")
    assert get(queue).payload == "job"  # taken, never acked: the worker "dies"
    worker.transport.known_queues.clear()
    worker.transport.loop.run(worker.transport.nc.close(), 5)  # no nak on the way out
    worker.release()

    other = connect(server.url, prefix, visibility_timeout=1)
    try:
        queue2 = Queue("late")(other.default_channel)
        started = time.monotonic()
        message = get(queue2, timeout=5)
        assert message is not None and message.payload == "job"
        assert message.delivery_info["redelivered"] is True
        assert time.monotonic() - started < 3
        message.ack()
        assert get(queue2, timeout=1.5) is None  # acked: not again
    finally:
        other.release()


def test_reject_requeue_redelivers_at_once(conn):
    queue = Queue("rq")(conn.default_channel)
    queue.declare()
    put(queue, "x")
    first = get(queue)
    first.reject(requeue=True)
    started = time.monotonic()
    again = get(queue, timeout=0.9)  # well before ack_wait (1 s)
    assert again is not None and again.payload == "x"
    assert time.monotonic() - started < 0.9
    again.reject(requeue=False)  # dropped
    assert get(queue, timeout=1.5) is None


def test_purge_and_size(conn):
    channel = conn.default_channel
    queue = Queue("p")(channel)
    queue.declare()
    for i in range(5):
        put(queue, i)
    assert channel._size("p") == 5
    assert queue.queue_declare(passive=True).message_count == 5
    assert queue.purge() == 5
    assert channel._size("p") == 0
    assert get(queue, timeout=0.5) is None


def test_two_consumers_share_a_queue(server, conn, prefix):
    other = connect(server.url, prefix, visibility_timeout=1)
    try:
        exchange = Exchange("work", type="direct")
        q1 = Queue("w", exchange, routing_key="w")
        producer = Producer(conn.default_channel, exchange=exchange)
        q1(conn.default_channel).declare()
        for i in range(20):
            producer.publish(i, routing_key="w", serializer="json")
        seen: list[list[int]] = [[], []]

        def make_cb(index):
            def cb(body, message):
                seen[index].append(body)
                message.ack()
            return cb

        with Consumer(conn.default_channel, [q1], callbacks=[make_cb(0)], prefetch_count=1), \
                Consumer(other.default_channel, [q1], callbacks=[make_cb(1)], prefetch_count=1):
            deadline = time.monotonic() + 15
            while len(seen[0]) + len(seen[1]) < 20 and time.monotonic() < deadline:
                for c in (conn, other):
                    try:
                        c.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
        assert sorted(seen[0] + seen[1]) == list(range(20))  # each once: no message to both
        assert seen[0] and seen[1]
    finally:
        other.release()


def test_a_message_delivered_max_deliveries_times_goes_to_the_dead_letter_stream(server, prefix):
    """A task rejected with requeue (a worker dying on it) each time is delivered `max_deliveries` times, then moved
    to `<prefix>-dead-letters` with its body and removed from its queue; the next message goes on as usual."""
    conn = connect(server.url, prefix, visibility_timeout=30, max_deliveries=3)
    try:
        queue = Queue("poison", Exchange("px", type="direct"), routing_key="p")
        producer = Producer(conn.default_channel, exchange=queue.exchange)
        queue(conn.default_channel).declare()
        producer.publish({"n": "poison"}, routing_key="p", serializer="json")
        deliveries: list = []

        def reject_poison(body, message):
            deliveries.append(body)
            message.reject(requeue=True) if body == {"n": "poison"} else message.ack()

        with Consumer(conn.default_channel, [queue], callbacks=[reject_poison], prefetch_count=1):
            deadline = time.monotonic() + 20
            while {"n": "fine"} not in deliveries and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
                if len(deliveries) == 3:
                    producer.publish({"n": "fine"}, routing_key="p", serializer="json")
                    deliveries.append("published")

            for _ in range(100):
                left = stream_info(server.url, f"{prefix}-poison").state.messages
                dead_letters = stream_info(server.url, f"{prefix}-dead-letters")
                dead = dead_letters.state.messages if dead_letters else 0
                if dead and not left:
                    break
                time.sleep(0.1)
            moved = asyncio.run(_first_message(server.url, f"{prefix}-dead-letters"))
        assert deliveries == [{"n": "poison"}] * 3 + ["published", {"n": "fine"}]
        assert (left, dead) == (0, 1)
        held = json.loads(moved.data)  # the message as Kombu put it: its body base64-encoded
        assert held["properties"]["body_encoding"] == "base64"
        assert json.loads(base64.b64decode(held["body"])) == {"n": "poison"}
        assert moved.headers["Collab-Deliveries"] == "3"
    finally:
        conn.release()


def test_queue_ttl_and_expiry_bound_what_its_stream_keeps_and_auto_delete_removes_it(server, conn, prefix):
    """Celery's event and reply queues declare a message TTL / expiry: their stream keeps messages no longer than
    that (a queue left by a killed process stays bounded); an auto-delete queue's stream goes when its consumer
    stops."""
    channel = conn.default_channel
    events = Queue("ev.rcv", Exchange("evx", type="topic"), routing_key="#", message_ttl=2.0, expires=60.0,
                   auto_delete=True)(channel)
    events.declare()
    Producer(channel).publish("e", exchange="evx", routing_key="task.sent", serializer="json")
    stream = f"{prefix}-{nats_transport.name_token('ev.rcv')}"

    assert stream_info(server.url, stream).config.max_age == 2.0
    with Consumer(channel, [events], callbacks=[lambda body, message: message.ack()]):
        conn.drain_events(timeout=3)
    assert stream_info(server.url, stream) is None  # its consumer stopped: deleted with its binding
    assert channel.get_table("evx") == []


async def _first_message(url: str, stream: str):
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().get_msg(stream, seq=1)
    finally:
        await nc.close()


def test_fanout_reaches_every_bound_queue(server, conn, prefix):
    other = connect(server.url, prefix)
    try:
        exchange = Exchange("bcast", type="fanout")
        qa = Queue("fa", exchange)(conn.default_channel)
        qb = Queue("fb", exchange)(other.default_channel)
        qa.declare()
        qb.declare()
        Producer(conn.default_channel).publish("all", exchange=exchange, serializer="json")
        assert get(qa).payload == "all"
        assert get(qb).payload == "all"
    finally:
        other.release()


def test_stopped_server_raises_a_connection_error_then_reconnects(prefix):
    srv = NatsServer()
    try:
        conn = connect(srv.url, prefix)
        queue = Queue("r")(conn.default_channel)
        queue.declare()
        put(queue, "before")
        srv.stop()
        time.sleep(0.2)
        with pytest.raises(conn.connection_errors):
            queue.get()
        srv.start()
        conn.ensure_connection(max_retries=5, interval_start=0.2)
        conn.release()
        conn = connect(srv.url, prefix)  # the store survived the restart (file storage)
        queue = Queue("r")(conn.default_channel)
        message = get(queue, timeout=5)
        assert message is not None and message.payload == "before"
        message.ack()
        put(queue, "after")
        assert get(queue).payload == "after"
        conn.release()
    finally:
        srv.cleanup()


def test_simple_queue_reconnects_through_ensure(prefix):
    """Kombu's own retry path: a publish through `ensure` after a restart reconnects and succeeds."""
    srv = NatsServer()
    try:
        conn = connect(srv.url, prefix)
        producer = Producer(conn)
        publish = conn.ensure(producer, producer.publish, max_retries=10, interval_start=0.2, interval_step=0.2)
        publish("one", routing_key="rc", serializer="json", declare=[Queue("rc")])
        srv.stop()
        srv.start()
        publish("two", routing_key="rc", serializer="json", declare=[Queue("rc")])
        with connect(srv.url, prefix) as reader:
            queue = Queue("rc")(reader.default_channel)
            bodies = []
            for _ in range(2):
                message = get(queue, timeout=5)
                bodies.append(message.payload)
                message.ack()
            assert bodies == ["one", "two"]
        conn.release()
    finally:
        srv.cleanup()


def test_celery_task_end_to_end(server, prefix):
    """A Celery app over this transport: a solo worker runs a task (acks_late), and answers a remote-control ping
    (the fanout exchange `celery.pidbox` and the reply queue)."""
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("nats-e2e", broker=server.url, backend="cache+memory://")
    app.conf.update(broker_transport_options={"prefix": prefix, "visibility_timeout": 5},
                    task_acks_late=True, broker_connection_retry_on_startup=True)

    @app.task
    def add(x, y):
        return x + y

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert add.delay(2, 3).get(timeout=15) == 5
        replies = app.control.ping(timeout=2)
        assert replies and all(next(iter(r.values())) == {"ok": "pong"} for r in replies)
    with app.connection() as conn:
        assert conn.default_channel._size("celery") == 0  # acked


def test_three_server_cluster_survives_losing_the_connected_server(prefix):
    """R3 streams on a 3-server cluster: kill the server the consumer is connected to while messages wait; the
    consumer reconnects to another (transport option `servers`) and gets every message, none lost."""
    cluster = NatsCluster()
    try:
        options = {"prefix": prefix, "servers": cluster.urls, "replicas": 3, "visibility_timeout": 2}
        deadline = time.monotonic() + 30
        while True:  # the meta leader is elected a few seconds after the servers start
            producer_conn = Connection(cluster.urls[0], transport_options=options, connect_timeout=3)
            try:
                Queue("c")(producer_conn.default_channel).declare()
                break
            except Exception:
                producer_conn.release()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for i in range(30):
            put(Queue("c")(producer_conn.default_channel), i)
        producer_conn.release()

        consumer = connect(cluster.urls[0], **options)
        received = []
        for _ in range(10):
            message = get(Queue("c")(consumer.default_channel))
            received.append(message.payload)
            message.ack()
        connected_port = consumer.transport.nc.connected_url.port
        victim = next(s for s in cluster.servers if s.port == connected_port)
        victim.kill()
        started = time.monotonic()
        while len(set(received)) < 30 and time.monotonic() - started < 30:
            try:
                message = get(Queue("c")(consumer.default_channel), timeout=1)
            except consumer.connection_errors:
                try:
                    consumer.ensure_connection(max_retries=5, interval_start=0.2, interval_step=0.2)
                except OperationalError:
                    time.sleep(0.2)
                continue
            if message is not None:
                received.append(message.payload)
                message.ack()
        print(f"stall after the kill: {time.monotonic() - started:.2f} s for the remaining 20 messages")
        assert sorted(set(received)) == list(range(30))  # 0 lost (a redelivery would show as a duplicate)
        assert consumer.transport.nc.connected_url.port != connected_port
        consumer.release()
    finally:
        cluster.cleanup()
