"""A Kombu transport over NATS JetStream, the broker of `MESSAGE_BACKEND=nats` (app/brokers/nats.py).

`kombu.Connection("nats://127.0.0.1:4222")` once this module is imported (it registers the `nats` alias in
kombu.transport.TRANSPORT_ALIASES), or `transport="app.brokers.nats_transport:Transport"`; several servers in the
transport option `servers` (nats:// URLs), which the client tries in turn on each (re)connect.

What it keeps where, the durability settings and why, and what it does not do (priorities): docs/nats.md.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
import uuid
from queue import Empty

import kombu.transport
import nats.errors
import nats.js.errors
from kombu.transport import virtual

from app.brokers._nats_admin import connect
from app.brokers._nats_bindings import BindingStore
from app.brokers._nats_dead_letters import DeadLetters
from app.brokers._nats_fetch import QueueFetcher
from app.brokers._nats_loop import name_token, process_loop, stream_name
from app.brokers._nats_queues import QueueStreams

DEFAULT_PORT = 4222
BINDINGS_FRESH = 2.0  # seconds a process routes by the bindings it read (a queue bound since is found on a miss)
log = logging.getLogger(__name__)


class QoS(virtual.QoS):
    """Acks and rejects go to JetStream (ack / nak) for the NATS message behind the delivery tag."""

    def ack(self, delivery_tag):
        self.channel._settle(delivery_tag, "ack")
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        self.channel._settle(delivery_tag, "nak" if requeue else "ack")
        self._quick_ack(delivery_tag)


class Channel(QueueStreams, virtual.Channel):
    QoS = QoS
    supports_fanout = True
    do_restore = True

    #: transport options read into attributes (kombu's virtual.Channel reads `from_transport_options`)
    prefix = "kombu"
    visibility_timeout = 3600.0
    storage = "file"
    replicas = 1
    fetch_timeout = 0.1
    fetch_ahead = 4
    max_deliveries = 20
    operation_timeout = 10.0
    from_transport_options = virtual.Channel.from_transport_options + (
        "prefix", "visibility_timeout", "storage", "replicas", "fetch_timeout", "fetch_ahead", "max_deliveries",
        "operation_timeout")

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self._inflight = {}  # delivery tag -> nats Msg
        self._subs = {}  # queue -> pull subscription (basic_get)
        self._fetchers = {}  # queue -> QueueFetcher (consumed queues)
        self._fanout_buffers = {}  # queue -> deque of payloads
        self._fanout_subs = {}  # (exchange, queue) -> core subscription
        self._declared = set()  # queues declared on this channel
        self._auto_delete = set()  # of those, the ones deleted when this channel stops consuming them
        self._lock = threading.Lock()

    @property
    def _nats(self) -> Transport:
        if self.connection is None:  # Kombu closed this channel (a lost server): a connection error, not a crash
            raise nats.errors.ConnectionClosedError
        return self.connection

    def _run(self, coro, timeout=None):
        if self.connection is None:  # the channel was closed
            coro.close()
            raise nats.errors.ConnectionClosedError
        return self._nats.run(coro, timeout or self.operation_timeout)

    def _connected(self) -> bool:
        return self.connection is not None and self._nats.is_open()

    def _check_connected(self) -> None:
        if not self._connected():
            raise nats.errors.ConnectionClosedError

    def _stream(self, queue):
        return stream_name(self.prefix, queue)

    def _subject(self, queue):
        return f"{self.prefix}.q.{name_token(queue)}"

    def _fanout_subject(self, exchange):
        return f"{self.prefix}.fanout.{name_token(exchange)}"

    def _put(self, queue, message, **kwargs):
        self._ensure_stream(queue)
        body = json.dumps(message).encode()
        try:
            self._run(self._nats.js.publish(self._subject(queue), body))
        except nats.js.errors.NoStreamResponseError:  # the stream is gone (deleted, or its server's store lost)
            self._nats.known_queues.discard(queue)
            self._ensure_stream(queue)
            self._run(self._nats.js.publish(self._subject(queue), body))

    def _put_fanout(self, exchange, message, routing_key, **kwargs):
        """Core NATS, at most once: the client's flusher writes it within moments (no flush round trip per message
        on the notifiers' path; a lost connection raises here)."""
        self._run(self._nats.nc.publish(self._fanout_subject(exchange), json.dumps(message).encode()))

    def _get(self, queue, timeout=None):
        self._check_connected()
        buffer = self._fanout_buffers.get(queue)
        if buffer is not None:
            try:
                return buffer.popleft()
            except IndexError:
                raise Empty() from None
        fetcher = self._fetchers.get(queue)
        msg = fetcher.take() if fetcher is not None else self._fetch_now(queue)
        if msg is None:
            raise Empty()
        payload = json.loads(msg.data)
        tag = str(uuid.uuid4())  # one tag per delivery (a redelivered message keeps its publish-time tag)
        payload["properties"]["delivery_tag"] = tag
        redelivered = bool(msg.metadata.num_delivered and msg.metadata.num_delivered > 1)
        payload["redelivered"] = redelivered
        payload["properties"].setdefault("delivery_info", {})["redelivered"] = redelivered  # as AMQP (Celery reads it)
        with self._lock:
            self._inflight[tag] = msg
        return payload

    def _fetch_now(self, queue):
        """One message of a queue not consumed here (basic_get), fetched now; None when none is ready."""
        sub = self._subs.get(queue)
        if sub is None:
            self._ensure_stream(queue)
            stream = self._stream(queue)
            sub = self._subs[queue] = self._run(self._nats.js.pull_subscribe_bind(consumer=stream, stream=stream))
        try:
            return self._run(sub.fetch(1, timeout=self.fetch_timeout), self.fetch_timeout + self.operation_timeout)[0]
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            # nothing ready; or (503, no responders) the consumer's leader is being elected on a cluster: poll again
            self._check_connected()
            return None

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        """Consume `queue`: its messages are pulled in the background (_nats_fetch.QueueFetcher)."""
        super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if queue not in self._fanout_buffers and queue not in self._fetchers:
            self._ensure_stream(queue)
            dead_letters = DeadLetters(self._nats.js, self.prefix, self.storage, int(self.replicas))
            self._fetchers[queue] = QueueFetcher(self._nats.js, self._stream(queue), self._nats.loop.loop,
                                                 self._nats.wake, int(self.fetch_ahead), dead_letters.on_advisory)

    def _settle(self, delivery_tag, how):
        with self._lock:
            msg = self._inflight.pop(delivery_tag, None)
        if msg is None:  # a fanout message, or settled already
            return
        self._run(getattr(msg, how)())
        self._nats.wake.set()  # room under the prefetch limit: messages held back may be delivered now

    def _restore(self, message):
        """Unacked at close/recover, or rejected with requeue: nak, so JetStream redelivers it now. Errors are
        ignored: a message never naked is redelivered after ack_wait anyway."""
        with contextlib.suppress(Exception):
            self._settle(message.delivery_tag, "nak")

    def _restore_at_beginning(self, message):
        return self._restore(message)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        if self.typeof(exchange).type == "fanout":
            key = (exchange, queue)
            if key not in self._fanout_subs:
                buffer = self._fanout_buffers.setdefault(queue, collections.deque())

                async def on_message(msg):
                    buffer.append(json.loads(msg.data))
                    self._nats.wake.set()

                self._fanout_subs[key] = self._run(self._nats.nc.subscribe(
                    self._fanout_subject(exchange), cb=on_message))
            return
        self._run(self._nats.bindings.add(exchange, (routing_key or "", pattern or "", queue)))
        self._nats.forget_bindings(exchange)

    def get_table(self, exchange):
        local = self.state.exchanges.get(exchange, {}).get("table", [])
        remote = self._nats.remote_bindings(exchange, lambda: self._run(self._nats.bindings.get(exchange)))
        table = list(local) + [tuple(b) for b in remote if tuple(b) not in set(map(tuple, local))]
        if not table and exchange not in self.state.exchanges:
            raise KeyError(exchange)
        return table

    def _lookup(self, exchange, routing_key, default=None):
        """The queues `routing_key` reaches on `exchange`; when none does by the bindings read a moment ago, by those
        the store holds now (a queue another process just bound: a control client's reply queue)."""
        queues = super()._lookup(exchange, routing_key, default)
        if not queues and exchange and self._nats.forget_bindings(exchange):
            queues = super()._lookup(exchange, routing_key, default)
        return queues

    def basic_cancel(self, consumer_tag):
        """Stop consuming; an auto-delete queue no longer consumed here is deleted (Celery's reply queues: one per
        control client, a stream each otherwise left behind)."""
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue is None or queue in self._active_queues:
            return
        fetcher, sub = self._fetchers.pop(queue, None), self._subs.pop(queue, None)
        if not self._connected():
            return
        try:
            if fetcher is not None:
                fetcher.stop()
            if sub is not None:
                self._run(sub.unsubscribe(), 2)
            if queue in self._auto_delete:
                self.queue_delete(queue)
        except Exception as exc:  # noqa: BLE001 - best effort: the consumer is cancelled either way
            log.debug("could not clean up queue %s: %s", queue, exc)

    def close(self):
        if self._connected():  # best effort: a closed client drops its subscriptions anyway
            for fetcher in self._fetchers.values():
                fetcher.stop()
            for sub in self._fanout_subs.values():
                with contextlib.suppress(Exception):
                    self._run(sub.unsubscribe(), 2)
        self._fetchers.clear()
        self._fanout_subs.clear()
        super().close()


class Transport(virtual.Transport):
    """The NATS JetStream transport: one NATS client per Kombu connection."""

    Channel = Channel
    default_port = DEFAULT_PORT
    driver_type = "nats"
    driver_name = "nats-py"
    polling_interval = 0.05  # the fetch itself waits up to fetch_timeout
    implements = virtual.Transport.implements.extend(asynchronous=False, exchange_type=frozenset(
        ["direct", "topic", "fanout"]))
    connection_errors = virtual.Transport.connection_errors + (
        nats.errors.ConnectionClosedError, nats.errors.NoServersError, nats.errors.StaleConnectionError,
        nats.errors.UnexpectedEOF, nats.errors.TimeoutError, nats.errors.ConnectionDrainingError, OSError,
        nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError)  # the last two: leader elections
    channel_errors = virtual.Transport.channel_errors + (nats.js.errors.APIError,)

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self.loop = None
        self.nc = None
        self.js = None
        self.bindings = None  # _nats_bindings.BindingStore, made on connect
        self.known_queues = set()
        self.max_ages = {}  # queue -> seconds its messages live (x-message-ttl or x-expires), None: no limit
        self._remote_bindings = {}  # exchange -> (when read, bindings other processes made)
        self.wake = threading.Event()  # set when a message arrives for a channel of this connection
        self._running = set()  # futures of operations under way on the client (cancelled when it is lost)

    def remote_bindings(self, exchange, read):
        """The bindings of `exchange` kept in the store, as `read()` returns them, read again when older than
        BINDINGS_FRESH seconds: a publish then costs one round trip, not two."""
        cached = self._remote_bindings.get(exchange)
        if cached is not None and time.monotonic() - cached[0] < BINDINGS_FRESH:
            return cached[1]
        bindings = read()
        self._remote_bindings[exchange] = (time.monotonic(), bindings)
        return bindings

    def forget_bindings(self, exchange) -> bool:
        """Drop what `remote_bindings` holds of `exchange`; whether it held anything."""
        return self._remote_bindings.pop(exchange, None) is not None

    def drain_events(self, connection, timeout=None):
        """Deliver one message ready on a channel; between empty rounds wait until one arrives (`wake`) rather than
        a fixed polling interval. socket.timeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.wake.clear()
            try:
                return self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError() from None
                self.wake.wait(min(remaining if remaining is not None else 1.0, 1.0))

    def run(self, coro, timeout):
        if self.loop is None:
            coro.close()
            raise nats.errors.ConnectionClosedError
        return self.loop.run(coro, timeout, self._running)

    async def _lost(self) -> None:
        """The client lost its server (closed: it does not reconnect): fail every operation waiting on it now,
        rather than each at its timeout (a publish waits for an acknowledgement that cannot come)."""
        for future in list(self._running):
            future.cancel()
        self.wake.set()

    def is_open(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def verify_connection(self, connection) -> bool:
        """kombu.Connection.connected asks this: False once the NATS client lost its server, so
        ensure_connection() connects again."""
        return self.is_open()

    def _servers(self):
        options = self.client.transport_options
        if options.get("servers"):
            return list(options["servers"])
        c = self.client
        auth = f"{c.userid}:{c.password}@" if c.userid else ""
        return [f"nats://{auth}{c.hostname or '127.0.0.1'}:{c.port or DEFAULT_PORT}"]

    def establish_connection(self):
        options = self.client.transport_options
        timeout = float(self.client.connect_timeout or 5)
        self.loop = process_loop()
        try:
            self.nc = self.loop.run(connect(self._servers(), timeout, self._lost, **options.get("connect_options", {})),
                                    timeout + 10)
        except BaseException:
            self.loop = None
            raise
        self.js = self.nc.jetstream(timeout=float(options.get("operation_timeout", Channel.operation_timeout)))
        self.bindings = BindingStore(self.js, f"{options.get('prefix', Channel.prefix)}-bindings",
                                     int(options.get("replicas", Channel.replicas)))
        return super().establish_connection()

    def close_connection(self, connection):
        try:
            super().close_connection(connection)
        finally:
            if self.loop is not None and self.nc is not None and not self.nc.is_closed:
                try:
                    self.loop.run(self.nc.close(), 5)
                except Exception:  # noqa: BLE001 - a lost server, a loop of the parent process (after a fork)
                    pass
            self.loop = self.nc = self.js = self.bindings = None
            # known_queues stays: the streams outlive the connection, and declaring them again on a reconnect during
            # a leader election waited out the JetStream API timeout (10 s) before the worker consumed again


def register() -> None:
    """Register the `nats` alias (kombu.Connection("nats://...")) in kombu's transport table."""
    kombu.transport.TRANSPORT_ALIASES.setdefault("nats", f"{__name__}:Transport")


register()
