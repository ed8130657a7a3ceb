"""The composition root: the one place where a process of the bus is put together, from the Settings it is given.

Each process makes one `Components` (app/components.py: Flask-free) from its Settings and builds what it runs on
them:

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
import uuid

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.api import BLUEPRINT_MODULES
from app.api.errors import register_error_handlers
from app.auth import authenticate_request, release_unauthenticated_socket
from app.components import Components
from app.config import BODY_OVERHEAD_BYTES, Settings
from app.context import BusContext
from app.fanout import FanoutListener, LocalFirstNotifier
from app.metrics import OPEN_WEBSOCKETS
from app.services.limits import ConcurrencyLimiter, FailureLimiter, RateLimiter
from app.ui import bp as ui_bp
from app.ws import logs as _logs_socket  # noqa: F401  (registers /ws/sandboxes/<id>/logs on `sock`)
from app.ws.compression import set_permessage_deflate
from app.ws.connections import Connections
from app.ws.hub import Hub
from app.ws.routes import sock

log = logging.getLogger(__name__)


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
                                  on_subscribed=ctx.hub.resync, origin=ctx.notifier.origin)
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
    hub = Hub(on_change=OPEN_WEBSOCKETS.inc, event_log=settings.broker.event_log())
    return BusContext(
        settings=settings,
        db=components.db,
        delivery=components.delivery,
        notifier=LocalFirstNotifier(components.notifier, hub, origin=uuid.uuid4().hex),
        hub=hub,
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
