"""Delivery tasks this process could not hand to the broker, handed over again as soon as the broker is back.

A message is durable once accepted; its delivery task is only the nudge that makes a worker route it. When the
broker cannot take the task (it restarts, fails over, the network blinks) the outbox sweep would enqueue the
message after OUTBOX_SWEEP_AFTER (30 s by default); this process instead keeps the task and tries again every
fraction of a second, so a one-second broker outage costs about one second of delivery. The sweep stays the
safety net: for a process that dies with tasks pending, or for more pending tasks than this process keeps.
Delivery is idempotent, so a task enqueued both here and by the sweep routes the message once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from app.services.ports import DeliveryQueue

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # tasks kept per process; beyond that the outbox sweep alone recovers them
FIRST_RETRY = 0.1  # seconds after a failure
MAX_RETRY = 0.5  # seconds between attempts while the broker stays away (one connection attempt each)


@dataclass(frozen=True)
class _Task:
    message_id: str
    priority: int
    expires_at: float | None


class EnqueueRetry:
    """Keeps the delivery tasks `delivery` refused and enqueues them again, in the order they failed, from one
    background thread (started on the first failure) that tries again with a growing pause until the broker takes
    them. Thread-safe; never raises to the caller."""

    def __init__(self, delivery: DeliveryQueue, max_pending: int = MAX_PENDING):
        self.delivery = delivery
        self.max_pending = max_pending
        self._pending: dict[str, _Task] = {}
        self._since: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, message_ids: list[str], priority: int, expires_at: float | None = None) -> None:
        """Keep the tasks of `message_ids` (they failed to enqueue) for the next attempt."""
        with self._lock:
            room = self.max_pending - len(self._pending)
            for message_id in message_ids[:max(room, 0)]:
                self._pending.setdefault(message_id, _Task(message_id, priority, expires_at))
            if len(message_ids) > room:
                log.warning("%d delivery task(s) over the %d kept for a retry: the outbox sweep enqueues them",
                            len(message_ids) - max(room, 0), self.max_pending)
            if self._since is None:
                self._since = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="enqueue-retry", daemon=True)
                self._thread.start()
        self._wake.set()

    def pending(self) -> int:
        """How many tasks wait for the broker."""
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        pause = FIRST_RETRY
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            with self._lock:
                tasks = list(self._pending.values())
                if not tasks:  # under the lock: an add() from now on starts a new thread
                    since, self._since, self._thread = self._since, None, None
                    break
            # all went: look again at once (more may have failed meanwhile), else wait longer each time
            pause = 0 if self._enqueue(tasks) else min(max(pause, FIRST_RETRY) * 2, MAX_RETRY)
        if since is not None:
            log.warning("delivery tasks the broker missed are enqueued again, %.1fs after the first failure",
                        time.monotonic() - since)

    def _enqueue(self, tasks: list[_Task]) -> bool:
        """Enqueue `tasks` in order; True when every one went (they are forgotten), False at the first refusal."""
        for task in tasks:
            try:
                self.delivery.enqueue(task.message_id, task.priority, task.expires_at)
            except Exception as exc:  # the broker is still away: the next attempt comes after a pause
                log.debug("enqueue retry: %s still not enqueued (%s)", task.message_id, exc)
                return False
            with self._lock:
                self._pending.pop(task.message_id, None)
        return True
