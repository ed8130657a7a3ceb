"""The per-process hub: open sockets subscribe here; notifications from the fanout exchange are pushed to them."""

from __future__ import annotations

import json
import queue
import threading
from collections import defaultdict
from collections.abc import Callable

from app.models import BROADCAST
from app.services.event_log import EventLog, EventLogPort
from app.services.events import event_of, unbatched

CLOSE = object()  # sentinel pushed to a subscriber to end its stream
RESYNC = object()  # sentinel pushed to a mailbox subscriber: read entries you may have missed from the database


class Subscriber:
    """One open socket's inbox of outgoing items, filled by the hub and drained by the socket's stream."""

    def __init__(self, on_disconnect: Callable[[str], None] | None = None) -> None:
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        self.on_disconnect = on_disconnect  # closes the socket when an operator disconnects its sandbox
        self.replayed: frozenset[str] = frozenset()  # ids of the events replayed to an events socket: not sent again

    def push(self, item) -> None:
        """Queue `item` for the socket (never blocks)."""
        self.items.put(item)

    def close(self) -> None:
        """Tell the stream to stop."""
        self.items.put(CLOSE)


class Hub:
    """Tracks the open sockets of this process by channel and routes notifications to them.

    Mailbox sockets receive `(seq, message_json)` tuples for their sandbox, and `(seq, message_json,
    attempt)` when an unacknowledged entry is pushed again; broadcast and event sockets receive
    ready-made JSON text frames. `on_change` is called with +1 when a socket subscribes and -1 when it
    unsubscribes (the open-sockets gauge). `event_log` keeps the events for `/ws/events?since=` (by default
    this process's own; the broker kind's `event_log()` may share one between API processes).
    """

    def __init__(self, on_change: Callable[[int], None] | None = None, event_log: EventLogPort | None = None) -> None:
        self._on_change = on_change or (lambda delta: None)
        self._lock = threading.Lock()
        self._mailboxes: dict[str, set[Subscriber]] = defaultdict(set)
        self._broadcast: set[Subscriber] = set()
        self._events: set[Subscriber] = set()
        self._event_log = event_log or EventLog()

    def subscribe_mailbox(self, sandbox_id: str, on_disconnect: Callable[[str], None] | None = None) -> Subscriber:
        """A new subscriber to `sandbox_id`'s new mailbox entries; `on_disconnect(reason)` closes its socket."""
        sub = Subscriber(on_disconnect)
        with self._lock:
            self._mailboxes[sandbox_id].add(sub)
            self._on_change(1)
        return sub

    def subscribe_broadcast(self) -> Subscriber:
        """A new subscriber to broadcast messages."""
        return self._add(self._broadcast)

    def subscribe_events(self, since: str | None = None) -> tuple[Subscriber, dict]:
        """A new subscriber to system events, and what its welcome frame says: the id of the newest event
        (`last_event_id`), and with `since` (an id an events socket gave) whether the events after it are replayed
        first (`resumed`), or why not (`missed`): then the client must assume it missed some. A replayed event
        that also reaches this process live afterwards (a shared log) is not sent again."""
        sub = Subscriber()
        with self._lock:  # replayed before any newer event can be pushed to it, and none twice
            welcome = {"last_event_id": self._event_log.last_id}
            if since is not None:
                frames, missed = self._event_log.replay(since)
                for _, frame in frames:
                    sub.push(frame)
                sub.replayed = frozenset(event_id for event_id, _ in frames)
                welcome.update({"resumed": missed is None, "replayed": len(frames)},
                               **({"missed": missed} if missed else {}))
            self._events.add(sub)
            self._on_change(1)
        return sub, welcome

    def _add(self, channel: set) -> Subscriber:
        sub = Subscriber()
        with self._lock:
            channel.add(sub)
            self._on_change(1)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget `sub` on every channel."""
        with self._lock:
            subscribed = sub in self._broadcast or sub in self._events
            self._broadcast.discard(sub)
            self._events.discard(sub)
            for sandbox_id in [k for k, subs in self._mailboxes.items() if sub in subs]:
                subscribed = True
                self._mailboxes[sandbox_id].discard(sub)
                if not self._mailboxes[sandbox_id]:
                    del self._mailboxes[sandbox_id]
            if subscribed:
                self._on_change(-1)

    def has_mailbox_socket(self, sandbox_id: str) -> bool:
        """True while this process holds at least one open mailbox socket of `sandbox_id`."""
        with self._lock:
            return bool(self._mailboxes.get(sandbox_id))

    def mailbox_socket_count(self, sandbox_id: str) -> int:
        """How many mailbox sockets of `sandbox_id` this process holds open."""
        with self._lock:
            return len(self._mailboxes.get(sandbox_id, ()))

    def resync(self) -> None:
        """Notifications may have been lost (the fanout listener was reconnecting): every open mailbox socket
        reads the entries it has not sent yet from the database."""
        with self._lock:
            subs = [sub for subs in self._mailboxes.values() for sub in subs]
        for sub in subs:
            sub.push(RESYNC)

    def stamp(self, notification: dict) -> dict:
        """`notification` with its events given their ids, as its publisher gives them (a shared event log's)."""
        return self._event_log.stamp(notification)

    def dispatch(self, notification: dict) -> None:
        """Route one notification from the fanout exchange (each one a batch carries) to the sockets it concerns:
        `push` then `announce`."""
        self.push(notification)
        self.announce(notification)

    def push(self, notification: dict) -> None:
        """The mailbox and broadcast sockets' part of a notification (each one a batch carries): new entries, entries
        pushed again, sandboxes disconnected by an operator."""
        for item in unbatched(notification):
            kind = item.get("kind")
            if kind == "entries":
                self._dispatch_entries(item["message"], item["recipients"])
            elif kind == "redeliver":
                self._redeliver(item)
            elif kind == "disconnect":
                self._disconnect(item["sandbox_id"], item.get("reason") or "disconnected")

    def announce(self, notification: dict) -> None:
        """The events sockets' part of a notification (each one a batch carries): its events, with the ids their
        publisher stamped."""
        for item in unbatched(notification):
            if item.get("kind") in ("entries", "event"):
                self._to_events(event_of(item), item.get("event_id"))

    def _disconnect(self, sandbox_id: str, reason: str) -> None:
        with self._lock:
            subscribers = list(self._mailboxes.get(sandbox_id, ()))
        for sub in subscribers:
            if sub.on_disconnect is not None:
                sub.on_disconnect(reason)

    def _redeliver(self, notification: dict) -> None:
        with self._lock:
            subs = list(self._mailboxes.get(notification["sandbox_id"], ()))
        if subs:
            message_json = json.dumps(notification["message"], separators=(",", ":"))
            for sub in subs:
                sub.push((notification["seq"], message_json, notification["attempt"]))

    def _dispatch_entries(self, message: dict, recipients: list) -> None:
        message_json = json.dumps(message, separators=(",", ":"))
        with self._lock:
            targets = [(seq, list(self._mailboxes.get(sandbox_id, ()))) for sandbox_id, seq in recipients]
            broadcast = list(self._broadcast) if message.get("to_sandbox") == BROADCAST else []
        for seq, subs in targets:
            for sub in subs:
                sub.push((seq, message_json))
        if broadcast:
            frame = f'{{"type":"message","message":{message_json}}}'
            for sub in broadcast:
                sub.push(frame)

    def _to_events(self, event: dict, event_id: str | None) -> None:
        """Record `event` (stamped `event_id` by its publisher when the log is shared) and send it to every events
        socket that has not had it replayed."""
        with self._lock:
            event_id = self._event_log.record(event, event_id)
            if not self._events:
                return
            frame = self._event_log.frame(event_id, event)
            for sub in self._events:  # under the lock: a socket subscribing meanwhile gets it once, in order
                if event_id not in sub.replayed:
                    sub.push(frame)
