"""The broker as the API and workers see it: a Celery client configured from Settings, and priority mapping."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from celery import Celery

from app.config import Settings

if TYPE_CHECKING:
    from app.redis_layout import LayoutUpgrade

log = logging.getLogger(__name__)

DELIVER_TASK = "workers.delivery.deliver"
CONVERGE_TASK = "workers.lifecycle.converge"
DELIVER_BATCH_TASK = "workers.delivery.deliver_batch"
PROTOCOL_MAX_PRIORITY = 9


def broker_priority(broker_kind: str, priority: int) -> int:
    """Map protocol priority (0-9, 9 highest) onto the broker's scale.

    Celery on Redis pops priority 0 first, so the scale is reversed there; RabbitMQ (x-max-priority)
    and the in-memory transport take higher numbers as more urgent.
    """
    priority = max(0, min(PROTOCOL_MAX_PRIORITY, int(priority)))
    if broker_kind == "redis":
        return PROTOCOL_MAX_PRIORITY - priority
    return priority


def transport_options(settings: Settings) -> dict:
    """Broker transport options: priority steps and the visibility timeout on Redis, a short poll in memory.

    Redis keeps Kombu's default key separator, so that Celery tools started with the broker URL alone (Flower,
    `celery inspect`, `celery events`) name and parse the keys as the bus does (app/redis_layout.py)."""
    if settings.broker_kind == "redis":
        return {"priority_steps": list(range(PROTOCOL_MAX_PRIORITY + 1)), "queue_order_strategy": "priority",
                **_redis_restore_options(settings.redis_visibility_timeout)}
    if settings.broker_kind == "memory":
        return {"polling_interval": 0.005}
    return {}


def _redis_restore_options(visibility_timeout: float) -> dict:
    """Kombu's Redis transport puts a task taken but never acknowledged (its worker died) back on its queue once
    it is `visibility_timeout` seconds old. It looks for such tasks every `unacked_restore_interval` x
    `unacked_restore_throttle` seconds (10 x 10 by default): keep that near a quarter of the timeout (at most
    the default), so the task of a killed worker runs again within about 1.25 x the timeout."""
    period = min(100.0, max(1.0, visibility_timeout / 4))
    interval = min(10.0, period)
    return {"visibility_timeout": visibility_timeout, "unacked_restore_interval": interval,
            "unacked_restore_throttle": max(1, round(period / interval))}


def make_celery(settings: Settings, name: str = "collab_bus") -> Celery:
    """A Celery app with celeryconfig.py's settings and the broker of `settings`."""
    celery = Celery(name)
    celery.config_from_object("celeryconfig")
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=transport_options(settings),
        result_backend=None,
        **tunable_celery_settings(settings),
    )
    if settings.broker_kind == "memory":
        # One process holds everything: no remote control or heartbeats to poll for.
        celery.conf.update(worker_enable_remote_control=False, broker_heartbeat=0)
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

    def __init__(self, celery: Celery, broker_kind: str):
        self.celery = celery
        self.broker_kind = broker_kind
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
                priority=broker_priority(self.broker_kind, priority), expires=expires,
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


BUS_QUEUES = ("delivery", "lifecycle", "maintenance")


def queue_report(settings: Settings, timeout: float = 2.0) -> dict:
    """What waits in each bus queue; `{}` for the in-memory broker. Raises the broker's error when unreachable.

    Redis: `{"queues": {queue: {"messages", "by_priority_step"}}, "unacked": n}`: Kombu keeps priority step N
    of queue Q in the list `Q\\x06\\x16N` (step 0 is plain `Q`; `redis_layout.queue_key`), and tasks taken but not
    acknowledged in `unacked`.
    RabbitMQ: `{"queues": {queue: {"messages", "consumers"} or None}}` (None: not declared yet, by a passive
    declare).
    """
    if settings.broker_kind == "redis":
        return _redis_report(settings, timeout)
    if settings.broker_kind == "rabbitmq":
        return _rabbitmq_report(settings, timeout)
    return {}


def workers_seen(celery: Celery, timeout: float = 1.0) -> dict[str, list[str]] | None:
    """The workers that answer Celery's remote control within `timeout` (as `celery inspect active_queues` sees
    them): {hostname: [queues it consumes]}. None for the in-memory broker, which has no remote control."""
    if str(celery.conf.broker_url).startswith("memory"):
        return None
    replies = celery.control.inspect(timeout=timeout).active_queues() or {}
    return {host: sorted(queue["name"] for queue in queues or ()) for host, queues in sorted(replies.items())}


def queue_depths(settings: Settings, timeout: float = 2.0) -> dict[str, int]:
    """Tasks waiting in each bus queue (all priorities together); empty for the in-memory broker."""
    queues = queue_report(settings, timeout).get("queues", {})
    return {queue: (depth or {}).get("messages", 0) for queue, depth in queues.items()}


def _redis_client(settings: Settings, timeout: float):
    import redis

    return redis.Redis.from_url(settings.broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)


def _redis_report(settings: Settings, timeout: float) -> dict:
    from app.redis_layout import queue_key

    options = transport_options(settings)
    steps, prefix = options["priority_steps"], options.get("global_keyprefix", "")
    client = _redis_client(settings, timeout)
    try:
        depths = {}
        for queue in BUS_QUEUES:
            keys = [queue_key(queue, step, prefix) for step in steps]
            with client.pipeline() as pipe:
                for key in keys:
                    pipe.llen(key)
                sizes = pipe.execute()
            depths[queue] = {"messages": sum(sizes),
                             "by_priority_step": {str(step): n for step, n in zip(steps, sizes, strict=True) if n}}
        return {"queues": depths, "unacked": client.hlen(prefix + "unacked")}
    finally:
        client.close()


def upgrade_redis_layout(settings: Settings, timeout: float = 5.0) -> LayoutUpgrade:
    """Bring the keys an earlier bus left in Redis (":" separator) to Kombu's layout: tasks still waiting under
    `delivery:3` etc. move to their current lists, binding members are rewritten; return what changed (a
    redis_layout.LayoutUpgrade). Run by `collab-bus db upgrade` on a Redis broker. Unavailable (one line) when
    Redis cannot be reached."""
    from redis.exceptions import RedisError

    from app.errors import Unavailable
    from app.redis_layout import upgrade_former_layout

    options = transport_options(settings)
    try:
        client = _redis_client(settings, timeout)
        try:
            return upgrade_former_layout(client, BUS_QUEUES, options["priority_steps"],
                                         options.get("global_keyprefix", ""))
        finally:
            client.close()
    except RedisError as exc:
        raise Unavailable(f"cannot upgrade the Redis key layout (the broker of REDIS_URL or BROKER_URL): {exc}",
                          code="broker_unavailable") from None


def _rabbitmq_report(settings: Settings, timeout: float) -> dict:
    from amqp.exceptions import NotFound
    from kombu import Connection

    depths = {}
    with Connection(settings.broker_url, connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)
        for queue in BUS_QUEUES:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue=queue, passive=True)
                depths[queue] = {"messages": declared.message_count, "consumers": declared.consumer_count}
            except NotFound:
                depths[queue] = None  # declared by the first worker or send
            finally:
                try:
                    channel.close()
                except Exception:  # a channel closed by NotFound
                    pass
    return {"queues": depths}


def broker_reachable(settings: Settings, timeout: float = 2.0) -> None:
    """Return when the broker answers; raise its connection error otherwise (the in-memory broker always does)."""
    if settings.broker_kind == "memory":
        return
    from kombu import Connection

    options = transport_options(settings)
    with Connection(settings.broker_url, connect_timeout=timeout, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
