"""The Collaboration Bus server: `create_app(settings)` builds the Flask app (REST + WebSockets)."""

from __future__ import annotations

from app.green import patch_for_api_command

patch_for_api_command()  # first: `collab-bus api` on gevent patches before Flask imports ssl (app/green.py)

import logging  # noqa: E402

from flask import Flask, jsonify, redirect, request  # noqa: E402

from app.config import BODY_OVERHEAD_BYTES, Settings  # noqa: E402

log = logging.getLogger(__name__)



def create_app(settings: Settings | None = None, *, celery=None, start_listener: bool = True) -> Flask:
    """Build the bus's Flask app from `settings` (default: the environment).

    `celery` is the Celery app used to enqueue deliveries (default: a client for the configured
    broker); `start_listener` starts this process's fanout listener that feeds the WebSockets.
    """
    import importlib

    from prometheus_client import CollectorRegistry

    from app.api import BLUEPRINT_MODULES
    from app.api.errors import register_error_handlers
    from app.auth import authenticate_request, release_unauthenticated_socket
    from app.broker import CeleryDeliveryQueue, CeleryLifecycleQueue, make_celery
    from app.context import BusContext
    from app.db import Database
    from app.fanout import FanoutListener, KombuNotifier
    from app.metrics import OPEN_WEBSOCKETS, GaugeCollector, MetricsNotifier, exposition
    from app.services import auth
    from app.services.limits import ConcurrencyLimiter, FailureLimiter, RateLimiter
    from app.services.redelivery import RedeliveryPolicy
    from app.ui import bp as ui_bp
    from app.ws import logs as _logs_socket  # noqa: F401  (registers /ws/sandboxes/<id>/logs on `sock`)
    from app.ws.compression import set_permessage_deflate
    from app.ws.connections import Connections
    from app.ws.hub import Hub
    from app.ws.routes import sock

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_bytes + BODY_OVERHEAD_BYTES
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.ws_frame_limit}
    set_permessage_deflate(settings.ws_permessage_deflate)
    app.json.sort_keys = False
    if settings.trusted_proxies:  # the client address is the one the nearest trusted proxy saw
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)

    celery = celery or make_celery(settings)
    broker = settings.broker
    ctx = BusContext(
        settings=settings,
        db=Database(settings.database_url),
        delivery=CeleryDeliveryQueue(celery, broker),
        notifier=MetricsNotifier(KombuNotifier(broker, settings.fanout_exchange)),
        hub=Hub(on_change=OPEN_WEBSOCKETS.inc, event_log=broker.event_log()),
        lifecycle=CeleryLifecycleQueue(celery),
        policy=RedeliveryPolicy.from_settings(settings),
        jwt_secret=auth.jwt_secret(settings.auth_jwt_secret, settings.data_dir / "jwt-secret"),
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        auth_failures=FailureLimiter(settings.auth_failure_limit),
        sockets=Connections(settings.ws_ping_interval),
        unauthenticated_sockets=ConcurrencyLimiter(settings.max_unauthenticated_sockets_per_address),
        celery=celery,
    )
    if not settings.auth_enabled:
        log.warning("AUTH_ENABLED=false: EVERY CALLER IS AN ADMIN. Use this for local trials only, never on a network.")
    app.extensions["bus"] = ctx
    if start_listener:
        listener = FanoutListener(broker, settings.fanout_exchange, ctx.hub.dispatch, on_subscribed=ctx.hub.resync)
        listener.start()
        ctx.background.append(listener)

    app.before_request(authenticate_request)
    app.teardown_request(release_unauthenticated_socket)
    for module in BLUEPRINT_MODULES:
        app.register_blueprint(importlib.import_module(f"app.api.{module}").bp)
    app.register_blueprint(ui_bp)
    sock.init_app(app)
    register_error_handlers(app)

    @app.get("/")
    def home():
        """The bus's address, as a person types it: a redirect (302) to the web GUI."""
        return redirect(f"{request.script_root}/ui/")

    @app.get("/healthz")
    def healthz():
        """The process is alive and serving."""
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        """Ready to serve: the database and the broker answer (503 naming what does not)."""
        checks = _readiness(ctx)
        if all(result == "ok" for result in checks.values()):
            return jsonify({"status": "ready", "checks": checks})
        failed = [name for name, result in checks.items() if result != "ok"]
        body = {"error": {"code": "not_ready", "message": f"{' and '.join(failed)} unreachable", "details": checks}}
        return jsonify(body), 503, {"Retry-After": "5"}

    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(GaugeCollector(lambda: _gauges(ctx)))

    @app.get("/metrics")
    def prometheus_metrics():
        """The bus's metrics in Prometheus text format (open, like /healthz)."""
        body, content_type = exposition(gauges)
        return body, 200, {"Content-Type": content_type}

    return app


def _readiness(ctx) -> dict[str, str]:
    """"ok", or what went wrong, for the database and the broker."""
    from sqlalchemy import text

    checks = {}
    try:
        with ctx.db.read() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        ctx.settings.broker.reachable()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if ctx.settings.managed_sandboxes:
        try:
            ctx.runtime.ping()
            checks["container_engine"] = "ok"
        except Exception as exc:
            checks["container_engine"] = f"{ctx.runtime.describe()}: {str(exc).splitlines()[0][:200]}"
    return checks


def _gauges(ctx) -> dict:
    """The gauges /metrics reads at scrape time: sandboxes by status, queue depths, whether the broker answered."""
    from app.services import registry

    gauges = {"collab_bus_sandboxes": ("Sandboxes by status.", registry.status_counts(ctx.db), "status")}
    try:
        depths, reached = ctx.settings.broker.queue_depths(), 1
    except Exception as exc:
        log.warning("could not read queue depths: %s", exc)
        depths, reached = {}, 0
    gauges["collab_bus_broker_up"] = ("1 when this API node reached the broker at this scrape, else 0.",
                                      {None: reached}, None)
    if depths:
        gauges["collab_bus_queue_depth"] = ("Tasks waiting in each Celery queue.", depths, "queue")
    return gauges
