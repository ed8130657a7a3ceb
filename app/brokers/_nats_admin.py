"""Private helpers of app/brokers/nats.py and nats_transport.py: the declaration of a queue's stream and consumer,
and one-off questions to a NATS cluster (is JetStream there, what waits in each queue's stream), each on a
short-lived client of its own, bounded by a timeout."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import nats.js.errors
from nats.js import api

from app.brokers._nats_loop import process_loop, stream_name

T = TypeVar("T")
ELECTION_GRACE = 15.0  # seconds a stream may be without a leader before readiness fails
_leaderless_since: dict[str, float] = {}  # stream -> when this process first saw it without a leader
log = logging.getLogger(__name__)


async def declare_queue(js, stream: str, subject: str, storage: str, replicas: int, ack_wait: float,
                        max_deliveries: int, max_age: float | None = None) -> None:
    """Create the work-queue stream `stream` on `subject` (its messages removed after `max_age` seconds, if given)
    and its durable pull consumer of the same name (explicit acks, `ack_wait` seconds, at most `max_deliveries`
    deliveries of a message: the dead-letter path takes it then); either one that exists already is kept as it is."""
    config = api.StreamConfig(
        name=stream, subjects=[subject], retention=api.RetentionPolicy.WORK_QUEUE, num_replicas=replicas,
        storage=api.StorageType.FILE if storage == "file" else api.StorageType.MEMORY, max_age=max_age)
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:  # exists with other settings
        pass
    try:
        await js.add_consumer(stream, api.ConsumerConfig(
            durable_name=stream, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=max_deliveries,
            deliver_policy=api.DeliverPolicy.ALL, max_ack_pending=-1))
    except nats.js.errors.BadRequestError:  # exists with other settings
        pass


async def connect(servers: list[str], timeout: float, on_lost=None, **options) -> nats.NATS:
    """A client of the first of `servers` that answers, which does not reconnect by itself: once its server is
    lost it is closed (`on_lost` is awaited) and raises ConnectionClosedError, so its owner connects again."""
    return await nats.connect(servers=servers, connect_timeout=timeout, allow_reconnect=False,
                              max_reconnect_attempts=0, closed_cb=on_lost, disconnected_cb=on_lost,
                              error_cb=_client_error, **options)


async def _client_error(exc: Exception) -> None:
    """nats-py reports a lost server here (and logs it as an ERROR without this); its owner logs its reconnect."""
    log.info("NATS client: %s", exc or type(exc).__name__)


def _ask(servers: list[str], timeout: float, question: Callable[[nats.NATS], Awaitable[T]]) -> T:
    """Connect to one of `servers`, await `question(client)` and close, all within about `timeout` seconds."""
    async def ask():
        nc = await connect(servers, timeout)
        try:
            return await question(nc)
        finally:
            await nc.close()

    return process_loop().run(ask(), 2 * timeout + 1)


def check_streams(servers: list[str], timeout: float, streams: list[str]) -> None:
    """Return when a server answers, JetStream answers its account info (its meta group has a quorum) and each of
    `streams` that exists has had a leader within the last ELECTION_GRACE seconds; raise otherwise. The grace lets
    an election pass (NATS elects a stream's leader 4-9 s after its server crashed; the bus waits for it) without
    every node leaving the balancer's pool and its sockets being cut; a stream that lost its quorum fails."""

    async def question(nc):
        js = nc.jetstream(timeout=timeout)
        await js.account_info()
        for stream in streams:
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                continue
            if info.cluster is None or info.cluster.leader:
                _leaderless_since.pop(stream, None)
                continue
            since = _leaderless_since.setdefault(stream, time.monotonic())
            if time.monotonic() - since > ELECTION_GRACE:
                raise nats.js.errors.ServiceUnavailableError(
                    description=f"stream {stream} has had no leader for {time.monotonic() - since:.0f} s")

    _ask(servers, timeout, question)


def queue_report(servers: list[str], prefix: str, queues: tuple[str, ...], timeout: float) -> dict:
    """Per queue: the messages ready, taken but not acknowledged, redelivered, stored in all (also those given up
    on and not dead-lettered yet), and the stream's replicas and leader; None for a queue whose stream does not
    exist yet."""

    async def question(nc):
        js = nc.jetstream(timeout=timeout)
        report = {}
        for queue in queues:
            stream = stream_name(prefix, queue)
            try:
                consumer = await js.consumer_info(stream, stream)
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                report[queue] = None
                continue
            cluster = info.cluster
            report[queue] = {"messages": consumer.num_pending or 0, "unacked": consumer.num_ack_pending or 0,
                             "redelivered": consumer.num_redelivered or 0, "stored": info.state.messages,
                             "replicas": info.config.num_replicas,
                             "leader": cluster.leader if cluster else None}
        return report

    return _ask(servers, timeout, question)
