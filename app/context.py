"""The per-process objects the HTTP and WebSocket layers share, reachable as `bus()` inside a request (built by
app.composition)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from flask import current_app

from app import metrics
from app.config import Settings
from app.db import Database
from app.runtime import ContainerRuntime
from app.services import redelivery
from app.services.coalescing import Coalescer
from app.services.direct_delivery import DirectRouter
from app.services.directory import Directory
from app.services.guards import GuardLimits
from app.services.limits import ConcurrencyLimiter, FailureLimiter, RateLimiter
from app.services.ports import DeliveryQueue, LifecycleQueue, Notifier
from app.services.redelivery import RedeliveryPolicy
from app.services.sending import SendService
from app.ws.connections import Connections
from app.ws.hub import Hub


@dataclass
class BusContext:
    """Settings, database, delivery and lifecycle queues, notifier, container engine, socket hub, open sockets,
    redelivery policy and runaway guards of one API process, plus its security state: the sandbox-token signing key
    and rate limiters."""

    settings: Settings
    db: Database
    delivery: DeliveryQueue
    notifier: Notifier
    hub: Hub
    lifecycle: LifecycleQueue
    runtime: ContainerRuntime  # the container engine of managed sandboxes, for their logs and status
    policy: RedeliveryPolicy = field(default_factory=RedeliveryPolicy)
    guards: GuardLimits = field(default_factory=GuardLimits)
    background: list = field(default_factory=list)
    jwt_secret: str = ""
    rate_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(50.0, 100))
    auth_failures: FailureLimiter = field(default_factory=lambda: FailureLimiter(20))
    refusal_audit_times: dict = field(default_factory=dict)
    sockets: Connections = field(default_factory=Connections)
    unauthenticated_sockets: ConcurrencyLimiter = field(default_factory=lambda: ConcurrencyLimiter(10))
    celery: object = None  # the Celery client app (remote control: the workers collaboration status reports)

    @cached_property
    def directory(self) -> Directory:
        """This process's cache of sandboxes, API keys and policy rules (app.services.directory)."""
        return Directory(self.db)

    @cached_property
    def acks(self) -> Coalescer:
        """Records the ACK runs of every mailbox socket of this process, those that arrive together in one
        transaction: `acks.submit((sandbox_id, seqs))` gives each seq's message id or refusal."""
        return Coalescer(lambda runs: redelivery.ack_runs(self.db, runs, on_acked=metrics.observe_ack),
                         name="socket acks")

    @cached_property
    def sending(self) -> SendService:
        """The send service every entry (REST, batch, socket, replay) accepts messages through."""
        direct = DirectRouter(self.hub.has_mailbox_socket, self.policy, self.guards)
        return SendService(self.db, self.directory, self.delivery, self.notifier,
                           max_content_bytes=self.settings.max_content_bytes,
                           idempotency_window=self.settings.idempotency_window,
                           max_backlog=self.settings.max_delivery_backlog,
                           guards=self.guards, direct=direct if self.settings.direct_delivery else None)


def bus() -> BusContext:
    """The BusContext of the current Flask app."""
    return current_app.extensions["bus"]
