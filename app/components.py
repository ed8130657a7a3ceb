"""A process's shared parts (`Components`), made once from the Settings it is given: what the API, the worker and
the embedded bus all run on. Flask-free, so a worker builds them without loading the web application; the API's
composition (app/composition.py) adds the Flask app on top.
"""

from __future__ import annotations

import threading

from celery import Celery

from app.broker import CeleryDeliveryQueue, CeleryLifecycleQueue, make_celery
from app.config import Settings
from app.db import Database
from app.fanout import KombuNotifier
from app.metrics import MetricsNotifier
from app.runtime import ContainerRuntime
from app.runtime.docker_engine import DockerRuntime
from app.services import auth
from app.services.guards import GuardLimits
from app.services.ports import DeliveryQueue, LifecycleQueue, Notifier
from app.services.redelivery import RedeliveryPolicy


class Components:
    """The objects one process of the bus shares, made from `settings`, each once and on first use: the Celery client
    (`celery`), the database and its one engine (`db`), the delivery and lifecycle queues (`delivery`, `lifecycle`:
    Celery tasks sent by name), the notifier to every API process (`notifier`: Kombu's fanout, counted for
    /metrics), the container engine of managed sandboxes (`runtime`), the sandbox-token signing key (`jwt_secret`),
    the redelivery policy (`policy`) and the runaway guards (`guards`).

    The ports (`celery`, `db`, `delivery`, `notifier`, `lifecycle`, `runtime`) can be given to the constructor
    instead, and are then used as given (tests give recorders, an engine of their own...). Made on first use, so a
    process that forks before using them (Celery's prefork pool) makes its own in each child; made once even when
    threads ask at the same moment.
    """

    def __init__(self, settings: Settings, *, celery: Celery | None = None, db: Database | None = None,
                 delivery: DeliveryQueue | None = None, notifier: Notifier | None = None,
                 lifecycle: LifecycleQueue | None = None, runtime: ContainerRuntime | None = None):
        self.settings = settings
        given = {"celery": celery, "db": db, "delivery": delivery, "notifier": notifier, "lifecycle": lifecycle,
                 "runtime": runtime}
        self._made: dict[str, object] = {name: part for name, part in given.items() if part is not None}
        self._lock = threading.RLock()  # a part being made may ask for another (delivery needs celery)

    def _once(self, name: str, make):
        made = self._made.get(name)
        if made is None:
            with self._lock:
                made = self._made.get(name)
                if made is None:
                    made = self._made[name] = make()
        return made

    @property
    def celery(self) -> Celery:
        """The Celery app the process sends tasks with (and, in a worker, runs them on): celeryconfig.py's settings
        and the broker of `settings`."""
        return self._once("celery", lambda: make_celery(self.settings))

    @property
    def db(self) -> Database:
        """The database of DATABASE_URL: the process's one engine and connection pool."""
        return self._once("db", lambda: Database(self.settings.database_url))

    @property
    def delivery(self) -> DeliveryQueue:
        """Sends `workers.delivery.deliver` tasks at the broker's form of each message's priority."""
        return self._once("delivery", lambda: CeleryDeliveryQueue(self.celery, self.settings.broker))

    @property
    def lifecycle(self) -> LifecycleQueue:
        """Sends `workers.lifecycle.converge` tasks for managed sandboxes."""
        return self._once("lifecycle", lambda: CeleryLifecycleQueue(self.celery))

    @property
    def notifier(self) -> Notifier:
        """Publishes notifications to every API process over the broker's fanout exchange, counting them first."""
        return self._once("notifier", lambda: MetricsNotifier(KombuNotifier(self.settings.broker,
                                                                            self.settings.fanout_exchange)))

    @property
    def runtime(self) -> ContainerRuntime:
        """The container engine of managed sandboxes (DOCKER_HOST); it is reached on first use, not here."""
        return self._once("runtime", lambda: DockerRuntime(self.settings.docker_host))

    @property
    def jwt_secret(self) -> str:
        """The key sandbox tokens are signed with: AUTH_JWT_SECRET, else the one kept in DATA_DIR/jwt-secret
        (created on first use)."""
        settings = self.settings
        return self._once("jwt_secret", lambda: auth.jwt_secret(settings.auth_jwt_secret,
                                                                settings.data_dir / "jwt-secret"))

    @property
    def policy(self) -> RedeliveryPolicy:
        """How unacknowledged entries are pushed again and when they are dead-lettered."""
        return self._once("policy", lambda: RedeliveryPolicy.from_settings(self.settings))

    @property
    def guards(self) -> GuardLimits:
        """The runaway guards' limits (hop limit, pair rate, trace budget)."""
        return self._once("guards", lambda: GuardLimits.from_settings(self.settings))
