"""Admission control: new sends are refused, with a time to retry, while the delivery backlog is full.

The backlog is the accepted messages no worker has routed yet. Bounding it keeps what the bus accepts deliverable
within a bounded time when senders outrun the workers (or the workers are down): past the bound a send gets
503 `overloaded` with `Retry-After` instead of joining an ever longer queue.
"""

from __future__ import annotations

import threading
import time

from app.db import Database
from app.errors import Unavailable
from app.models import Message, MessageStatus

RETRY_AFTER = 1.0  # seconds a refused sender is asked to wait
COUNT_MAX_AGE = 0.1  # seconds one count of the backlog is reused (one query per process per interval under load)
# The count, as plain SQL (Database.scalar): through a session it cost ~0.5 ms of ORM work, ten times a second.
BACKLOG_QUERY = f"SELECT count(*) FROM {Message.__tablename__} WHERE status = '{MessageStatus.ACCEPTED}'"


class Admission:
    """Admits sends while fewer than `max_backlog` accepted messages await routing (0: always admits)."""

    def __init__(self, db: Database, max_backlog: int, *, clock=time.monotonic):
        self.db = db
        self.max_backlog = max_backlog
        self._clock = clock
        self._lock = threading.Lock()
        self._counted_at = float("-inf")
        self._backlog = 0

    def check(self, incoming: int = 1) -> None:
        """Return when `incoming` more messages may be accepted; else raise Unavailable `overloaded`
        (details: backlog, limit; Retry-After)."""
        if self.max_backlog <= 0:
            return
        backlog = self._current_backlog()
        if backlog + incoming > self.max_backlog:
            raise Unavailable(
                f"the bus is overloaded: {backlog} accepted messages await delivery (the limit is "
                f"{self.max_backlog}); retry after {RETRY_AFTER:g}s", code="overloaded", retry_after=RETRY_AFTER,
                details={"backlog": backlog, "limit": self.max_backlog})
        with self._lock:
            self._backlog += incoming  # what this process just admitted counts until the next count

    def _current_backlog(self) -> int:
        now = self._clock()
        with self._lock:
            if now - self._counted_at < COUNT_MAX_AGE:
                return self._backlog
        backlog = self.db.scalar(BACKLOG_QUERY) or 0
        with self._lock:
            self._backlog, self._counted_at = backlog, now
        return backlog
