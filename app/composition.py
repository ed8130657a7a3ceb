"""The composition root: the one place where a process of the bus is put together, from the Settings it is given.

Each process makes one `Components` from its Settings and builds what it runs on them:

- `collab-bus api`: each gunicorn worker process calls `create_app(settings)` with the Settings the command read
  (app.server's loader holds them; nothing is read from the environment again);
- `collab-bus worker` and `beat`: `workers.bootstrap.celery_init_app(Components(settings))`;
- `collab-bus up` (app.embedded): one Components for its API and its worker, so the process has one database
  engine and one notifier;
- the stock Celery tools (`celery -A workers.celery_app ...`): workers/celery_app.py, from the environment.

Nothing imports this module back: blueprints and socket handlers reach the process's objects through
`app.context.bus()`, tasks through `workers.context.worker_context(task.app)`.
"""

from __future__ import annotations

import importlib
import logging
import threading

from celery import Celery
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.api import BLUEPRINT_MODULES
from app.api.errors import register_error_handlers
from app.auth import authenticate_request, release_unauthenticated_socket
from app.broker import CeleryDeliveryQueue, CeleryLifecycleQueue, make_celery
from app.config import BODY_OVERHEAD_BYTES, Settings
from app.context import BusContext
from app.db import Database
from app.fanout import FanoutListener, KombuNotifier
from app.metrics import OPEN_WEBSOCKETS, MetricsNotifier
from app.runtime import ContainerRuntime
from app.runtime.docker_engine import DockerRuntime
from app.services import auth
from app.services.guards import GuardLimits
from app.services.limits import ConcurrencyLimiter, FailureLimiter, RateLimiter
from app.services.ports import DeliveryQueue, LifecycleQueue, Notifier
from app.services.redelivery import RedeliveryPolicy
from app.ui import bp as ui_bp
from app.ws import logs as _logs_socket  # noqa: F401  (registers /ws/sandboxes/<id>/logs on `sock`)
from app.ws.compression import set_permessage_deflate
from app.ws.connections import Connections
from app.ws.hub import Hub
from app.ws.routes import sock

log = logging.getLogger(__name__)


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


def create_app(settings: Settings | Components, *, start_listener: bool = True, **ports) -> Flask:
    """The bus's Flask app (REST, WebSockets, the web GUI, health and metrics) on `settings`.

    Given Components, the app runs on them (the embedded bus shares its worker's); given Settings, on new ones made
    from them, with `ports` (`delivery=`, `notifier=`, `lifecycle=`, `runtime=`, `db=`, `celery=`) used in place
    of the ones they would make. `start_listener` starts this process's fanout listener, which feeds the
    WebSockets with what workers and other API processes announce.
    """
    if isinstance(settings, Components):
        if ports:
            raise TypeError(f"create_app: give {', '.join(sorted(ports))} to the Components, not beside them")
        components = settings
    else:
        components = Components(settings, **ports)
    settings = components.settings
    app = Flask("app")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_bytes + BODY_OVERHEAD_BYTES
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.ws_frame_limit}
    set_permessage_deflate(settings.ws_permessage_deflate)
    app.json.sort_keys = False
    if settings.trusted_proxies:  # the client address is the one the nearest trusted proxy saw
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)

    ctx = api_context(components)
    if not settings.auth_enabled:
        log.warning("AUTH_ENABLED=false: EVERY CALLER IS AN ADMIN. Use this for local trials only, never on a network.")
    app.extensions["bus"] = ctx
    if start_listener:
        listener = FanoutListener(settings.broker, settings.fanout_exchange, ctx.hub.dispatch,
                                  on_subscribed=ctx.hub.resync)
        listener.start()
        ctx.background.append(listener)

    app.before_request(authenticate_request)
    app.teardown_request(release_unauthenticated_socket)
    for module in BLUEPRINT_MODULES:
        app.register_blueprint(importlib.import_module(f"app.api.{module}").bp)
    app.register_blueprint(ui_bp)
    sock.init_app(app)
    register_error_handlers(app)
    return app


def api_context(components: Components) -> BusContext:
    """The BusContext of an API process on `components`: their ports, and the API's own state (socket hub, open
    sockets, rate and failure limiters) sized by their settings."""
    settings = components.settings
    return BusContext(
        settings=settings,
        db=components.db,
        delivery=components.delivery,
        notifier=components.notifier,
        hub=Hub(on_change=OPEN_WEBSOCKETS.inc, event_log=settings.broker.event_log()),
        lifecycle=components.lifecycle,
        runtime=components.runtime,
        policy=components.policy,
        guards=components.guards,
        jwt_secret=components.jwt_secret,
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        auth_failures=FailureLimiter(settings.auth_failure_limit),
        sockets=Connections(settings.ws_ping_interval),
        unauthenticated_sockets=ConcurrencyLimiter(settings.max_unauthenticated_sockets_per_address),
        celery=components.celery,
    )
