"""Managed sandboxes (containers the bus runs): create, start, stop, status, logs; and the edition's limits.

Commands answer 202 with the sandbox in its current state; a lifecycle task converges the container, and each
state change is an event on /ws/events. DELETE /api/v1/sandboxes/{id} (app.api.sandboxes) deletes one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from app.api.helpers import json_body
from app.auth import current_actor, require
from app.context import bus
from app.errors import Conflict
from app.models import SandboxState, isoformat
from app.runtime import ContainerNotFound, RuntimeFailure
from app.schemas import load_or_raise, query_args
from app.schemas.managed import CreateSandboxSchema, LogsQuery
from app.services import managed

bp = Blueprint("managed_sandboxes", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_CREATE_SANDBOX_SCHEMA = CreateSandboxSchema()
_LOGS_QUERY = LogsQuery()


def _enabled(ctx) -> None:
    if not ctx.settings.managed_sandboxes:
        raise Conflict("managed sandboxes are off on this bus: start it with MANAGED_SANDBOXES=true (and DOCKER_HOST "
                       "naming the container engine)", code="managed_sandboxes_disabled")


def _limits(ctx) -> managed.Limits:
    return managed.Limits(edition=ctx.settings.edition, cap=ctx.settings.sandbox_cap,
                          default_image=ctx.settings.default_sandbox_image)


@bp.post("/sandboxes")
def create_sandbox():
    """Create a managed sandbox: 202 with it in state `creating`; its container is created and started by a
    lifecycle task. 403 `edition_limit` past the edition's limit, 404 `unknown_workspace`, 409 `sandbox_exists`."""
    data = load_or_raise(_CREATE_SANDBOX_SCHEMA, json_body())
    require("sandboxes.manage", workspace=data["workspace"])
    ctx = bus()
    _enabled(ctx)
    sandbox, event = managed.create(ctx.db, data, _limits(ctx), current_actor())
    ctx.notifier.publish(event)
    managed.converge_later(ctx.lifecycle, [sandbox["sandbox_id"]])
    return jsonify(sandbox), 202, {"Location": f"/api/v1/sandboxes/{sandbox['sandbox_id']}"}


@bp.post("/sandboxes/<sandbox_id>/start")
def start_sandbox(sandbox_id: str):
    """Ask a managed sandbox to run (202); a stopped container starts again."""
    return _command(sandbox_id, SandboxState.RUNNING)


@bp.post("/sandboxes/<sandbox_id>/stop")
def stop_sandbox(sandbox_id: str):
    """Ask a managed sandbox to stop (202); its mailbox keeps what is sent to it meanwhile."""
    return _command(sandbox_id, SandboxState.STOPPED)


def _command(sandbox_id: str, desired: str):
    require("sandboxes.manage")
    ctx = bus()
    _enabled(ctx)
    sandbox = managed.request_state(ctx.db, sandbox_id, desired, current_actor())
    managed.converge_later(ctx.lifecycle, [sandbox_id])
    return jsonify(sandbox), 202


@bp.get("/sandboxes/<sandbox_id>/status")
def sandbox_status(sandbox_id: str):
    """A managed sandbox's desired and recorded state, and its container as the engine reports it right now
    (`container` is null, and `engine_error` says why, when the engine cannot tell)."""
    require("sandboxes.read")
    ctx = bus()
    sandbox = managed.get(ctx.db, sandbox_id)
    require("sandboxes.read", workspace=sandbox["workspace"])
    container, engine_error = None, None
    if sandbox["container_id"]:
        try:
            info = ctx.runtime.inspect(sandbox["container_id"])
            container = {"id": info.id, "status": info.status, "exit_code": info.exit_code, "error": info.error,
                         "oom_killed": info.oom_killed, "started_at": isoformat(info.started_at),
                         "finished_at": isoformat(info.finished_at)}
        except RuntimeFailure as exc:
            engine_error = exc.message
    return jsonify({**sandbox, "container": container, "engine_error": engine_error})


@bp.get("/sandboxes/<sandbox_id>/logs")
def sandbox_logs(sandbox_id: str):
    """The container's output as text lines: the last `tail` lines, those since `since` (unix seconds); with
    `follow=true` the answer streams new lines until the container stops. 409 `no_container` before it exists."""
    require("sandboxes.logs")
    query = load_or_raise(_LOGS_QUERY, query_args(request.args), what="query string")
    ctx = bus()
    sandbox = managed.get(ctx.db, sandbox_id)
    if not sandbox["container_id"]:
        raise Conflict(f"sandbox {sandbox_id!r} has no container yet (state {sandbox['state']})", code="no_container",
                       details={"sandbox_id": sandbox_id, "state": sandbox["state"]})
    since = datetime.fromtimestamp(query["since"], UTC) if query["since"] is not None else None
    try:
        lines = ctx.runtime.logs(sandbox["container_id"], tail=query["tail"], since=since, follow=query["follow"])
    except ContainerNotFound as exc:
        raise Conflict(f"the container of sandbox {sandbox_id!r} is gone: {exc.message}", code="no_container",
                       details={"sandbox_id": sandbox_id, "state": sandbox["state"]}) from None
    body = (line + "\n" for line in _until_engine_fails(lines))
    return Response(body if query["follow"] else "".join(body), mimetype="text/plain",
                    headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"})


def _until_engine_fails(lines):
    """The log lines; an engine that fails mid-stream ends the stream with a last line saying so."""
    try:
        yield from lines
    except RuntimeFailure as exc:
        yield f"[collab-bus: the log stream ended: {exc.message}]"


@bp.get("/edition")
def edition():
    """The bus's edition and its limits: how many managed sandboxes it runs at most (null: no limit) and in use."""
    require("sandboxes.read")
    ctx = bus()
    return jsonify({"edition": ctx.settings.edition, "limits": {"managed_sandboxes": ctx.settings.sandbox_cap},
                    "managed_sandboxes": {"enabled": ctx.settings.managed_sandboxes,
                                          "in_use": managed.count_in_use(ctx.db)}})
