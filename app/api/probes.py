"""The open probes of every API process: `/` (to the web GUI), `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, redirect, request
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from app.context import BusContext, bus
from app.metrics import GaugeCollector, exposition
from app.services import registry

log = logging.getLogger(__name__)

bp = Blueprint("probes", __name__)


@bp.get("/")
def home():
    """The bus's address, as a person types it: a redirect (302) to the web GUI."""
    return redirect(f"{request.script_root}/ui/")


@bp.get("/healthz")
def healthz():
    """The process is alive and serving."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready to serve: the database and the broker answer (503 naming what does not)."""
    checks = _readiness(bus())
    if all(result == "ok" for result in checks.values()):
        return jsonify({"status": "ready", "checks": checks})
    failed = [name for name, result in checks.items() if result != "ok"]
    body = {"error": {"code": "not_ready", "message": f"{' and '.join(failed)} unreachable", "details": checks}}
    return jsonify(body), 503, {"Retry-After": "5"}


@bp.get("/metrics")
def prometheus_metrics():
    """The bus's metrics in Prometheus text format (open, like /healthz)."""
    ctx = bus()
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(GaugeCollector(lambda: _gauges(ctx)))
    body, content_type = exposition(gauges)
    return body, 200, {"Content-Type": content_type}


def _readiness(ctx: BusContext) -> dict[str, str]:
    """"ok", or what went wrong, for the database and the broker."""
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


def _gauges(ctx: BusContext) -> dict:
    """The gauges /metrics reads at scrape time: sandboxes by status, queue depths, whether the broker answered."""
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
