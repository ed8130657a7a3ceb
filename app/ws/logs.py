"""/ws/sandboxes/{id}/logs: a managed sandbox's container output, live, for the GUI (the socket form of
`GET /api/v1/sandboxes/{id}/logs?follow=true`)."""

from __future__ import annotations

from flask import request
from simple_websocket import ConnectionClosed

from app.auth import require
from app.context import bus
from app.errors import BusError, Conflict
from app.runtime import RuntimeFailure
from app.schemas import load_or_raise, query_args
from app.schemas.managed import LogsQuery
from app.services import managed
from app.ws.reading import authenticate_socket, refuse_socket
from app.ws.routes import opened_socket, sock

NORMAL_CLOSURE = 1000
DEFAULT_TAIL = 100

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_LOGS_QUERY_TAIL = LogsQuery(only=("tail",))


@sock.route("/ws/sandboxes/<sandbox_id>/logs")
def logs_socket(ws, sandbox_id: str):
    """`welcome`, then the last `tail` lines (100 by default) and every new one as `log` frames, and `end` when
    the container stops (the socket then closes with 1000)."""
    ctx = bus()
    with opened_socket(ws) as conn:
        try:
            authenticate_socket(ctx, ws)
            require("sandboxes.logs")
            query = load_or_raise(_LOGS_QUERY_TAIL, query_args(request.args), what="query string")
            sandbox = managed.get(ctx.db, sandbox_id)
            if not sandbox["container_id"]:
                raise Conflict(f"sandbox {sandbox_id!r} has no container yet (state {sandbox['state']})",
                               code="no_container", details={"sandbox_id": sandbox_id, "state": sandbox["state"]})
            tail = DEFAULT_TAIL if query["tail"] is None else query["tail"]
            lines = ctx.runtime.logs(sandbox["container_id"], tail=tail, follow=True)
        except RuntimeFailure as exc:
            refuse_socket(ws, conn, Conflict(f"the engine cannot give the logs: {exc.message}", code="no_container",
                                         details={"sandbox_id": sandbox_id}))
            return
        except BusError as exc:
            refuse_socket(ws, conn, exc)
            return
        conn.send_json({"type": "welcome", "sandbox_id": sandbox_id, "container_id": sandbox["container_id"]})
        reason = "the container stopped"
        try:
            for line in lines:
                conn.send_json({"type": "log", "line": line})
        except RuntimeFailure as exc:
            reason = f"the engine ended the stream: {exc.message}"
        except ConnectionClosed:
            return
        try:
            conn.send_json({"type": "end", "reason": reason})
            conn.close(NORMAL_CLOSURE, "end of logs")
        except ConnectionClosed:
            pass
