"""What tasks need, built once per worker process on first use (after any fork)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from app.broker import CeleryDeliveryQueue, transport_options
from app.db import Database
from app.fanout import KombuNotifier
from app.metrics import MetricsNotifier
from app.services.events import batched
from app.services.redelivery import RedeliveryPolicy
from workers.celery_app import celery_app, settings


@dataclass
class WorkerContext:
    """The database, notifier, delivery queue and redelivery policy shared by the tasks of one worker process."""

    db: Database
    notifier: MetricsNotifier
    delivery: CeleryDeliveryQueue
    policy: RedeliveryPolicy

    def announce(self, notifications: list[dict]) -> None:
        """Publish notifications to every API process, packed into as few fanout messages as is reasonable."""
        for notification in batched(notifications):
            self.notifier.publish(notification)


_lock = threading.Lock()
_context: WorkerContext | None = None


def worker_context() -> WorkerContext:
    """This process's WorkerContext, created on first call."""
    global _context
    with _lock:
        if _context is None:
            _context = WorkerContext(
                db=Database(settings.database_url),
                notifier=MetricsNotifier(KombuNotifier(settings.broker_url, settings.fanout_exchange,
                                                       transport_options(settings), settings.broker_kind)),
                delivery=CeleryDeliveryQueue(celery_app, settings.broker_kind),
                policy=RedeliveryPolicy.from_settings(settings),
            )
        return _context
