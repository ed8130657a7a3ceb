"""A socket's read side and its end: authentication by first frame, the read loop (frames one by one, and runs of
`ack` and `send` frames already received handed over together), bad frames answered, the refusal and the hang-up."""

from __future__ import annotations

import socket
import threading

from simple_websocket import ConnectionClosed

from app.auth import authenticate_frame, is_authenticated, refuse_credentials
from app.context import BusContext
from app.errors import BusError, InvalidRequest, Unauthorized
from app.schemas import parse_json
from app.ws.connections import Connection

CLOSE_POLICY = 1008
PING_TYPES = ("ping", "heartbeat")
CLOSE_REPLY_WAIT = 2.0  # seconds a refused socket waits for the client's closing reply
RECEIVE_POLL = 5.0  # seconds between checks that the socket's reader thread is still alive
ACK_RUN = 500  # most ack frames already received that are recorded in one transaction
SEND_RUN = 100  # most send frames already received that are accepted together (SendService.send_run)
RUN_LIMITS = {"ack": ACK_RUN, "send": SEND_RUN}


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


def read_client_frames(ws, conn: Connection, on_frame, on_runs: dict | None = None) -> None:
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
                conn.send_json({"type": "pong"})
            elif understood is False:
                raise InvalidRequest(f"unknown frame type {frame['type']!r}", code="invalid_frame",
                                     details={"type": frame["type"]})
        except BusError as exc:
            try_send_error(conn, exc)


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


def hang_up(ws) -> None:
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


def refuse_socket(ws, conn: Connection, exc: BusError) -> None:
    """Send an `error` frame for `exc` and close with 1008 and its code as the reason."""
    conn.error(exc)
    ws.close(reason=CLOSE_POLICY, message=exc.code)


def try_send_error(conn: Connection, exc: BusError) -> None:
    try:
        conn.error(exc)
    except ConnectionClosed:
        pass
