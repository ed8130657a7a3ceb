"""The event log of a Redis bus: one stream every API node and worker shares, bounded (XADD MAXLEN ~), so an
events socket resumes on any node and after a node restarts.

An event gets its id once, where it is published (`stamp`, before the fanout publish): the id of its stream entry.
Every API node then sends it with that id, and `replay(since)` reads what followed `since` from the stream.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from app.services.event_log import EVENTS_KEPT, SharedEventLog, event_frame

log = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")


def _order(stream_id: str) -> tuple[int, int]:
    """The stream order of `stream_id` (`<ms>-<seq>`)."""
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


class RedisEventLog(SharedEventLog):
    """The last `kept` (about: trimmed with MAXLEN ~) events of the bus in the Redis stream `key`, reached through
    the client `connect()` makes (opened when first needed). Redis errors are logged, never raised: an event
    that could not be stamped is sent with id null, and a resume that cannot be read is answered as missed."""

    def __init__(self, connect: Callable[[], Redis], key: str, kept: int = EVENTS_KEPT) -> None:
        self._connect = connect
        self._client: Redis | None = None
        self._client_lock = threading.Lock()  # a worker's threads stamp at once: one client, made once
        self.key = key
        self.where = key
        self.kept = kept

    @property
    def client(self) -> Redis:
        """The Redis client (made on first use, so in the process that uses it; once, whichever threads ask)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _append(self, events: list[dict]) -> list[str]:
        """XADD each event (MAXLEN ~ kept) in one round trip; their stream ids."""
        with self.client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(self.key, {"event": json.dumps(event, separators=(",", ":"))}, maxlen=self.kept,
                          approximate=True)
            return [_text(event_id) for event_id in pipe.execute()]

    @property
    def last_id(self) -> str | None:
        """The id of the newest event in the stream, None when it holds none or cannot be read."""
        try:
            newest = self.client.xrevrange(self.key, count=1)
        except RedisError as exc:
            log.warning("could not read the event log %s: %s", self.key, exc)
            return None
        return _text(newest[0][0]) if newest else None

    def replay(self, event_id: str) -> tuple[list[tuple[str, str]], str | None]:
        """The events after `event_id` in the stream, each as `(id, frame)`, in stream order, and None; or none and
        why they cannot be given: the id is not a stream id (a per-process log's), newer than the stream's
        newest, older than what the stream keeps, or the stream cannot be read."""
        if STREAM_ID.match(event_id) is None:
            return [], "the event id is from another API process, or from before this one restarted"
        try:
            missed = self._gap(event_id)
            entries = [] if missed else self.client.xrange(self.key, min=f"({event_id}", max="+")
        except RedisError as exc:
            return [], f"the event log cannot be read now ({exc})"
        if missed:
            return [], missed
        return [(_text(entry_id), event_frame(_text(entry_id), json.loads(fields[b"event"])))
                for entry_id, fields in entries], None

    def _gap(self, event_id: str) -> str | None:
        """Why the events after `event_id` cannot all be given from the stream, None when they can. Trimming leaves
        no trace of what it removed, so an id older than the oldest entry kept counts as missed (even when it was
        the entry just before it)."""
        try:
            info = self.client.xinfo_stream(self.key)
        except ResponseError:  # no such key: Redis lost the stream, or no event was ever published
            return "the event log holds no events (Redis was emptied or replaced)"
        since = _order(event_id)
        if since > _order(_text(info["last-generated-id"])):
            return "the event id is newer than any event of the bus"
        first = info.get("first-entry")  # None once every entry is trimmed off
        if since < _order(_text(first[0] if first else info["last-generated-id"])):
            return f"the events after it are no longer kept (the last {self.kept} or so are)"
        return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
