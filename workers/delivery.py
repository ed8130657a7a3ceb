"""The `deliver` task: route one accepted message into its recipients' mailboxes, then announce it."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from app.errors import UnknownMessage
from app.services import delivery
from workers.celery_app import celery_app
from workers.context import worker_context

log = logging.getLogger(__name__)


@celery_app.task(name="workers.delivery.deliver", autoretry_for=(SQLAlchemyError,), retry_backoff=0.2,
                 retry_backoff_max=10, retry_jitter=True, max_retries=20)
def deliver(message_id: str) -> int:
    """Deliver `message_id`; safe to run more than once. Returns how many new mailbox entries it made."""
    ctx = worker_context()
    try:
        result = delivery.deliver(ctx.db, message_id)
    except UnknownMessage:
        log.error("deliver: message %s does not exist; dropping the task", message_id)
        return 0
    for notification in result.notifications():
        ctx.notifier.publish(notification)
    log.debug("deliver: message %s in %d mailbox(es), %d new", message_id, len(result.recipients),
              len(result.new_recipients))
    return len(result.new_recipients)
