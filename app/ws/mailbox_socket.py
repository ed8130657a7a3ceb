"""A mailbox socket: refused or welcomed, the sandbox marked online, its entries streamed (app/ws/stream.py), its
frames handled (pings, `ack` runs, `nack`, `send` runs, `publish`, `subscribe`), and marked offline at the end."""

from __future__ import annotations

import logging
import os
import socket

from flask import request

from app.auth import client_address, require
from app.context import BusContext
from app.errors import BusError, TooManyRequests
from app.models import SandboxStatus
from app.schemas import MailboxQuery, NackFrameSchema, load_or_raise, query_args
from app.services import redelivery, registry, skills
from app.services.events import SANDBOX_CONNECTED, SANDBOX_DISCONNECTED, event_notification
from app.ws import frames
from app.ws.connections import Connection
from app.ws.frames import ack_seq
from app.ws.reading import PING_TYPES, authenticate_socket, read_client_frames, refuse_socket, try_send_error
from app.ws.stream import MailboxStream, resume_point, welcome_frame

log = logging.getLogger(__name__)

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every socket at once.
_SINCE_QUERY = MailboxQuery(only=("since",))
_NACK_FRAME_SCHEMA = NackFrameSchema()

DISCONNECTED = 4000  # close code of a mailbox socket an operator disconnected (POST /api/v1/collaboration/disconnect)


def node_name() -> str:
    """This API process as connection details name it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def serve_mailbox(ctx: BusContext, ws, conn: Connection, sandbox_id: str) -> None:
    """Serve `sandbox_id`'s mailbox socket until it closes (see app.ws.routes.mailbox_socket)."""
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
        refuse_socket(ws, conn, exc)
        return
    subscriber = ctx.hub.subscribe_mailbox(sandbox_id, on_disconnect=lambda reason: conn.close(DISCONNECTED, reason))
    _set_presence(ctx, sandbox_id, SandboxStatus.ONLINE, SANDBOX_CONNECTED)
    since, cursor_ahead = resume_point(sandbox, since)
    redelivery.start_attempts(ctx.db, sandbox_id, since, ctx.policy)
    _route_waiting(ctx, sandbox)
    stream = MailboxStream(ctx, conn, sandbox_id, since, subscriber)
    conn.send_json(welcome_frame(ctx, sandbox, since, cursor_ahead))
    stream.start()
    try:
        read_client_frames(ws, conn, lambda frame: _on_mailbox_frame(ctx, conn, sandbox_id, frame),
                           {"ack": lambda acks: _on_ack_frames(ctx, conn, sandbox_id, acks),
                            "send": lambda sends: frames.on_send_run(ctx, conn, sends)})
    finally:
        ctx.hub.unsubscribe(subscriber)
        subscriber.close()
        stream.join(timeout=5)
        if not ctx.hub.has_mailbox_socket(sandbox_id):  # another socket of this sandbox may still be open here
            _set_presence(ctx, sandbox_id, SandboxStatus.OFFLINE, SANDBOX_DISCONNECTED)


def _on_mailbox_frame(ctx: BusContext, conn: Connection, sandbox_id: str, frame: dict) -> bool:
    """Handle a client frame on a mailbox socket; False when its type is not one a mailbox takes."""
    if frame["type"] in PING_TYPES:  # a sign of life; answered with a pong like on every socket
        for event in registry.heartbeat(ctx.db, sandbox_id)[1]:
            ctx.notifier.publish(event)
    elif frame["type"] == "nack":
        require("mailbox.settle", sandbox_id=sandbox_id)
        nack = load_or_raise(_NACK_FRAME_SCHEMA, frame, what="nack frame")
        ctx.notifier.publish(redelivery.nack(ctx.db, sandbox_id, nack["seq"], nack["reason"]))
    elif frame["type"] == "publish":
        frames.on_publish(ctx, conn, frame)
    elif frame["type"] in frames.SUBSCRIPTION_FRAMES:
        frames.on_subscription(ctx, conn, sandbox_id, frame)
    else:
        return False
    return True


def _on_ack_frames(ctx: BusContext, conn: Connection, sandbox_id: str, frames: list[dict]) -> None:
    """Record a run of `ack` frames in one transaction (shared with the runs of other sockets that arrive
    meanwhile); answer each refused one with an `error` frame, in order (a successful ACK gets no reply)."""
    try:
        require("mailbox.settle", sandbox_id=sandbox_id)
    except BusError as exc:
        for _ in frames:
            try_send_error(conn, exc)
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
            try_send_error(conn, error)


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
