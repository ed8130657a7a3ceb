"""Periodic upkeep run by beat: re-enqueue accepted messages that never reached a worker (outbox sweep)."""

from __future__ import annotations

import logging

from app.services import messages
from workers.celery_app import celery_app, settings
from workers.context import worker_context

log = logging.getLogger(__name__)


@celery_app.task(name="workers.maintenance.sweep_outbox")
def sweep_outbox() -> int:
    """Enqueue delivery again for messages accepted more than OUTBOX_SWEEP_AFTER seconds ago but not routed."""
    ctx = worker_context()
    stale = messages.unrouted(ctx.db, older_than=settings.outbox_sweep_after)
    for message_id, priority in stale:
        ctx.delivery.enqueue(message_id, priority)
    if stale:
        log.info("outbox sweep: re-enqueued %d message(s)", len(stale))
    return len(stale)
