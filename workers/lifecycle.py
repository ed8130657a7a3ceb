"""Lifecycle tasks of managed sandboxes, on the `lifecycle` queue: thin over app.services.lifecycle."""

from __future__ import annotations

import logging

from celery import shared_task

from app.runtime import RuntimeFailure
from app.services import lifecycle
from workers.context import worker_context

log = logging.getLogger(__name__)

ENGINE_RETRIES = 8  # an unreachable engine is retried with backoff (1, 2, 4 … 30 s), then the sandbox is in error
LEASE_RETRIES = 120  # another task holds the sandbox: ask again every second, up to about two leases


@shared_task(name="workers.lifecycle.converge", bind=True, acks_late=True, max_retries=None)
def converge(self, sandbox_id: str) -> str | None:
    """Bring one managed sandbox's container to its desired state; the state reached."""
    ctx = worker_context(self.app)
    try:
        state = lifecycle.converge(ctx.db, ctx.runtime, ctx.lifecycle, sandbox_id, owner=self.request.id,
                                   emit=ctx.notifier.publish)
    except lifecycle.LeaseBusy:
        if self.request.retries >= LEASE_RETRIES:
            log.warning("sandbox %s: still held by another lifecycle task; the reconciler will converge it", sandbox_id)
            return None
        raise self.retry(countdown=1) from None
    except RuntimeFailure as exc:  # transient: the engine cannot be reached
        if self.request.retries >= ENGINE_RETRIES:
            lifecycle.fail(ctx.db, sandbox_id, exc.message, ctx.notifier.publish)
            return "error"
        log.warning("sandbox %s: %s; retrying", sandbox_id, exc.message)
        raise self.retry(countdown=min(30, 2 ** self.request.retries)) from exc
    log.info("sandbox %s: %s", sandbox_id, state)
    return state
