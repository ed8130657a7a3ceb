"""Live notifications between processes over a Kombu fanout exchange.

Workers (and API processes, for events) publish with `KombuNotifier`; every API process runs one
`FanoutListener` thread that hands each notification to a callback (the WebSocket hub). The exchange
carries only live news: anything missed is read back from the database by seq.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from kombu import Exchange, Queue
from kombu.pools import ProducerPool

from app.services.events import MESSAGE_DEAD_LETTERED, unbatched

if TYPE_CHECKING:
    from app.brokers import Broker
    from app.services.ports import Notifier

log = logging.getLogger(__name__)


def _exchange(name: str) -> Exchange:
    return Exchange(name, type="fanout", durable=False, auto_delete=False, delivery_mode="transient")


PUBLISH_POOL_LIMIT = 200  # producers (each with its broker connection, opened when first needed) per process
PUBLISH_WAIT = 15.0  # seconds a publisher waits for a free producer before the notification is dropped (logged)
MAX_RECONNECT_WAIT = 0.5  # seconds, at most, between the listener's attempts to reach a lost broker (0.2, 0.4, 0.5 …)

DEAD_LETTER_EXCHANGE = "collab.dead_letters"
ORIGIN = "origin"  # the key of a notification naming the API process that published it and handled it already


def dead_letter_exchange() -> Exchange:
    """The topic exchange `collab.dead_letters` that carries a record of each dead letter, routed by reason."""
    return Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True)


def dead_letter_queue(broker: Broker) -> Queue | None:
    """The queue where `broker` keeps the latest dead-letter records for broker-side tools (RabbitMQ caps one);
    None when it keeps none (tools bind their own to the exchange)."""
    return broker.dead_letter_queue(dead_letter_exchange())


class KombuNotifier:
    """Publishes notifications to the fanout exchange; failures are logged, never raised.

    Dead-letter events also go, as persistent messages routed by reason, to the topic exchange
    `collab.dead_letters`, so broker-side tools see them.
    """

    def __init__(self, broker: Broker, exchange_name: str):
        self.connection = broker.connection()
        self.event_log = broker.event_log()  # a shared one stamps each event with its id before it is published
        # Our own pool, wider than kombu's global one (10): a gevent API process publishes from hundreds of
        # greenlets at once when sockets come and go, and kombu's raised LimitExceeded after its wait.
        self._producers = ProducerPool(self.connection.Pool(limit=PUBLISH_POOL_LIMIT), limit=PUBLISH_POOL_LIMIT)
        self.exchange = _exchange(exchange_name)
        self.dead_letter_exchange = dead_letter_exchange()
        queue = dead_letter_queue(broker)
        self._dead_letter_declare = [self.dead_letter_exchange, *([queue] if queue else [])]

    def publish(self, notification: dict) -> None:
        """Send `notification` to every listening API process (best effort); a shared event log first gives the
        events it carries their ids."""
        notification = self.event_log.stamp(notification)
        self._send(notification, self.exchange, "", [self.exchange], delivery_mode="transient")
        for item in unbatched(notification):
            event = item.get("event") if item.get("kind") == "event" else None
            if event and event.get("event") == MESSAGE_DEAD_LETTERED:
                self._send(event["data"], self.dead_letter_exchange, event["data"]["reason"],
                           self._dead_letter_declare, delivery_mode="persistent")

    def _send(self, body: dict, exchange: Exchange, routing_key: str, declare: list, delivery_mode: str) -> None:
        try:
            with self._producers.acquire(block=True, timeout=PUBLISH_WAIT) as producer:
                producer.publish(
                    body, exchange=exchange, routing_key=routing_key, serializer="json", declare=declare,
                    delivery_mode=delivery_mode,
                    retry=True, retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
                )
        except Exception as exc:  # the database already holds the truth; clients catch up by seq
            log.warning("could not publish to %s: %s", exchange.name, exc)

    def close(self) -> None:
        """Release the producers and the connection."""
        self._producers.force_close_all()
        self._producers.connections.force_close_all()
        self.connection.release()


class LocalFirstNotifier:
    """The Notifier of an API process: what the process publishes reaches its own sockets at once, through its hub
    (`hub.push` to the mailboxes, `hub.stamp` giving the events their ids, `hub.announce` to the events sockets),
    even while the broker is unreachable; then every other API process over the fanout exchange (`inner`). Its own
    FanoutListener, made with the same `origin`, skips the copy that comes back."""

    def __init__(self, inner: Notifier, hub, origin: str):
        self.inner = inner
        self.hub = hub
        self.origin = origin

    def publish(self, notification: dict) -> None:
        """Hand `notification` to this process's sockets (the mailboxes' part at once, the events once stamped),
        then publish it to the others (best effort, never raises)."""
        self._locally(self.hub.push, notification)
        notification = self.hub.stamp(notification)  # a shared event log: a round trip to the broker
        self._locally(self.hub.announce, notification)
        self.inner.publish({**notification, ORIGIN: self.origin})

    @staticmethod
    def _locally(handle, notification: dict) -> None:
        try:
            handle(notification)
        except Exception:  # the sockets catch up from the database by seq, the events sockets by id
            log.exception("could not hand a %s notification to this process's sockets", notification.get("kind"))

    def close(self) -> None:
        """Close the wrapped notifier."""
        close = getattr(self.inner, "close", None)
        if close:
            close()


class FanoutListener(threading.Thread):
    """A daemon thread that consumes the fanout exchange and calls `handler(notification)` for each one.

    It reconnects after broker failures (with a capped back-off) until `stop()` is called. Notifications
    published while it was not subscribed are lost, so after each (re)subscription it calls `on_subscribed()`
    (the hub then has open sockets read what they missed from the database).
    """

    def __init__(self, broker: Broker, exchange_name: str, handler: Callable[[dict], None],
                 on_subscribed: Callable[[], None] | None = None, origin: str | None = None):
        super().__init__(name="fanout-listener", daemon=True)
        self.broker = broker
        self.exchange = _exchange(exchange_name)
        self.handler = handler
        self.on_subscribed = on_subscribed
        self.origin = origin  # notifications published with this origin were handled already (LocalFirstNotifier)
        self.queue_name = f"{exchange_name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.ready = threading.Event()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask the thread to finish; it exits within about a second."""
        self._stopping.set()

    def run(self) -> None:
        """Consume until stopped, reconnecting on errors (the back-off grows only while connecting fails)."""
        self._backoff = 0.2
        self._lost_at: float | None = None
        while not self._stopping.is_set():
            try:
                self._consume()
            except Exception as exc:
                self.ready.clear()
                first = self._lost_at is None
                self._lost_at = self._lost_at or time.monotonic()
                log.log(logging.WARNING if first else logging.DEBUG,
                        "fanout listener lost the broker (%s); retrying every %.1fs at most", exc, MAX_RECONNECT_WAIT)
                self._stopping.wait(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_RECONNECT_WAIT)

    def _consume(self) -> None:
        queue = Queue(self.queue_name, self.exchange, routing_key="", exclusive=True, auto_delete=True, durable=False)
        with self.broker.connection() as conn:
            with conn.Consumer(queue, callbacks=[self._on_message], accept=["json"], no_ack=True):
                self.ready.set()
                self._backoff = 0.2
                log.info("fanout listener bound %s to exchange %s", self.queue_name, self.exchange.name)
                if self._lost_at is not None:
                    log.warning("fanout listener reconnected to the broker after %.1fs; open sockets catch up from "
                                "the database", time.monotonic() - self._lost_at)
                    self._lost_at = None
                caught_up = False
                while not self._stopping.is_set():
                    try:
                        conn.drain_events(timeout=1.0)
                    except TimeoutError:
                        conn.heartbeat_check()
                    if not caught_up:  # the first poll subscribed (Redis subscribes there): catch up once
                        caught_up = True
                        self._subscribed()

    def _subscribed(self) -> None:
        if self.on_subscribed is not None:
            try:
                self.on_subscribed()
            except Exception:
                log.exception("fanout listener: on_subscribed failed")

    def _on_message(self, body, message) -> None:
        if self.origin is not None and isinstance(body, dict) and body.get(ORIGIN) == self.origin:
            return
        try:
            self.handler(body)
        except Exception:
            kind = body.get("kind") if isinstance(body, dict) else "?"
            log.exception("fanout handler failed on a %s notification", kind)
