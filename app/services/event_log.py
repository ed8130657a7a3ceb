"""The log of recent system events the events sockets serve, so an events socket that reconnects can resume from
the last event it saw instead of losing what passed while it was away.

Two kinds of log answer the same questions (the hub, app/ws/hub.py, does not know which it has): `EventLog` here
keeps the events of one API process and numbers them as they reach it; a shared log (`SharedEventLog`: the Redis
stream of app/brokers/redis_events.py, the JetStream stream of app/brokers/nats_events.py) gives each event its id
once, where it is published, so every API process sends it with that id and resumes from it. The broker kind picks
one (`Broker.event_log`).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections import deque
from typing import Protocol

from app.services.events import event_of, unbatched

log = logging.getLogger(__name__)

EVENTS_KEPT = 10_000
EVENT_ID = re.compile(r"^(?:(?P<epoch>[0-9a-f]{12})-(?P<number>[0-9]{1,18})|[0-9]{1,20}-[0-9]{1,20})$")
"""An event id: `<epoch>-<n>` of a per-process log, or a Redis stream id `<ms>-<seq>` of a shared one."""


class EventLogPort(Protocol):
    """What the hub and the publishers (app/fanout.py's KombuNotifier) ask of an event log."""

    def stamp(self, notification: dict) -> dict:
        """`notification`, its events given their ids when the log is shared (before it is published)."""

    @property
    def last_id(self) -> str | None:
        """The id of the newest event, None before any."""

    def record(self, event: dict, event_id: str | None = None) -> str | None:
        """Note `event` (which reached this API process with the id its publisher stamped) and return its id."""

    def frame(self, event_id: str | None, event: dict) -> str:
        """The `event` frame of `event` with id `event_id`."""

    def replay(self, event_id: str) -> tuple[list[tuple[str, str]], str | None]:
        """The events after `event_id` as `(id, frame)` in order, and None; or none and why (the `missed` text)."""


class SharedEventLog:
    """What every shared log (one the API processes share, in the broker) does alike: an event gets its id once,
    where it is published (`stamp`, the events of a notification appended in one go by the subclass's `_append`),
    and every API process sends it with that id (`record`, `frame`). Subclasses set `where` (named in logs)."""

    where: str

    def stamp(self, notification: dict) -> dict:
        """Append the events `notification` carries (each one of a batch) to the log and put each one's id in its
        notification (`event_id`); an item stamped already is left as it is. When the log cannot take them, none
        gets an id (logged, never raised): they go out with id null."""
        items = [(item, event) for item in unbatched(notification)
                 if "event_id" not in item and (event := event_of(item)) is not None]
        if not items:
            return notification
        try:
            ids = self._append([event for _, event in items])
        except Exception as exc:  # noqa: BLE001 - the database holds the truth; sockets catch up by seq
            log.warning("could not append %d event(s) to the event log %s: %s", len(items), self.where, exc)
            return notification
        for (item, _), event_id in zip(items, ids, strict=True):
            item["event_id"] = event_id
        return notification

    def _append(self, events: list[dict]) -> list[str]:
        """Append `events` to the log in their order and return their ids; raise when the log cannot take them."""
        raise NotImplementedError

    def record(self, event: dict, event_id: str | None = None) -> str | None:
        """The id the publisher gave `event` (None when it could not stamp it); the log holds it already."""
        return event_id

    def frame(self, event_id: str | None, event: dict) -> str:
        """The `event` frame of `event` with id `event_id`, as sent on the socket."""
        return event_frame(event_id, event)


def event_frame(event_id: str | None, event: dict) -> str:
    """The `event` frame of `event` (`{"event", "data", "timestamp"}`) with id `event_id`, as sent on the socket."""
    return json.dumps({"type": "event", "id": event_id, **event}, separators=(",", ":"))


class EventLog:
    """The last `kept` events this process passed to its events sockets. Each gets an id `<epoch>-<n>`: the epoch
    names this process's life (a restart starts another), `n` counts its events. Not thread-safe: the hub calls
    it under its lock."""

    def __init__(self, kept: int = EVENTS_KEPT) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self._count = 0
        self._recent: deque[tuple[int, dict]] = deque(maxlen=kept)

    def stamp(self, notification: dict) -> dict:
        """`notification` as it is: the API processes number the events themselves (`record`)."""
        return notification

    @property
    def last_id(self) -> str | None:
        """The id of the newest event, or None before the first."""
        return f"{self.epoch}-{self._count}" if self._count else None

    def record(self, event: dict, event_id: str | None = None) -> str:
        """Keep `event`, which just reached this process, and return its id (a publisher's `event_id` is never
        given to a per-process log: ignored)."""
        return self.append(event)

    def append(self, event: dict) -> str:
        """Number `event` (`{"event", "data", "timestamp"}`) and keep it; its frame is made only when asked."""
        self._count += 1
        self._recent.append((self._count, event))
        return f"{self.epoch}-{self._count}"

    def frame(self, event_id: str | None, event: dict) -> str:
        """The `event` frame of `event` with id `event_id`, as sent on the socket."""
        return event_frame(event_id, event)

    def after(self, event_id: str) -> tuple[list[str], str | None]:
        """The frames of the events after `event_id`, and None; or no frames and why they cannot be given (the id
        is from another process or life of it, or older than what is kept). `event_id` must match EVENT_ID."""
        frames, missed = self.replay(event_id)
        return [frame for _, frame in frames], missed

    def replay(self, event_id: str) -> tuple[list[tuple[str, str]], str | None]:
        """As `after`, each frame with its event's id."""
        found = EVENT_ID.match(event_id)
        if found is None or found["epoch"] != self.epoch:
            return [], "the event id is from another API process, or from before this one restarted"
        number = int(found["number"])
        if number > self._count:
            return [], "the event id is newer than any event of this process"
        oldest = self._recent[0][0] if self._recent else self._count + 1
        if number < oldest - 1:
            return [], f"the events after it are no longer kept (the last {self._recent.maxlen} are)"
        return [(f"{self.epoch}-{n}", self.frame(f"{self.epoch}-{n}", event))
                for n, event in self._recent if n > number], None
