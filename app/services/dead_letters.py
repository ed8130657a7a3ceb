"""Dead letters: messages that could not be delivered to a recipient, kept with the reason and the last error."""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.models import DeadLetter
from app.services.events import MESSAGE_DEAD_LETTERED, event_notification

log = logging.getLogger(__name__)

RECIPIENT_GONE = "recipient_gone"
EXPIRED = "expired"
MAX_ATTEMPTS = "max_attempts"
NACKED = "nacked"
UNDELIVERABLE = "undeliverable"
REASONS = (RECIPIENT_GONE, EXPIRED, MAX_ATTEMPTS, NACKED, UNDELIVERABLE)


def record(session, message_id: str, sandbox_id: str | None, reason: str, error: str, attempts: int = 0) -> dict:
    """Add a dead letter in `session` (once per message, recipient and reason); return its event notification."""
    already = session.scalar(select(DeadLetter.id).where(
        DeadLetter.message_id == message_id, DeadLetter.reason == reason,
        DeadLetter.sandbox_id.is_(None) if sandbox_id is None else DeadLetter.sandbox_id == sandbox_id))
    if already is None:
        session.add(DeadLetter(message_id=message_id, sandbox_id=sandbox_id, reason=reason, attempts=attempts,
                               last_error=error))
    log.warning("message %s dead-lettered for %s: %s (%s)", message_id, sandbox_id, reason, error)
    return event_notification(MESSAGE_DEAD_LETTERED, message_id=message_id, sandbox_id=sandbox_id, reason=reason,
                              attempts=attempts, error=error)
