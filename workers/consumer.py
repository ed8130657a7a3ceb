"""The workers' Celery consumer: back within about half a second of the broker, and then sure that nothing the
broker lost stays undelivered.

Celery's consumer reconnects through Kombu's `Connection.ensure_connection` with Kombu's default waits (2 s, then
4, 6 … up to 30 s between rounds of attempts), and Celery has no setting for them: after a one-second broker blip
or a Sentinel failover a worker would stay idle for seconds after the broker (or the new master) answered again.
And a broker can come back without some tasks it had accepted: a Redis master killed before its replica had them,
a Redis restarted without its append-only file. Their messages wait, accepted, in the database.

celeryconfig.py names `QuickReconnectConsumer` as Celery's `worker_consumer`, so `celery -A workers.celery_app
worker` runs it too.
"""

from __future__ import annotations

import functools
import logging

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)

WAIT_OPTIONS = ("interval_start", "interval_step", "interval_max")  # Kombu's ensure_connection keywords
SWEEP_OUTBOX_TASK = "workers.maintenance.sweep_outbox"


class QuickReconnectConsumer(Consumer):
    """Celery's consumer, waiting between reconnection rounds as long as the broker's transport options say
    (app.brokers.base.RECONNECT_WAITS); once back after losing the broker, it has the outbox swept at once: every
    message accepted and not yet routed is enqueued again (deliveries are idempotent, so a task the broker kept
    only runs twice to no effect)."""

    _lost_broker = False

    def on_connection_error_after_connected(self, exc):
        """Celery's handling of a lost connection; remembers that the broker was lost."""
        self._lost_broker = True
        super().on_connection_error_after_connected(exc)

    def ensure_connected(self, conn):
        """Celery's reconnection loop with the transport options' waits; after a lost connection, an immediate
        outbox sweep."""
        waits = {name: value for name, value in conn.transport_options.items() if name in WAIT_OPTIONS}
        conn.ensure_connection = functools.partial(type(conn).ensure_connection, conn, **waits)
        connected = super().ensure_connected(conn)
        if self._lost_broker:
            self._lost_broker = False
            self._sweep_outbox_now()
        return connected

    def _sweep_outbox_now(self) -> None:
        try:
            self.app.send_task(SWEEP_OUTBOX_TASK, kwargs={"older_than": 0.0})
            log.warning("broker connection back: outbox swept at once (tasks the broker lost are enqueued again)")
        except Exception as exc:  # beat's periodic sweep does it later
            log.warning("broker connection back, but the immediate outbox sweep could not be sent: %s", exc)
