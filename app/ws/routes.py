"""WebSocket routes: a sandbox's mailbox (replay + live + ACK, app/ws/mailbox_socket.py), broadcast messages and system
events (app/ws/channels.py); the read loop and the closing are app/ws/reading.py's.

Frames are JSON objects with a `type`; docs/protocol.md describes each with examples.
"""

from __future__ import annotations

from contextlib import contextmanager

from flask import request
from flask_sock import Sock

from app.auth import client_address
from app.context import bus
from app.schemas import EventsQuery, load_or_raise, query_args
from app.ws.channels import stream_channel
from app.ws.mailbox_socket import serve_mailbox
from app.ws.reading import hang_up

sock = Sock()

_EVENTS_QUERY = EventsQuery()  # built once: `load` keeps no state on a marshmallow schema


@contextmanager
def opened_socket(ws):
    """The socket's Connection, known to this process's open sockets (pings, graceful stop) while it is open; when
    the handler is done, the connection is closed (handshake, then TCP)."""
    try:
        with bus().sockets.opened(ws, client_address(), request.path) as conn:
            yield conn
    finally:
        hang_up(ws)


@sock.route("/ws/sandboxes/<sandbox_id>")
def mailbox_socket(ws, sandbox_id: str):
    """A sandbox's mailbox: `welcome`, replay of entries after `since` (after the settled seq when `since` is beyond
    the head: the welcome says `cursor_ahead`), live entries; the client sends `ack`."""
    with opened_socket(ws) as conn:
        serve_mailbox(bus(), ws, conn, sandbox_id)


@sock.route("/ws/broadcast")
def broadcast_socket(ws):
    """Every broadcast message accepted from now on, as `message` frames (no seq: not a mailbox)."""
    with opened_socket(ws) as conn:
        stream_channel(ws, conn, lambda: (bus().hub.subscribe_broadcast(), {}))


@sock.route("/ws/events")
def events_socket(ws):
    """System events (sandbox registered/unregistered/connected, message accepted/delivered) as `event` frames,
    each with an `id`; `?since=ID` first replays the events after that one which this API process still keeps."""
    def subscribe():
        query = load_or_raise(_EVENTS_QUERY, query_args(request.args), what="query string")
        return bus().hub.subscribe_events(query["since"])

    with opened_socket(ws) as conn:
        stream_channel(ws, conn, subscribe)
