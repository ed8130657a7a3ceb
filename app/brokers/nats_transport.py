"""A Kombu transport over NATS JetStream (issue 26, first step: not wired into the bus yet).

Use it with `kombu.Connection("nats://127.0.0.1:4222")` once this module is imported (importing it registers the
`nats` alias in kombu.transport.TRANSPORT_ALIASES, the table kombu.transport.resolve_transport reads), or without
the alias with `kombu.Connection("nats://127.0.0.1:4222", transport="app.brokers.nats_transport:Transport")`
(resolve_transport's documented "fully qualified path to a transport class"). For several servers, give kombu's
failover form `nats://a:4222;nats://b:4222`, or the transport option `servers` (a list of nats:// URLs) which the
client tries in turn on each (re)connect.

Design
- One JetStream stream per Kombu queue, `<prefix>-<queue token>` (`name_token`: names with `.` etc. are mapped and
  hashed), on the subject `<prefix>.q.<queue token>`, retention WORK_QUEUE: a message is removed once acknowledged.
- One durable pull consumer per queue, shared by every Kombu consumer of the queue (work-queue semantics: each
  message goes to one of them), ack policy EXPLICIT, ack_wait = the transport option `visibility_timeout` (s),
  unlimited redeliveries (a dead-letter path, max_deliver + an advisory, is a later step).
- `_get` fetches one message; the Kombu delivery tag maps to that NATS message. `basic_ack` acks it (so Celery's
  acks_late holds: a worker dying before its ack has the message redelivered after ack_wait);
  `basic_reject(requeue=True)`, `basic_recover` and a channel closing with unacked messages nak them (redelivered
  at once); `basic_reject(requeue=False)` acks (drops) it.
- Exchanges: direct/topic bindings are kept in the JetStream key-value bucket `<prefix>-bindings` so a producer
  routes to queues another process bound; fanout exchanges (Celery broadcast, remote control) publish on the core
  NATS subject `<prefix>.fanout.<exchange token>`, which every bound queue's channel subscribes to and buffers
  (at-most-once, as AMQP fanout to a non-durable queue is in practice).
- Priorities are not supported (a message's priority is ignored: FIFO per queue).
- Not yet: a queue's auto_delete/x-expires (its stream stays until queue_delete; Celery's pidbox and reply queues
  each get one, named per worker host / per control client), and a dead-letter path.
- nats-py is asyncio and Kombu synchronous: each Kombu connection (Transport) runs one event loop in a daemon
  thread (_nats_loop.LoopThread) and calls into it with run_coroutine_threadsafe and a timeout.
- The NATS client does not reconnect by itself (allow_reconnect=False): a lost server closes the client and the
  next operation raises ConnectionClosedError, one of `connection_errors`, so Kombu/Celery reconnect (and go on to
  the next failover URL); a JetStream API timeout (nats.errors.TimeoutError, an OSError) is one too.

Durability (transport options `storage`, `replicas`)
- storage=file (never memory), replicas=1 by default (a single server); set `replicas: 3` on a 3-server cluster,
  which survives losing one server.
- The publish is acknowledged by the stream leader once the message is in its log (replicated to a quorum with
  R3) -- but NOT fsynced: the server's `jetstream { sync_interval }` defaults to 2 minutes. Jepsen's analysis of
  NATS 2.12.1 (2025-12) lost acknowledged writes with that default when servers crashed together (power loss,
  kernel crash). Run the servers with `sync_interval: always` where a lost message matters (the tests do), or
  accept that window: the bus's database stays the source of truth and its outbox sweep re-sends what a NATS
  fault loses.
"""

from __future__ import annotations

import collections
import json
import threading
import uuid
from queue import Empty

import kombu.transport
import nats
import nats.errors
import nats.js.errors
from kombu.transport import virtual
from nats.js import api

from app.brokers._nats_bindings import BindingStore
from app.brokers._nats_loop import LoopThread, name_token

DEFAULT_PORT = 4222


class QoS(virtual.QoS):
    """Acks and rejects go to JetStream (ack / nak) for the NATS message behind the delivery tag."""

    def ack(self, delivery_tag):
        self.channel._settle(delivery_tag, "ack")
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        self.channel._settle(delivery_tag, "nak" if requeue else "ack")
        self._quick_ack(delivery_tag)


class Channel(virtual.Channel):
    QoS = QoS
    supports_fanout = True
    do_restore = True

    #: transport options read into attributes (kombu's virtual.Channel reads `from_transport_options`)
    prefix = "kombu"
    visibility_timeout = 3600.0
    storage = "file"
    replicas = 1
    fetch_timeout = 0.1
    operation_timeout = 10.0
    from_transport_options = virtual.Channel.from_transport_options + (
        "prefix", "visibility_timeout", "storage", "replicas", "fetch_timeout", "operation_timeout")

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self._inflight = {}  # delivery tag -> nats Msg
        self._subs = {}  # queue -> pull subscription
        self._fanout_buffers = {}  # queue -> deque of payloads
        self._fanout_subs = {}  # (exchange, queue) -> core subscription
        self._lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------------------------------------
    @property
    def _nats(self) -> Transport:
        return self.connection

    def _run(self, coro, timeout=None):
        return self._nats.run(coro, timeout or self.operation_timeout)

    def _stream(self, queue):
        return f"{self.prefix}-{name_token(queue)}"

    def _subject(self, queue):
        return f"{self.prefix}.q.{name_token(queue)}"

    def _fanout_subject(self, exchange):
        return f"{self.prefix}.fanout.{name_token(exchange)}"

    # --- queues ---------------------------------------------------------------------------------------------
    def _new_queue(self, queue, **kwargs):
        if queue in self._nats.known_queues:
            return
        js, stream = self._nats.js, self._stream(queue)

        async def declare():
            config = api.StreamConfig(
                name=stream, subjects=[self._subject(queue)], retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE if self.storage == "file" else api.StorageType.MEMORY,
                num_replicas=int(self.replicas))
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # exists with other settings: keep it as it is
                pass
            await js.add_consumer(stream, api.ConsumerConfig(
                durable_name=stream, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=float(self.visibility_timeout),
                max_deliver=-1, deliver_policy=api.DeliverPolicy.ALL, max_ack_pending=-1))

        self._run(declare())
        self._nats.known_queues.add(queue)

    def _has_queue(self, queue, **kwargs):
        try:
            self._run(self._nats.js.stream_info(self._stream(queue)))
        except nats.js.errors.NotFoundError:
            return False
        return True

    def _delete(self, queue, *args, **kwargs):
        self._nats.known_queues.discard(queue)
        self._subs.pop(queue, None)
        self._fanout_buffers.pop(queue, None)
        try:
            self._run(self._nats.js.delete_stream(self._stream(queue)))
        except nats.js.errors.NotFoundError:
            pass

    def _size(self, queue):
        """Messages ready in `queue`: not yet delivered to its consumer (unacked ones are not counted)."""
        if queue in self._fanout_buffers:
            return len(self._fanout_buffers[queue])
        stream = self._stream(queue)
        try:
            info = self._run(self._nats.js.consumer_info(stream, stream))
        except nats.js.errors.NotFoundError:
            return 0
        return info.num_pending or 0

    def _purge(self, queue):
        size = self._size(queue)
        if queue in self._fanout_buffers:
            self._fanout_buffers[queue].clear()
            return size
        try:
            self._run(self._nats.js.purge_stream(self._stream(queue)))
        except nats.js.errors.NotFoundError:
            return 0
        return size

    # --- publish and fetch ----------------------------------------------------------------------------------
    def _put(self, queue, message, **kwargs):
        self._new_queue(queue)
        self._run(self._nats.js.publish(self._subject(queue), json.dumps(message).encode()))

    def _put_fanout(self, exchange, message, routing_key, **kwargs):
        async def publish():
            await self._nats.nc.publish(self._fanout_subject(exchange), json.dumps(message).encode())
            await self._nats.nc.flush()

        self._run(publish())

    def _get(self, queue, timeout=None):
        self._nats.check_open()
        buffer = self._fanout_buffers.get(queue)
        if buffer is not None:
            try:
                return buffer.popleft()
            except IndexError:
                raise Empty() from None
        sub = self._subs.get(queue)
        if sub is None:
            self._new_queue(queue)
            stream = self._stream(queue)
            sub = self._subs[queue] = self._run(self._nats.js.pull_subscribe_bind(consumer=stream, stream=stream))
        try:
            msg = self._run(sub.fetch(1, timeout=self.fetch_timeout), self.fetch_timeout + self.operation_timeout)[0]
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            # nothing ready; or (503, no responders) the consumer's leader is being elected on a cluster: poll again
            self._nats.check_open()
            raise Empty() from None
        payload = json.loads(msg.data)
        tag = str(uuid.uuid4())  # one tag per delivery (a redelivered message keeps its publish-time tag)
        payload["properties"]["delivery_tag"] = tag
        redelivered = bool(msg.metadata.num_delivered and msg.metadata.num_delivered > 1)
        payload["redelivered"] = redelivered
        payload["properties"].setdefault("delivery_info", {})["redelivered"] = redelivered  # as AMQP (Celery reads it)
        with self._lock:
            self._inflight[tag] = msg
        return payload

    def _settle(self, delivery_tag, how):
        with self._lock:
            msg = self._inflight.pop(delivery_tag, None)
        if msg is None:  # a fanout message, or settled already
            return
        self._run(getattr(msg, how)())

    def _restore(self, message):
        """Unacked at close/recover, or rejected with requeue: nak, so JetStream redelivers it now. Errors are
        ignored: a message never naked is redelivered after ack_wait anyway."""
        try:
            self._settle(message.delivery_tag, "nak")
        except Exception:  # noqa: BLE001
            pass

    def _restore_at_beginning(self, message):
        return self._restore(message)

    # --- bindings -------------------------------------------------------------------------------------------
    def _queue_bind(self, exchange, routing_key, pattern, queue):
        if self.typeof(exchange).type == "fanout":
            key = (exchange, queue)
            if key not in self._fanout_subs:
                buffer = self._fanout_buffers.setdefault(queue, collections.deque())

                async def on_message(msg):
                    buffer.append(json.loads(msg.data))

                self._fanout_subs[key] = self._run(self._nats.nc.subscribe(
                    self._fanout_subject(exchange), cb=on_message))
            return
        self._run(self._nats.bindings.add(exchange, (routing_key or "", pattern or "", queue)))

    def get_table(self, exchange):
        local = self.state.exchanges.get(exchange, {}).get("table", [])
        remote = self._run(self._nats.bindings.get(exchange))
        table = list(local) + [tuple(b) for b in remote if tuple(b) not in set(map(tuple, local))]
        if not table and exchange not in self.state.exchanges:
            raise KeyError(exchange)
        return table

    def basic_cancel(self, consumer_tag):
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        sub = self._subs.pop(queue, None) if queue else None
        if sub is not None and self._nats.is_open():
            try:
                self._run(sub.unsubscribe(), 2)
            except Exception:  # noqa: BLE001
                pass

    def close(self):
        for sub in self._fanout_subs.values():
            if self._nats.is_open():
                try:
                    self._run(sub.unsubscribe(), 2)
                except Exception:  # noqa: BLE001
                    pass
        self._fanout_subs.clear()
        super().close()


class Transport(virtual.Transport):
    """The NATS JetStream transport: one NATS client and loop thread per Kombu connection."""

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

    def run(self, coro, timeout):
        if self.loop is None:
            coro.close()
            raise nats.errors.ConnectionClosedError
        return self.loop.run(coro, timeout)

    def is_open(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def verify_connection(self, connection) -> bool:
        """kombu.Connection.connected asks this: False once the NATS client lost its server, so
        ensure_connection() connects again."""
        return self.is_open()

    def check_open(self) -> None:
        if not self.is_open():
            raise nats.errors.ConnectionClosedError

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
        self.loop = LoopThread()
        connect_options = {"allow_reconnect": False, "connect_timeout": timeout, "max_reconnect_attempts": 0,
                           **options.get("connect_options", {})}

        async def connect():
            nc = await nats.connect(servers=self._servers(), **connect_options)
            js = nc.jetstream(timeout=float(options.get("operation_timeout", Channel.operation_timeout)))
            return nc, js

        try:
            self.nc, self.js = self.loop.run(connect(), timeout + 10)
            self.bindings = BindingStore(self.js, f"{options.get('prefix', Channel.prefix)}-bindings",
                                         int(options.get("replicas", Channel.replicas)))
        except BaseException:
            self.loop.stop()
            self.loop = None
            raise
        return super().establish_connection()

    def close_connection(self, connection):
        try:
            super().close_connection(connection)
        finally:
            if self.loop is not None:
                if self.nc is not None and not self.nc.is_closed:
                    try:
                        self.loop.run(self.nc.close(), 5)
                    except Exception:  # noqa: BLE001
                        pass
                self.loop.stop()
            self.loop = self.nc = self.js = self.bindings = None
            self.known_queues.clear()


def register() -> None:
    """Register the `nats` alias (kombu.Connection("nats://...")) in kombu's transport table."""
    kombu.transport.TRANSPORT_ALIASES.setdefault("nats", f"{__name__}:Transport")


register()
