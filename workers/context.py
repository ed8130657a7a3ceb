"""What tasks need, built once per worker process on first use (after any fork)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from app.broker import CeleryDeliveryQueue, CeleryLifecycleQueue
from app.db import Database
from app.fanout import KombuNotifier
from app.metrics import MetricsNotifier
from app.models import BROADCAST
from app.runtime.docker_engine import DockerRuntime
from app.services import auth, managed
from app.services.events import batched
from app.services.guards import GuardLimits
from app.services.lifecycle import LifecycleConfig
from app.services.redelivery import RedeliveryPolicy
from workers.celery_app import celery_app, settings


@dataclass
class WorkerContext:
    """The database, notifier, delivery and lifecycle queues, redelivery policy, runaway guards and container runtime
    shared by the tasks of one worker process."""

    db: Database
    notifier: MetricsNotifier
    delivery: CeleryDeliveryQueue
    policy: RedeliveryPolicy
    lifecycle_queue: CeleryLifecycleQueue
    guards: GuardLimits

    @cached_property
    def runtime(self) -> DockerRuntime:
        """The container engine managed sandboxes run on (DOCKER_HOST)."""
        return DockerRuntime(settings.docker_host)

    @cached_property
    def lifecycle(self) -> LifecycleConfig:
        """What lifecycle tasks need to start containers: this bus's label, address and token signing key."""
        return LifecycleConfig(
            instance=settings.bus_instance, public_url=settings.public_url,
            jwt_secret=auth.jwt_secret(settings.auth_jwt_secret, settings.data_dir / "jwt-secret"),
            token_ttl=settings.sandbox_token_ttl, lease_seconds=settings.lifecycle_lease_seconds,
            stop_timeout=settings.container_stop_timeout,
        )

    def wake(self, results) -> None:
        """Start the stopped managed sandboxes that just received a direct message (wake on message)."""
        if not settings.managed_sandboxes:
            return
        recipients = [sandbox for r in results if r.message["to_sandbox"] != BROADCAST for sandbox in r.new_recipients]
        managed.converge_later(self.lifecycle_queue, managed.wake(self.db, recipients, self.notifier.publish))

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
                notifier=MetricsNotifier(KombuNotifier(settings.broker, settings.fanout_exchange)),
                delivery=CeleryDeliveryQueue(celery_app, settings.broker),
                policy=RedeliveryPolicy.from_settings(settings),
                lifecycle_queue=CeleryLifecycleQueue(celery_app),
                guards=GuardLimits.from_settings(settings),
            )
        return _context
