"""Every open socket of this process: its frames sent safely from several threads, pings that find peers which
stopped answering (they are dropped, so their handler ends), and a 1001 "going away" to all at a graceful stop."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager

from simple_websocket import ConnectionClosed
from wsproto.events import Ping
from wsproto.utilities import LocalProtocolError

from app.errors import BusError

log = logging.getLogger(__name__)

GOING_AWAY = 1001
LOCK_WAIT = 0.5  # seconds the pinger waits for a socket busy sending before it counts the ping as not sent


class Connection:
    """One open socket: sends frames (safe from the reader and the stream at once), pings, closes, drops."""

    def __init__(self, ws, address: str, path: str):
        self.ws = ws
        self.address = address
        self.path = path
        self.alive_at = time.monotonic()  # when the peer last showed it is there: opened, answered a ping
        self.ping_sent_at: float | None = None  # the ping not answered yet
        self._lock = threading.Lock()

    def send(self, text: str) -> None:
        """Send one text frame; raises ConnectionClosed when the peer is gone."""
        with self._lock:
            try:
                self.ws.send(text)
            except OSError as exc:  # the connection was dropped under the send (see `drop`)
                raise ConnectionClosed() from exc

    def send_json(self, frame: dict) -> None:
        """Send `frame` as JSON."""
        self.send(json.dumps(frame, separators=(",", ":")))

    def error(self, exc: BusError) -> None:
        """Send an `error` frame describing `exc`."""
        self.send_json({"type": "error", **exc.to_dict()["error"]})

    def ping(self) -> bool:
        """Send a WebSocket ping unless the socket is stuck (busy sending, or its send buffer full); True if sent.
        simple_websocket's reader sets `ws.pong_received` when the answer arrives."""
        if not self._lock.acquire(timeout=LOCK_WAIT):
            return False
        try:
            if not self.ws.connected or not _writable(self.ws.sock):
                return False
            self.ws.pong_received = False
            self.ws.sock.send(self.ws.ws.send(Ping()))
            return True
        except (OSError, LocalProtocolError):
            return False
        finally:
            self._lock.release()

    def close(self, code: int, reason: str) -> bool:
        """Begin the closing handshake with `code` and `reason` (nothing to do once it has begun); False when the
        socket is stuck. The handler ends when the client's closing reply arrives."""
        if not self._lock.acquire(timeout=LOCK_WAIT):
            return False
        try:
            if not self.ws.connected:
                return True
            if not _writable(self.ws.sock):
                return False
            self.ws.close(reason=code, message=reason)
            return True
        except ConnectionClosed:
            return True
        except (OSError, LocalProtocolError):
            return False
        finally:
            self._lock.release()

    def drop(self) -> None:
        """End the TCP connection without a closing handshake: the reader thread sees it end, so does the handler
        (its next receive raises ConnectionClosed), and a send blocked on a full buffer fails."""
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _writable(sock) -> bool:
    """Whether a small frame can be sent on `sock` now without blocking."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


class Connections:
    """The open sockets of this process.

    With a `ping_interval` (seconds; 0: no pings), a socket silent for that long is pinged; one that has not
    answered by the next interval, or could not even be pinged for two (its peer stopped reading), is dropped.
    """

    def __init__(self, ping_interval: float = 0.0):
        self.ping_interval = ping_interval
        self._open: set[Connection] = set()
        self._changed = threading.Condition()
        self._going_away = False
        self._pinger: threading.Thread | None = None

    @contextmanager
    def opened(self, ws, address: str, path: str):
        """Track `ws` (from `address`, on `path`) while the block runs; yields its Connection."""
        conn = Connection(ws, address, path)
        with self._changed:
            self._open.add(conn)
            going_away = self._going_away
            self._start_pinger()
        if going_away:
            conn.close(GOING_AWAY, "going away")
        try:
            yield conn
        finally:
            with self._changed:
                self._open.discard(conn)
                self._changed.notify_all()

    def count(self) -> int:
        """How many sockets are open."""
        with self._changed:
            return len(self._open)

    def going_away(self, wait: float) -> None:
        """Close every open socket (and any opened from now on) with 1001 "going away", wait up to `wait` seconds
        for their handlers to end, then drop the connections still open. Only the first call does anything."""
        with self._changed:
            if self._going_away:
                return
            self._going_away = True
            conns = list(self._open)
        if conns:
            log.info("closing %d open socket(s): going away", len(conns))
        for conn in conns:
            if not conn.close(GOING_AWAY, "going away"):
                conn.drop()
        deadline = time.monotonic() + wait
        with self._changed:
            while self._open and self._changed.wait(max(0.0, deadline - time.monotonic())):
                pass
            left = list(self._open)
        for conn in left:
            conn.drop()

    def _start_pinger(self) -> None:
        if self.ping_interval and self._pinger is None:
            self._pinger = threading.Thread(target=self._ping_forever, name="ws-pinger", daemon=True)
            self._pinger.start()

    def _ping_forever(self) -> None:
        tick = min(1.0, self.ping_interval / 4)
        while True:
            time.sleep(tick)
            with self._changed:
                conns = list(self._open)
            for conn in conns:
                try:
                    self._keep_alive(conn, time.monotonic())
                except Exception:  # never let one socket stop the pings of the others
                    log.exception("pinging the socket of %s failed", conn.address)

    def _keep_alive(self, conn: Connection, now: float) -> None:
        """Ping `conn` when it has been silent for an interval; drop it when it stopped answering."""
        interval = self.ping_interval
        if conn.ping_sent_at is not None:
            if conn.ws.pong_received:
                conn.alive_at, conn.ping_sent_at = now, None
            elif now - conn.ping_sent_at >= interval:
                return self._drop_dead(conn, f"no answer to a ping within {interval:g}s")
        if conn.ping_sent_at is None and now - conn.alive_at >= interval:
            if conn.ping():
                conn.ping_sent_at = now
            elif now - conn.alive_at >= 2 * interval:
                return self._drop_dead(conn, f"could not be pinged for {now - conn.alive_at:.0f}s")
        return None

    @staticmethod
    def _drop_dead(conn: Connection, why: str) -> None:
        log.warning("dropping the socket of %s on %s: %s", conn.address, conn.path, why)
        conn.ping_sent_at = None
        conn.alive_at = float("inf")  # dropped once; its handler ends and forgets it
        conn.drop()


# Under gevent (`collab-bus api`'s default worker) simple_websocket gives every socket a reader greenlet blocked in
# recv for its whole life (a copied C stack, a page of Python frames and a Thread: ~10 KiB of an idle socket's RSS).
# The sockets of these routes (view names, app/ws/routes.py) are read by their own handler instead: it waits for
# frames in `receive` until the socket closes, so the reading happens there (InlineEvent.wait). Other routes (the
# logs socket sends and never receives) keep their reader greenlet.
INLINE_READ_ROUTES = frozenset({"mailbox_socket", "broadcast_socket", "events_socket"})


def green_server_options() -> dict:
    """simple_websocket Server options (flask-sock's SOCK_SERVER_OPTIONS) for a gevent process: sockets of
    INLINE_READ_ROUTES are read by their handler (no reader greenlet); every socket forgets its HTTP handshake's
    state once open. No `ping_interval` may be added to them (Connections pings)."""
    return {"event_class": _socket_event, "thread_class": _socket_reader}


def _reads_inline() -> bool:
    from flask import has_request_context, request

    return has_request_context() and (request.endpoint or "").rpartition(".")[2] in INLINE_READ_ROUTES


def _socket_event():
    """The `event` of a socket being opened (in its handshake's request): an InlineEvent for INLINE_READ_ROUTES."""
    return InlineEvent() if _reads_inline() else threading.Event()


def _socket_reader(target):
    """The reader "thread" of a socket just opened (`target` is its Server's bound `_thread`): an InlineReader when
    its event is an InlineEvent, else simple_websocket's thread. Its wsproto connection is slimmed down either way."""
    ws = target.__self__
    _slim_down(ws.ws)
    if isinstance(ws.event, InlineEvent):
        ws.event.reader = InlineReader(ws)
        return ws.event.reader
    return threading.Thread(target=target)


class _Handshaken:
    """Stands for wsproto's H11Handshake of an open connection: WSConnection then only asks it for its events."""

    __slots__ = ()

    def events(self):
        """None: the handshake is over."""
        return iter(())


_HANDSHAKEN = _Handshaken()


class _EventQueue(list):
    """wsproto's queue of received events (a deque: 760 bytes each, mostly empty): a list with `popleft`."""

    __slots__ = ()

    def popleft(self):
        """The oldest event, removed."""
        return self.pop(0)


def _slim_down(conn) -> None:
    """Drop what wsproto's WSConnection `conn` keeps after its handshake and needs no more (~4 KiB): the handshake
    (an h11 connection, the request's headers; once the connection is open and it has no event left to give) and
    the deque its connection queues received events in (a list then)."""
    opened = conn.connection
    if opened is None:
        return
    if not getattr(conn.handshake, "_events", True):
        conn.handshake = _HANDSHAKEN
    if type(getattr(opened, "_events", None)) is deque:
        opened._events = _EventQueue(opened._events)


class InlineEvent:
    """The `event` of a socket read inline: `wait` reads the connection (InlineReader) until a frame has arrived,
    the connection ended or `timeout` seconds passed; True when set (a frame arrived, or the socket closed)."""

    __slots__ = ("_flag", "reader")

    def __init__(self):
        self._flag = False
        self.reader: InlineReader | None = None

    def set(self) -> None:
        """Mark it set (the reader: a frame arrived, or the connection ended)."""
        self._flag = True

    def clear(self) -> None:
        """Mark it not set."""
        self._flag = False

    def is_set(self) -> bool:
        """Whether it is set."""
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """Read the connection until it is set, the reader ended or `timeout` seconds passed; whether it is set."""
        if not self._flag and self.reader is not None:
            self.reader.read(timeout, self.is_set)
        return self._flag


class InlineReader:
    """Stands for simple_websocket's reader thread (Base._thread) of a socket whose handler reads it (gevent only).

    The connection is read in the greenlet that waits: by `InlineEvent.wait` while the handler waits for a frame, by
    `join` once it is closing. It is read as the reader thread reads it, a chunk at a time, answering pings and the
    closing handshake; the reader has "ended" (`is_alive` False, its socket closed) once the connection failed or
    ended, or once a chunk was read after the socket was closed (the reader's loop ends there too)."""

    __slots__ = ("_ws", "_alive", "name")
    daemon = True

    def __init__(self, ws):
        self._ws = ws
        self._alive = True
        self.name = "ws-inline-reader"

    def start(self) -> None:
        """Nothing to start: the connection is read when someone waits."""

    def is_alive(self) -> bool:
        """Whether the reader's loop would still run."""
        return self._alive

    def join(self, timeout: float | None = None) -> None:
        """Read until the reader ends, for at most `timeout` seconds."""
        self.read(timeout, lambda: False)

    def read(self, timeout: float | None, done) -> None:
        """Read chunks until `done()` is true, the reader ended or `timeout` seconds passed (0: what has arrived)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._alive and not done():
            if not self._read_chunk(None if deadline is None else max(0.0, deadline - time.monotonic())):
                return

    def _read_chunk(self, timeout: float | None) -> bool:
        """One turn of the reader's loop, waiting up to `timeout` seconds for data; False when none came."""
        import gevent

        ws = self._ws
        data = None
        try:
            with gevent.Timeout(timeout, False):
                data = ws.sock.recv(ws.receive_bytes)
            if data is None:
                return False
            if not data:
                raise OSError("connection ended")
            ws.ws.receive_data(data)
            ws.connected = ws._handle_events()
        except (OSError, LocalProtocolError):
            ws.connected = False
            ws.event.set()
        except Exception:  # a reader thread would die of it: its handler sees the reader gone
            log.exception("reading the socket failed")
            self._alive = False
            return True
        if not ws.connected:
            self._alive = False
            ws.sock.close()
        return True
