"""A mailbox socket's outgoing side: the `welcome` frame (where the stream resumes, the limits of the client's sends),
then every entry after that point in seq order, then live entries."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable

from simple_websocket import ConnectionClosed

from app import green
from app.context import BusContext
from app.models import EntryState
from app.services import mailbox
from app.ws.connections import Connection
from app.ws.hub import CLOSE, RESYNC, Subscriber

log = logging.getLogger(__name__)

REPLAY_BATCH = 500


def resume_point(sandbox: dict, since: int) -> tuple[int, bool]:
    """Where a mailbox socket asking for the entries after `since` resumes, and whether `since` lies beyond the
    mailbox's head (a cursor from before a data reset, or from elsewhere): then it resumes after the mailbox's
    settled seq (every entry up to it acknowledged or dead), so nothing unsettled is skipped."""
    if since > sandbox["head_seq"]:
        return sandbox["settled_seq"], True
    return since, False


def welcome_frame(ctx: BusContext, sandbox: dict, resumed_from: int, cursor_ahead: bool) -> dict:
    """The first frame of a mailbox socket: the sandbox, its mailbox's head, where the stream resumes
    (`cursor_ahead` when not where the client asked), and the limits its sends must keep: `max_content_bytes`
    (a message's content as compact UTF-8 JSON, else 413) and `max_frame_bytes` (a larger frame closes the socket
    with 1009)."""
    frame = {"type": "welcome", "sandbox_id": sandbox["sandbox_id"], "head_seq": sandbox["head_seq"],
             "resumed_from": resumed_from, "max_content_bytes": ctx.settings.max_content_bytes,
             "max_frame_bytes": ctx.settings.ws_frame_limit}
    if cursor_ahead:
        frame["cursor_ahead"] = True
    return frame


def message_frame(seq: int, message_json: str, attempt: int | None = None) -> str:
    """A `message` frame for entry `seq` (`redelivered` with its `attempt` when pushed again)."""
    if attempt is None:
        return f'{{"type":"message","seq":{seq},"message":{message_json}}}'
    return f'{{"type":"message","seq":{seq},"redelivered":true,"attempt":{attempt},"message":{message_json}}}'


def rerouted_frame(seq: int, message_id: str) -> str:
    """A `rerouted` frame: entry `seq` went to another capable agent (the client keeps its place, handles nothing)."""
    return json.dumps({"type": "rerouted", "seq": seq, "message_id": message_id}, separators=(",", ":"))


class MailboxStream:
    """Streams one sandbox's mailbox to one socket: every entry after `since`, in seq order, then live.

    Entries are never skipped: a live entry that arrives ahead of its predecessors (several workers)
    makes the stream read the gap from the database first; entries already sent are dropped.
    """

    def __init__(self, ctx: BusContext, conn: Connection, sandbox_id: str, since: int, subscriber: Subscriber):
        self.ctx = ctx
        self.conn = conn
        self.sandbox_id = sandbox_id
        self.last_sent = since
        self.subscriber = subscriber
        self._thread: threading.Thread | None = None
        self._ended: threading.Event | bool = False  # True, or an Event a `join` waits on, set at the end

    def start(self) -> None:
        """Stream in the background (`run`): in a thread of its own; under gevent in a greenlet that ends once the
        replay is sent, so an idle socket keeps nothing running for its stream."""
        if green.is_patched():
            import gevent

            gevent.spawn_raw(self.run)
        else:
            self._thread = threading.Thread(target=self.run, name=f"ws-mailbox-{self.sandbox_id}", daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the stream started by `start` to end (its subscriber closed, or the
        socket gone)."""
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._ended is False:
            self._ended = threading.Event()
            self._ended.wait(timeout)
        elif self._ended is not True:
            self._ended.wait(timeout)

    def run(self) -> None:
        """Replay, then forward live entries until the subscriber is closed or the socket drops.

        Under gevent it returns once the replay is sent: the subscriber's queue is then a _GreenInbox, whose
        items are forwarded in a greenlet that lives while there are some, so an idle socket keeps no greenlet
        (nor queue) for its stream."""
        try:
            self._send_from_database(until=None)
            if green.is_patched():
                self.subscriber.items = _GreenInbox(self._forward, self._end, self.subscriber.items)
                return
            while self._forward(self.subscriber.items.get()):
                pass
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("mailbox stream of %s failed", self.sandbox_id)
        self._end()

    def _end(self) -> None:
        if isinstance(self._ended, threading.Event):
            self._ended.set()
        self._ended = True

    def _forward(self, item) -> bool:
        """Send what `item` (from the hub) calls for; False once the stream is over (closed, or the socket gone)."""
        try:
            if item is CLOSE:
                return False
            if item is RESYNC:
                self._send_from_database(until=None)
                return True
            seq, message_json = item[0], item[1]
            if len(item) == 3 and seq <= self.last_sent:  # an unacknowledged entry pushed again
                self.conn.send(message_frame(seq, message_json, attempt=item[2]))
                return True
            if seq > self.last_sent + 1:
                self._send_from_database(until=seq - 1)
            if seq == self.last_sent + 1:
                self.conn.send(message_frame(seq, message_json))
                self.last_sent = seq
            return True
        except ConnectionClosed:
            return False
        except Exception:
            log.exception("mailbox stream of %s failed", self.sandbox_id)
            return False

    def _send_from_database(self, until: int | None) -> None:
        while until is None or self.last_sent < until:
            entries = mailbox.entries_after(self.ctx.db, self.sandbox_id, self.last_sent, REPLAY_BATCH)
            for entry in entries:
                if until is not None and entry.seq > until:
                    return
                if entry.state == EntryState.REROUTED:  # another agent has it: the client skips it, keeping its place
                    self.conn.send(rerouted_frame(entry.seq, entry.message["message_id"]))
                else:
                    self.conn.send(message_frame(entry.seq, json.dumps(entry.message, separators=(",", ":"))))
                self.last_sent = entry.seq
            if len(entries) < REPLAY_BATCH:
                return


class _GreenInbox:
    """A mailbox subscriber's queue under gevent, in place of its SimpleQueue: `put` (from the hub) never blocks; the
    items are handed to `forward` in order, by one greenlet at a time, spawned by the `put` that finds none running
    and ending when no item is left. Once `forward` returns False (the stream is over), `end` is called and items
    are dropped.

    It takes the items already queued in `pending` (the SimpleQueue it replaces); nothing can be put there
    meanwhile: greenlets switch only when one blocks, and neither this nor a `put` does."""

    __slots__ = ("_forward", "_end", "_items", "_draining", "_over")

    def __init__(self, forward: Callable[[object], bool], end: Callable[[], None], pending: queue.SimpleQueue):
        self._forward = forward
        self._end = end
        self._items: list = []
        self._draining = False
        self._over = False
        while True:
            try:
                self.put(pending.get_nowait())
            except queue.Empty:
                break

    def put(self, item) -> None:
        """Queue `item` for the stream."""
        if self._over:
            return
        self._items.append(item)
        if not self._draining:
            import gevent

            self._draining = True
            gevent.spawn_raw(self._drain)

    def _drain(self) -> None:
        try:
            while self._items and not self._over:
                batch, self._items = self._items, []
                for item in batch:
                    if not self._forward(item):
                        self._over = True
                        self._items = []
                        self._end()
                        self._forward = self._end = None  # no cycle left with the stream
                        break
        finally:
            self._draining = False
