"""Follow the container engine's events, so a managed sandbox whose container dies, is killed for memory or is
removed by hand shows it within a second rather than at the next reconciler sweep."""

from __future__ import annotations

import logging
import threading
import time

from celery.signals import worker_ready

from app.runtime import LABEL_INSTANCE, LABEL_SANDBOX, RuntimeFailure
from app.services import reconciler
from workers.context import worker_context

log = logging.getLogger(__name__)

WATCHED = ("die", "oom", "destroy")
RECONNECT_AFTER = 2.0  # seconds between attempts while the engine cannot be reached


@worker_ready.connect
def follow_engine_events(sender=None, **_) -> None:
    """With managed sandboxes, follow the container engine's events in this worker (`sender`: its consumer)."""
    ctx = worker_context(sender.app)
    if ctx.settings.managed_sandboxes:
        watch_engine(ctx, ctx.settings.bus_instance)


def watch_engine(ctx, instance: str) -> threading.Thread:
    """Start a daemon thread that checks a sandbox each time the engine reports one of our containers stopping."""
    thread = threading.Thread(target=_follow, args=(ctx, instance), name="engine-events", daemon=True)
    thread.start()
    return thread


def _follow(ctx, instance: str) -> None:
    reported = False
    while True:
        try:
            for event in ctx.runtime.events({LABEL_INSTANCE: instance}):
                reported = False
                sandbox_id = event.labels.get(LABEL_SANDBOX)
                if event.action in WATCHED and sandbox_id:
                    reconciler.observe(ctx.db, ctx.runtime, sandbox_id, ctx.notifier.publish)
        except RuntimeFailure as exc:
            if not reported:
                log.warning("engine events: %s; following again every %.0f s", exc.message, RECONNECT_AFTER)
                reported = True
        except Exception:
            log.exception("engine events: unexpected failure; following again")
        time.sleep(RECONNECT_AFTER)
