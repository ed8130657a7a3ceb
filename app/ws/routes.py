"""WebSocket routes: a sandbox's mailbox (replay + live + ACK), broadcast messages, system events.

Frames are JSON objects with a `type`; docs/protocol.md describes each with examples.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import contextmanager

from flask import request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from app.auth import authenticate_frame, client_address, is_authenticated, refuse_credentials, require
from app.context import BusContext, bus
from app.errors import BusError, InvalidRequest, TooManyRequests, Unauthorized
from app.models import SandboxStatus
from app.schemas import (
    EventsQuery,
    MailboxQuery,
    NackFrameSchema,
    load_or_raise,
    parse_json,
    query_args,
)
from app.services import redelivery, registry, skills
from app.services.events import SANDBOX_CONNECTED, SANDBOX_DISCONNECTED, event_notification
from app.ws import frames
from app.ws.connections import Connection
from app.ws.frames import ack_seq
from app.ws.hub import CLOSE
from app.ws.stream import MailboxStream, resume_point, welcome_frame

log = logging.getLogger(__name__)

sock = Sock()

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every socket at once.
_SINCE_QUERY = MailboxQuery(only=("since",))
_EVENTS_QUERY = EventsQuery()
_NACK_FRAME_SCHEMA = NackFrameSchema()

CLOSE_POLICY = 1008
PING_TYPES = ("ping", "heartbeat")
CLOSE_REPLY_WAIT = 2.0  # seconds a refused socket waits for the client's closing reply
RECEIVE_POLL = 5.0  # seconds between checks that the socket's reader thread is still alive
ACK_RUN = 500  # most ack frames already received that are recorded in one transaction
SEND_RUN = 100  # most send frames already received that are accepted together (SendService.send_run)
RUN_LIMITS = {"ack": ACK_RUN, "send": SEND_RUN}
DISCONNECTED = 4000  # close code of a mailbox socket an operator disconnected (POST /api/v1/collaboration/disconnect)


def node_name() -> str:
    """This API process as connection details name it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def opened_socket(ws):
    """The socket's Connection, known to this process's open sockets (pings, graceful stop) while it is open; when
    the handler is done, the connection is closed (handshake, then TCP)."""
    try:
        with bus().sockets.opened(ws, client_address(), request.path) as conn:
            yield conn
    finally:
        _hang_up(ws)


@sock.route("/ws/sandboxes/<sandbox_id>")
def mailbox_socket(ws, sandbox_id: str):
    """A sandbox's mailbox: `welcome`, replay of entries after `since` (after the settled seq when `since` is beyond
    the head: the welcome says `cursor_ahead`), live entries; the client sends `ack`."""
    with opened_socket(ws) as sender:
        _serve_mailbox(bus(), ws, sender, sandbox_id)


def _serve_mailbox(ctx: BusContext, ws, sender: Connection, sandbox_id: str) -> None:
    try:
        authenticate_socket(ctx, ws)
        require("mailbox.read", sandbox_id=sandbox_id)
        since = load_or_raise(_SINCE_QUERY, query_args(request.args), what="query string")["since"]
        sandbox = registry.get_registered(ctx.db, sandbox_id)
        if ctx.hub.mailbox_socket_count(sandbox_id) >= ctx.settings.max_sockets_per_sandbox:
            raise TooManyRequests(f"sandbox {sandbox_id!r} already has {ctx.settings.max_sockets_per_sandbox} open "
                                  "mailbox sockets on this node", retry_after=1, code="too_many_sockets",
                                  details={"sandbox_id": sandbox_id, "limit": ctx.settings.max_sockets_per_sandbox})
    except BusError as exc:
        refuse_socket(ws, sender, exc)
        return
    subscriber = ctx.hub.subscribe_mailbox(sandbox_id, on_disconnect=lambda reason: sender.close(DISCONNECTED, reason))
    _set_presence(ctx, sandbox_id, SandboxStatus.ONLINE, SANDBOX_CONNECTED)
    since, cursor_ahead = resume_point(sandbox, since)
    redelivery.start_attempts(ctx.db, sandbox_id, since, ctx.policy)
    _route_waiting(ctx, sandbox)
    stream = MailboxStream(ctx, sender, sandbox_id, since, subscriber)
    sender.send_json(welcome_frame(ctx, sandbox, since, cursor_ahead))
    stream.start()
    try:
        _read_client_frames(ws, sender, lambda frame: _on_mailbox_frame(ctx, sender, sandbox_id, frame),
                            {"ack": lambda acks: _on_ack_frames(ctx, sender, sandbox_id, acks),
                             "send": lambda sends: frames.on_send_run(ctx, sender, sends)})
    finally:
        ctx.hub.unsubscribe(subscriber)
        subscriber.close()
        stream.join(timeout=5)
        if not ctx.hub.has_mailbox_socket(sandbox_id):  # another socket of this sandbox may still be open here
            _set_presence(ctx, sandbox_id, SandboxStatus.OFFLINE, SANDBOX_DISCONNECTED)


@sock.route("/ws/broadcast")
def broadcast_socket(ws):
    """Every broadcast message accepted from now on, as `message` frames (no seq: not a mailbox)."""
    with opened_socket(ws) as sender:
        _stream_channel(ws, sender, lambda: (bus().hub.subscribe_broadcast(), {}))


@sock.route("/ws/events")
def events_socket(ws):
    """System events (sandbox registered/unregistered/connected, message accepted/delivered) as `event` frames,
    each with an `id`; `?since=ID` first replays the events after that one which this API process still keeps."""
    def subscribe():
        query = load_or_raise(_EVENTS_QUERY, query_args(request.args), what="query string")
        return bus().hub.subscribe_events(query["since"])

    with opened_socket(ws) as sender:
        _stream_channel(ws, sender, subscribe)


def authenticate_socket(ctx: BusContext, ws) -> None:
    """Make sure the socket's caller is authenticated: by its handshake (header or `token` query parameter),
    else by its first frame, `{"type": "auth", "token": "…"}`, within AUTH_FRAME_TIMEOUT seconds (a socket
    silent that long is refused, counted and audited as a failed authentication)."""
    if is_authenticated():
        return
    timeout = ctx.settings.auth_frame_timeout
    raw = ws.receive(timeout=timeout)
    if raw is None:
        refuse_credentials(Unauthorized(
            f"no credentials within {timeout:g}s: send an `auth` frame first",
            details={"reason": "auth_frame_timeout"}))
    frame = parse_json(raw, what="frame", code="invalid_frame")
    authenticate_frame(frame if isinstance(frame, dict) else {})


def _stream_channel(ws, sender: Connection, subscribe) -> None:
    ctx = bus()
    try:
        authenticate_socket(ctx, ws)
        require("streams.observe")
        subscriber, welcome = subscribe()
    except BusError as exc:
        refuse_socket(ws, sender, exc)
        return

    def forward():
        try:
            while (item := subscriber.items.get()) is not CLOSE:
                sender.send(item)
        except ConnectionClosed:
            pass

    sender.send_json({"type": "welcome", **welcome})  # first, always; what arrives meanwhile waits in the queue
    streamer = threading.Thread(target=forward, name="ws-channel", daemon=True)
    streamer.start()
    try:
        _read_client_frames(ws, sender, lambda frame: False)
    finally:
        ctx.hub.unsubscribe(subscriber)
        subscriber.close()
        streamer.join(timeout=5)


def _read_client_frames(ws, sender: Connection, on_frame, on_runs: dict | None = None) -> None:
    """Read client frames until the socket closes; pass each to `on_frame` (False: not understood),
    answer pings with a pong and report bad frames with an `error` frame. `on_runs` maps a frame type (`ack`,
    `send`) to a handler of runs: the frames of that type already received one after the other are handed to it at
    once, as a list, before the frame that follows them."""
    pending = None
    while True:
        if pending is not None:
            raw, pending = pending, None
        else:
            try:
                raw = ws.receive(timeout=RECEIVE_POLL)
            except ConnectionClosed:  # the closing handshake is over (either side began it, e.g. 1009 too big)
                _drop_connection(ws)
                return
        if raw is None:
            if not ws.thread.is_alive():
                _drop_connection(ws)
                return
            continue
        try:
            frame = _parse_frame(raw)
            on_run = on_runs.get(frame["type"]) if on_runs else None
            if on_run is not None:
                run, pending = _frame_run(ws, frame)
                on_run(run)
                continue
            understood = on_frame(frame)
            if frame["type"] in PING_TYPES:
                sender.send_json({"type": "pong"})
            elif understood is False:
                raise InvalidRequest(f"unknown frame type {frame['type']!r}", code="invalid_frame",
                                     details={"type": frame["type"]})
        except BusError as exc:
            _try_send_error(sender, exc)


def _parse_frame(raw) -> dict:
    frame = parse_json(raw, what="frame", code="invalid_frame")
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise InvalidRequest("a frame must be a JSON object with a string `type`", code="invalid_frame")
    return frame


def _frame_run(ws, first: dict) -> tuple[list[dict], object]:
    """`first` and the frames of its type received right after it (without waiting, at most RUN_LIMITS of the type),
    and the raw frame that ended the run (None when nothing else had arrived)."""
    run, kind = [first], first["type"]
    while len(run) < RUN_LIMITS[kind]:
        try:
            raw = ws.receive(timeout=0)
        except ConnectionClosed:
            return run, None
        if raw is None:
            return run, None
        try:
            frame = _parse_frame(raw)
        except BusError:
            return run, raw
        if frame["type"] != kind:
            return run, raw
        run.append(frame)
    return run, None


def _drop_connection(ws) -> None:
    """End the TCP connection of a socket whose closing handshake began (simple_websocket leaves it open after it
    sent a close frame itself, and the client would wait for the server to hang up).

    First the reader gets its moment to finish: when the client began the close, the reader marks the socket
    closed before it sends the closing reply, and cutting the connection in between would leave the client with
    1006 (no close frame) instead of its own code."""
    if ws.thread is not threading.current_thread():
        ws.thread.join(timeout=CLOSE_REPLY_WAIT)
    try:
        ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _hang_up(ws) -> None:
    """Finish the closing handshake (beginning it if the handler did not) and end the TCP connection.

    Under werkzeug's server (embedded mode) both matter once the handler returns: werkzeug writes an HTTP response
    onto a connection still open, which a browser reads as a broken frame (it then drops frames it had not yet
    handed on), and it drains the socket until EOF, so if werkzeug, not simple_websocket's reader, read the
    client's closing reply, neither side would ever hang up."""
    if ws.connected:
        try:
            ws.close()
        except (ConnectionClosed, OSError):
            pass
    _drop_connection(ws)


def refuse_socket(ws, sender: Connection, exc: BusError) -> None:
    """Send an `error` frame for `exc` and close with 1008 and its code as the reason."""
    sender.error(exc)
    ws.close(reason=CLOSE_POLICY, message=exc.code)


def _try_send_error(sender: Connection, exc: BusError) -> None:
    try:
        sender.error(exc)
    except ConnectionClosed:
        pass


def _on_mailbox_frame(ctx: BusContext, sender: Connection, sandbox_id: str, frame: dict) -> bool:
    """Handle a client frame on a mailbox socket; False when its type is not one a mailbox takes."""
    if frame["type"] in PING_TYPES:  # a sign of life; answered with a pong like on every socket
        for event in registry.heartbeat(ctx.db, sandbox_id)[1]:
            ctx.notifier.publish(event)
    elif frame["type"] == "nack":
        require("mailbox.settle", sandbox_id=sandbox_id)
        nack = load_or_raise(_NACK_FRAME_SCHEMA, frame, what="nack frame")
        ctx.notifier.publish(redelivery.nack(ctx.db, sandbox_id, nack["seq"], nack["reason"]))
    elif frame["type"] in frames.SEND_FRAMES:
        frames.on_send(ctx, sender, frame)
    elif frame["type"] in frames.SUBSCRIPTION_FRAMES:
        frames.on_subscription(ctx, sender, sandbox_id, frame)
    else:
        return False
    return True


def _on_ack_frames(ctx: BusContext, sender: Connection, sandbox_id: str, frames: list[dict]) -> None:
    """Record a run of `ack` frames in one transaction (shared with the runs of other sockets that arrive
    meanwhile); answer each refused one with an `error` frame, in order (a successful ACK gets no reply)."""
    try:
        require("mailbox.settle", sandbox_id=sandbox_id)
    except BusError as exc:
        for _ in frames:
            _try_send_error(sender, exc)
        return
    outcomes: list = []  # per frame: its seq, or the validation error that refused it
    for frame in frames:
        try:
            outcomes.append(ack_seq(frame))  # `frames` is the run's list here
        except BusError as exc:
            outcomes.append(exc)
    seqs = [outcome for outcome in outcomes if not isinstance(outcome, BusError)]
    recorded = iter(ctx.acks.submit((sandbox_id, seqs)) if seqs else ())
    for outcome in outcomes:
        error = outcome if isinstance(outcome, BusError) else next(recorded)
        if isinstance(error, BusError):
            _try_send_error(sender, error)


def _route_waiting(ctx: BusContext, sandbox: dict) -> None:
    """A capable agent came online: messages to "any" waiting for one of its skills are routed now, not at the next
    outbox sweep."""
    try:
        for message_id, priority in skills.waiting_for(ctx.db, sandbox["agents"]):
            ctx.delivery.enqueue(message_id, priority)
    except Exception as exc:  # the outbox sweep routes them later
        log.warning("could not route the messages waiting for %s's skills: %s", sandbox["sandbox_id"], exc)


def _set_presence(ctx: BusContext, sandbox_id: str, status: str, event: str) -> None:
    online = status == SandboxStatus.ONLINE
    try:
        registry.mark_status(ctx.db, sandbox_id, status, node=node_name() if online else None,
                             address=client_address() if online else None)
    except Exception as exc:  # presence is advisory; never break the socket over it
        log.warning("could not mark %s %s: %s", sandbox_id, status, exc)
    ctx.notifier.publish(event_notification(event, sandbox_id=sandbox_id))
