"""The Collaboration Bus server: `create_app(settings)` builds the Flask app (REST + WebSockets)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify

from app.config import Settings

log = logging.getLogger(__name__)

BODY_OVERHEAD_BYTES = 64 * 1024  # room for the envelope around the largest allowed content
METRICS = [  # counters this process keeps in BusContext.counters
    ("auth_failures", "Failed authentications (missing, invalid, expired or revoked credentials)."),
    ("rate_limited", "Requests refused with 429 by the per-caller rate limit."),
]


def create_app(settings: Settings | None = None, *, celery=None, start_listener: bool = True) -> Flask:
    """Build the bus's Flask app from `settings` (default: the environment).

    `celery` is the Celery app used to enqueue deliveries (default: a client for the configured
    broker); `start_listener` starts this process's fanout listener that feeds the WebSockets.
    """
    from app.api import api
    from app.api.errors import register_error_handlers
    from app.auth import authenticate_request
    from app.broker import CeleryDeliveryQueue, make_celery, transport_options
    from app.context import BusContext
    from app.db import Database
    from app.fanout import FanoutListener, KombuNotifier
    from app.services import auth
    from app.services.limits import FailureLimiter, RateLimiter
    from app.services.redelivery import RedeliveryPolicy
    from app.ws.hub import Hub
    from app.ws.routes import sock

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_bytes + BODY_OVERHEAD_BYTES
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.ws_frame_limit}
    app.json.sort_keys = False

    celery = celery or make_celery(settings)
    options = transport_options(settings)
    ctx = BusContext(
        settings=settings,
        db=Database(settings.database_url),
        delivery=CeleryDeliveryQueue(celery, settings.broker_kind),
        notifier=KombuNotifier(settings.broker_url, settings.fanout_exchange, options, settings.broker_kind),
        hub=Hub(),
        policy=RedeliveryPolicy.from_settings(settings),
        jwt_secret=auth.jwt_secret(settings.auth_jwt_secret, settings.data_dir / "jwt-secret"),
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        auth_failures=FailureLimiter(settings.auth_failure_limit),
    )
    if not settings.auth_enabled:
        log.warning("AUTH_ENABLED=false: EVERY CALLER IS AN ADMIN. Use this for local trials only, never on a network.")
    app.extensions["bus"] = ctx
    if start_listener:
        listener = FanoutListener(settings.broker_url, settings.fanout_exchange, ctx.hub.dispatch, options,
                                  on_subscribed=ctx.hub.resync)
        listener.start()
        ctx.background.append(listener)

    app.before_request(authenticate_request)
    app.register_blueprint(api)
    sock.init_app(app)
    register_error_handlers(app)

    @app.get("/healthz")
    def healthz():
        """The process is alive and serving."""
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics():
        """This process's counters in Prometheus text format (open, like /healthz)."""
        lines = []
        for name, help_text in METRICS:
            lines += [f"# HELP collab_bus_{name}_total {help_text}", f"# TYPE collab_bus_{name}_total counter",
                      f"collab_bus_{name}_total {ctx.counters[name]}"]
        return "\n".join(lines) + "\n", 200, {"Content-Type": "text/plain; version=0.0.4"}

    return app
