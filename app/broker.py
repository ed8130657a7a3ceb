"""The broker as the API and workers see it: a Celery client configured from Settings (and its broker, app/brokers/),
and the queues that send tasks to the workers."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from celery import Celery

from app.brokers import Broker
from app.config import Settings

log = logging.getLogger(__name__)

DELIVER_TASK = "workers.delivery.deliver"
CONVERGE_TASK = "workers.lifecycle.converge"
DELIVER_BATCH_TASK = "workers.delivery.deliver_batch"


def make_celery(settings: Settings, name: str = "collab_bus") -> Celery:
    """A Celery app with celeryconfig.py's settings and the broker of `settings` (its URL, transport options and
    whatever else its kind sets: `Broker.celery_settings`)."""
    celery = Celery(name)
    celery.config_from_object("celeryconfig")
    celery.conf.update(**settings.broker.celery_settings(), result_backend=None, **tunable_celery_settings(settings))
    return celery


IDEMPOTENCY_PURGE_EVERY = 300.0  # seconds; expired keys are harmless until purged: they are replaced on reuse


def tunable_celery_settings(settings: Settings) -> dict:
    """The Celery settings an operator turns through the environment (read, and checked, by Settings)."""
    sweeps = {"sweep-outbox": ("sweep_outbox", settings.outbox_sweep_interval),
              "sweep-unacked": ("sweep_unacked", settings.redelivery_sweep_interval),
              "sweep-expired": ("sweep_expired", settings.redelivery_sweep_interval),
              "sweep-heartbeats": ("sweep_heartbeats", settings.redelivery_sweep_interval),
              "purge-idempotency-keys": ("purge_idempotency_keys", IDEMPOTENCY_PURGE_EVERY)}
    if settings.managed_sandboxes:
        sweeps["reconcile-sandboxes"] = ("reconcile_sandboxes", settings.reconcile_interval)
    return {
        # A deliver task failing on a database error is retried this many times (backoff 1, 2, 4 ... capped at
        # 10 s, full jitter) before its message is dead-lettered `undeliverable`.
        "task_annotations": {task: {"max_retries": settings.delivery_max_retries}
                             for task in (DELIVER_TASK, DELIVER_BATCH_TASK)},
        "worker_prefetch_multiplier": settings.celery_prefetch_multiplier,
        "worker_send_task_events": settings.celery_task_events,
        "task_send_sent_event": settings.celery_task_events,
        "beat_schedule": {name: {"task": f"workers.maintenance.{task}", "schedule": every,
                                 "options": {"expires": every}} for name, (task, every) in sweeps.items()},
    }


class BrokerHealth:
    """Logs, at WARNING and once per outage, when this process cannot reach the broker for `what` and when it
    can again (with how long it was down and how many attempts failed meanwhile). Thread-safe."""

    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failures = 0

    def failed(self, exc: Exception) -> None:
        """An attempt failed on the broker; the first failure of an outage is logged."""
        with self._lock:
            self._failures += 1
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning("broker connection lost: %s failed (%s); accepted messages wait for the outbox sweep",
                    self.what, exc)

    def succeeded(self) -> None:
        """An attempt reached the broker; after an outage, that is logged."""
        if self._down_since is None:  # the usual case, without taking the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            down_for, failures = time.monotonic() - self._down_since, self._failures
            self._down_since, self._failures = None, 0
        log.warning("broker connection restored: %s works again after %.1fs (%d attempts failed meanwhile)",
                    self.what, down_for, failures)


class CeleryDeliveryQueue:
    """Enqueues deliveries as `workers.delivery.deliver` tasks, by name (the API never imports workers)."""

    def __init__(self, celery: Celery, broker: Broker):
        self.celery = celery
        self.broker = broker
        self.health = BrokerHealth("enqueueing deliveries")

    def enqueue(self, message_id: str, priority: int, expires_at: float | None = None) -> None:
        """Send the deliver task for `message_id` at the broker's form of `priority`; raise the broker's error
        when it cannot (the message stays accepted: the outbox sweep enqueues it later).

        With `expires_at` (the message's ttl) a worker discards the task once it is stale; the TTL
        sweep then dead-letters the message `expired`.
        """
        expires = datetime.fromtimestamp(expires_at, tz=UTC) if expires_at else None
        self._send(DELIVER_TASK, message_id, priority, expires)

    def enqueue_many(self, message_ids: list[str], priority: int) -> None:
        """Send one task that delivers `message_ids` in their order (at the broker's form of `priority`); raise
        the broker's error when it cannot (the outbox sweep enqueues them later)."""
        self._send(DELIVER_BATCH_TASK, message_ids, priority, None)

    def _send(self, task: str, argument, priority: int, expires: datetime | None) -> None:
        try:
            self.celery.send_task(
                task, args=[argument], queue="delivery", routing_key="delivery",
                priority=self.broker.priority(priority), expires=expires,
                retry=True, retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
            )
        except Exception as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()


class CeleryLifecycleQueue:
    """Enqueues `workers.lifecycle.converge` tasks on the `lifecycle` queue, by name."""

    def __init__(self, celery: Celery):
        self.celery = celery

    def converge(self, sandbox_id: str) -> None:
        """Send the converge task for `sandbox_id`; raise the broker's error when it cannot (the reconciler sweep
        converges the sandbox later)."""
        self.celery.send_task(CONVERGE_TASK, args=[sandbox_id], queue="lifecycle", routing_key="lifecycle",
                              retry=True, retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2})


def workers_seen(celery: Celery, broker: Broker, timeout: float = 1.0) -> dict[str, list[str]] | None:
    """The workers that answer Celery's remote control within `timeout` (as `celery inspect active_queues` sees
    them): {hostname: [queues it consumes]}. None when `broker` has no remote control (`Broker.no_remote_control`
    says why)."""
    if broker.no_remote_control:
        return None
    replies = celery.control.inspect(timeout=timeout).active_queues() or {}
    return {host: sorted(queue["name"] for queue in queues or ()) for host, queues in sorted(replies.items())}
