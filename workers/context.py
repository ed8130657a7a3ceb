"""What tasks need: the WorkerContext of the Celery app running them, on the Components of their process."""

from __future__ import annotations

from functools import cached_property

from celery import Celery

from app.components import Components
from app.config import Settings
from app.db import Database
from app.models import BROADCAST
from app.runtime import ContainerRuntime
from app.services import managed
from app.services.events import batched
from app.services.guards import GuardLimits
from app.services.lifecycle import LifecycleConfig
from app.services.ports import DeliveryQueue, LifecycleQueue, Notifier
from app.services.redelivery import RedeliveryPolicy

ATTRIBUTE = "collab_bus_worker_context"  # where `celery_init_app` keeps the context on the Celery app


class WorkerContext:
    """The settings, database, notifier, delivery and lifecycle queues, redelivery policy, runaway guards and
    container runtime shared by the tasks of one worker process: those of its Components (app.composition), each
    made on first use, so a prefork child makes its own after the fork."""

    def __init__(self, components: Components):
        self.components = components
        self.settings: Settings = components.settings

    @property
    def db(self) -> Database:
        return self.components.db

    @property
    def notifier(self) -> Notifier:
        return self.components.notifier

    @property
    def delivery(self) -> DeliveryQueue:
        return self.components.delivery

    @property
    def lifecycle_queue(self) -> LifecycleQueue:
        return self.components.lifecycle

    @property
    def policy(self) -> RedeliveryPolicy:
        return self.components.policy

    @property
    def guards(self) -> GuardLimits:
        return self.components.guards

    @property
    def runtime(self) -> ContainerRuntime:
        """The container engine managed sandboxes run on (DOCKER_HOST)."""
        return self.components.runtime

    @cached_property
    def lifecycle(self) -> LifecycleConfig:
        """What lifecycle tasks need to start containers: this bus's label, address and token signing key."""
        settings = self.settings
        return LifecycleConfig(
            instance=settings.bus_instance, public_url=settings.public_url, jwt_secret=self.components.jwt_secret,
            token_ttl=settings.sandbox_token_ttl, lease_seconds=settings.lifecycle_lease_seconds,
            stop_timeout=settings.container_stop_timeout,
        )

    def wake(self, results) -> None:
        """Start the stopped managed sandboxes that just received a direct message (wake on message)."""
        if not self.settings.managed_sandboxes:
            return
        recipients = [sandbox for r in results if r.message["to_sandbox"] != BROADCAST for sandbox in r.new_recipients]
        managed.converge_later(self.lifecycle_queue, managed.wake(self.db, recipients, self.notifier.publish))

    def announce(self, notifications: list[dict]) -> None:
        """Publish notifications to every API process, packed into as few fanout messages as is reasonable."""
        for notification in batched(notifications):
            self.notifier.publish(notification)


def attach(celery: Celery, context: WorkerContext) -> None:
    """Make `context` the one the tasks `celery` runs use (workers.bootstrap.celery_init_app does)."""
    setattr(celery, ATTRIBUTE, context)


def worker_context(celery: Celery) -> WorkerContext:
    """The WorkerContext of the Celery app `celery` (a task's `self.app`); RuntimeError when no
    `celery_init_app` prepared that app to run the bus's tasks."""
    context = getattr(celery, ATTRIBUTE, None)
    if context is None:
        raise RuntimeError(f"Celery app {celery.main!r} runs the bus's tasks without workers.bootstrap.celery_init_app")
    return context
