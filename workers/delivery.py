"""The `deliver` task: route one accepted message into its recipients' mailboxes, then announce it."""

from __future__ import annotations

import logging

from celery import Task
from sqlalchemy.exc import SQLAlchemyError

from app.errors import UnknownMessage
from app.services import delivery
from workers.celery_app import celery_app
from workers.context import worker_context

log = logging.getLogger(__name__)


class DeliverTask(Task):
    """Retries on database errors; when the retries run out the message is dead-lettered `undeliverable`.

    `max_retries` comes from celeryconfig's task annotation (`DELIVERY_MAX_RETRIES`, 20 by default); the
    waits grow 1, 2, 4 ... seconds up to 10, each drawn at random below that bound (full jitter).
    """

    autoretry_for = (SQLAlchemyError,)
    retry_backoff = 1  # Celery rounds factors below 1 up to 1
    retry_backoff_max = 10
    retry_jitter = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Record the failure as a dead letter, so the message is never silently lost."""
        message_id = args[0] if args else kwargs.get("message_id")
        try:
            ctx = worker_context()
            ctx.announce(delivery.give_up(ctx.db, message_id, f"{type(exc).__name__}: {exc}"))
        except Exception:  # the database itself may be what fails; the outbox sweep retries later
            log.exception("deliver: could not dead-letter message %s after %r", message_id, exc)


@celery_app.task(name="workers.delivery.deliver", base=DeliverTask)
def deliver(message_id: str) -> int:
    """Deliver `message_id`; safe to run more than once. Returns how many new mailbox entries it made."""
    ctx = worker_context()
    try:
        result = delivery.deliver(ctx.db, message_id, ctx.policy)
    except UnknownMessage:
        log.error("deliver: message %s does not exist; dropping the task", message_id)
        return 0
    ctx.announce(result.notifications())
    log.debug("deliver: message %s in %d mailbox(es), %d new", message_id, len(result.recipients),
              len(result.new_recipients))
    return len(result.new_recipients)
