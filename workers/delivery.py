"""The `deliver` and `deliver_batch` tasks: route accepted messages into their recipients' mailboxes, then announce
them."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from sqlalchemy.exc import SQLAlchemyError

from app.errors import UnknownMessage
from app.services import delivery
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
        """Record the failure as a dead letter of each message, so none is ever silently lost."""
        first = args[0] if args else kwargs.get("message_id", kwargs.get("message_ids"))
        for message_id in first if isinstance(first, list) else [first]:
            try:
                ctx = worker_context(self.app)
                ctx.announce(delivery.give_up(ctx.db, message_id, f"{type(exc).__name__}: {exc}"))
            except Exception:  # the database itself may be what fails; the outbox sweep retries later
                log.exception("deliver: could not dead-letter message %s after %r", message_id, exc)


@shared_task(name="workers.delivery.deliver", base=DeliverTask, bind=True)
def deliver(self, message_id: str) -> int:
    """Deliver `message_id`; safe to run more than once. Returns how many new mailbox entries it made."""
    ctx = worker_context(self.app)
    try:
        result = delivery.deliver(ctx.db, message_id, ctx.policy, ctx.guards)
    except UnknownMessage:
        log.error("deliver: message %s does not exist; dropping the task", message_id)
        return 0
    ctx.announce(result.notifications())
    ctx.wake([result])
    log.debug("deliver: message %s in %d mailbox(es), %d new", message_id, len(result.recipients),
              len(result.new_recipients))
    return len(result.new_recipients)


@shared_task(name="workers.delivery.deliver_batch", base=DeliverTask, bind=True)
def deliver_batch(self, message_ids: list[str]) -> int:
    """Deliver `message_ids` in their order, in one transaction, announced in one fanout message; safe to run more
    than once. Returns how many new mailbox entries it made."""
    ctx = worker_context(self.app)
    results = delivery.deliver_many(ctx.db, message_ids, ctx.policy, ctx.guards)
    ctx.announce([notification for result in results for notification in result.notifications()])
    ctx.wake(results)
    log.debug("deliver_batch: %d message(s)", len(results))
    return sum(len(result.new_recipients) for result in results)
