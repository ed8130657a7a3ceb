"""The channel sockets, broadcast and events: a welcome, then every item the hub routes to the channel, forwarded as
it comes, until the socket closes."""

from __future__ import annotations

import threading

from simple_websocket import ConnectionClosed

from app.auth import require
from app.context import bus
from app.errors import BusError
from app.ws.connections import Connection
from app.ws.hub import CLOSE
from app.ws.reading import authenticate_socket, read_client_frames, refuse_socket


def stream_channel(ws, conn: Connection, subscribe) -> None:
    """Serve a channel socket: authenticated, allowed to observe streams, `subscribe()` gives its hub subscriber and
    welcome; the subscriber's items are sent as they come while its frames are read."""
    ctx = bus()
    try:
        authenticate_socket(ctx, ws)
        require("streams.observe")
        subscriber, welcome = subscribe()
    except BusError as exc:
        refuse_socket(ws, conn, exc)
        return

    def forward():
        try:
            while (item := subscriber.items.get()) is not CLOSE:
                conn.send(item)
        except ConnectionClosed:
            pass

    conn.send_json({"type": "welcome", **welcome})  # first, always; what arrives meanwhile waits in the queue
    streamer = threading.Thread(target=forward, name="ws-channel", daemon=True)
    streamer.start()
    try:
        read_client_frames(ws, conn, lambda frame: False)
    finally:
        ctx.hub.unsubscribe(subscriber)
        subscriber.close()
        streamer.join(timeout=5)
