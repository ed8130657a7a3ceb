"""What services need from the outside world, as protocols: a delivery queue, a lifecycle queue, a notifier."""

from __future__ import annotations

from typing import Protocol


class DeliveryQueue(Protocol):
    """Schedules the delivery of an accepted message (Celery in production)."""

    def enqueue(self, message_id: str, priority: int, expires_at: float | None = None) -> None:
        """Ask a worker to deliver `message_id` (not after the unix time `expires_at`, when given);
        raise on failure (the outbox sweep retries later)."""

    def enqueue_many(self, message_ids: list[str], priority: int) -> None:
        """Ask one worker to deliver `message_ids` in their order; raise on failure (the outbox sweep retries)."""


class LifecycleQueue(Protocol):
    """Schedules lifecycle work on managed sandboxes (Celery's `lifecycle` queue in production)."""

    def converge(self, sandbox_id: str) -> None:
        """Ask a worker to bring `sandbox_id`'s container to its desired state; raise on failure (the reconciler
        sweep asks again later)."""


class Notifier(Protocol):
    """Announces notifications (new mailbox entries, system events) to every API process."""

    def publish(self, notification: dict) -> None:
        """Send `notification` to every listener; best effort, never raises."""
