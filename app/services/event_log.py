"""The recent system events of one API process, numbered, so an events socket that reconnects can resume from the
last event it saw instead of losing what passed while it was away."""

from __future__ import annotations

import json
import re
import uuid
from collections import deque

EVENTS_KEPT = 10_000
EVENT_ID = re.compile(r"^(?P<epoch>[0-9a-f]{12})-(?P<number>[0-9]{1,18})$")


class EventLog:
    """The last `kept` events this process passed to its events sockets. Each gets an id `<epoch>-<n>`: the epoch
    names this process's life (a restart starts another), `n` counts its events. Not thread-safe: the hub calls
    it under its lock."""

    def __init__(self, kept: int = EVENTS_KEPT) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self._count = 0
        self._recent: deque[tuple[int, dict]] = deque(maxlen=kept)

    @property
    def last_id(self) -> str | None:
        """The id of the newest event, or None before the first."""
        return f"{self.epoch}-{self._count}" if self._count else None

    def append(self, event: dict) -> str:
        """Number `event` (`{"event", "data", "timestamp"}`) and keep it; its frame is made only when asked."""
        self._count += 1
        self._recent.append((self._count, event))
        return f"{self.epoch}-{self._count}"

    def frame(self, number: int, event: dict) -> str:
        """The `event` frame of event `number`, as sent on the socket."""
        return json.dumps({"type": "event", "id": f"{self.epoch}-{number}", **event}, separators=(",", ":"))

    def newest_frame(self) -> str:
        """The frame of the event appended last."""
        number, event = self._recent[-1]
        return self.frame(number, event)

    def after(self, event_id: str) -> tuple[list[str], str | None]:
        """The frames of the events after `event_id`, and None; or no frames and why they cannot be given (the id
        is from another process or life of it, or older than what is kept). `event_id` must match EVENT_ID."""
        found = EVENT_ID.match(event_id)
        epoch, number = found["epoch"], int(found["number"])
        if epoch != self.epoch:
            return [], "the event id is from another API process, or from before this one restarted"
        if number > self._count:
            return [], "the event id is newer than any event of this process"
        oldest = self._recent[0][0] if self._recent else self._count + 1
        if number < oldest - 1:
            return [], f"the events after it are no longer kept (the last {self._recent.maxlen} are)"
        return [self.frame(n, event) for n, event in self._recent if n > number], None
