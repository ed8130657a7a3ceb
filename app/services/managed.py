"""Managed sandboxes as the API sees them: create one, ask it to start, stop or be deleted.

Each command records the sandbox's *desired state* and answers at once; a lifecycle task (app.services.lifecycle)
then drives the engine until the observed `state` matches. The caller enqueues that task with the ids returned.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select

from app.db import Database
from app.errors import Conflict, Forbidden, UnknownSandbox
from app.models import Sandbox, SandboxState, SandboxStatus, isoformat, utcnow
from app.services import audit, workspaces
from app.services.directory import mark_changed
from app.services.events import SANDBOX_STATE_CHANGED, SANDBOX_WAKING, event_notification
from app.services.ports import LifecycleQueue

log = logging.getLogger(__name__)

RESERVED_ENV = ("SANDBOX_ID", "WORKSPACE", "COLLABORATION_BUS_URL", "BUS_TOKEN")  # the bus sets these itself


@dataclass(frozen=True)
class Limits:
    """What the edition and the bus's settings allow: `cap` managed sandboxes at once (None: no limit)."""

    edition: str
    cap: int | None
    default_image: str


def container_view(sandbox: Sandbox) -> dict:
    """The managed part of a sandbox's public representation (empty for a self-registered sandbox)."""
    if not sandbox.managed:
        return {"managed": False}
    return {
        "managed": True,
        "desired_state": sandbox.desired_state,
        "state": sandbox.state,
        "state_reason": sandbox.state_reason,
        "state_changed_at": isoformat(sandbox.state_changed_at),
        "container_id": sandbox.container_id,
        "spec": sandbox.spec or {},
    }


def in_use(session) -> int:
    """How many managed sandboxes count against the edition's limit (every one not yet deleted)."""
    return session.scalar(select(func.count()).select_from(Sandbox).where(
        Sandbox.managed, Sandbox.state != SandboxState.DELETED)) or 0


def count_in_use(db: Database) -> int:
    """How many managed sandboxes exist (not yet deleted)."""
    with db.read() as session:
        return in_use(session)


def create(db: Database, request: dict, limits: Limits, actor: audit.Actor) -> tuple[dict, dict]:
    """Record a new managed sandbox (state `creating`, desired `running`, or `stopped` when `start` is false).

    `request`: sandbox_id (generated when absent), workspace (must exist), image, command, env, limits,
    network_mode, agents, metadata, start. Forbidden `edition_limit` past the edition's cap; Conflict
    `sandbox_exists` when the id is in use. Returns (the sandbox's view, its state-change event).
    """
    sandbox_id = request.get("sandbox_id") or f"sbx-{secrets.token_hex(6)}"
    with db.write() as session:
        defaults = workspaces.settings_of(session, request["workspace"])
        count = in_use(session)
        if limits.cap is not None and count >= limits.cap:
            raise Forbidden(f"the {limits.edition} edition runs at most {limits.cap} managed sandboxes "
                            f"({count} exist); delete one or use the enterprise edition", code="edition_limit",
                            details={"edition": limits.edition, "limit": limits.cap, "in_use": count})
        sandbox = session.get(Sandbox, sandbox_id, with_for_update=True)
        managed_alive = sandbox is not None and sandbox.managed and sandbox.state != SandboxState.DELETED
        if sandbox is not None and (sandbox.is_registered or managed_alive):
            raise Conflict(f"sandbox {sandbox_id!r} already exists", code="sandbox_exists",
                           details={"sandbox_id": sandbox_id})
        now = utcnow()
        if sandbox is None:
            sandbox = Sandbox(id=sandbox_id, head_seq=0)
            session.add(sandbox)
        desired = SandboxState.RUNNING if request.get("start", True) else SandboxState.STOPPED
        sandbox.workspace = request["workspace"]
        sandbox.agents = request.get("agents") or []
        sandbox.meta = request.get("metadata") or {}
        sandbox.status = SandboxStatus.OFFLINE  # registered: messages wait in its mailbox until its agent connects
        sandbox.registered_at, sandbox.unregistered_at, sandbox.last_heartbeat = now, None, None
        sandbox.managed, sandbox.desired_state, sandbox.container_id = True, desired, None
        sandbox.spec = _container_spec(request, defaults, limits.default_image)
        sandbox.lease_owner = sandbox.lease_expires_at = sandbox.container_created_at = None
        sandbox.last_activity_at = now
        event = _set_state(sandbox, SandboxState.CREATING, None, now)
        session.flush()
        mark_changed(session)
        audit.record(session, actor, "sandbox.created", target=f"sandbox:{sandbox_id}", workspace=sandbox.workspace,
                     image=sandbox.spec["image"], desired_state=desired)
        return _view(sandbox), event


def request_state(db: Database, sandbox_id: str, desired: str, actor: audit.Actor) -> dict:
    """Ask a managed sandbox to be running, stopped or deleted; its view. UnknownSandbox if there is no such
    managed sandbox (or it is deleted), Conflict `not_managed` for a self-registered one."""
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id, with_for_update=True)
        if sandbox is None or (sandbox.managed and sandbox.state == SandboxState.DELETED) or (
                not sandbox.managed and not sandbox.is_registered):
            raise UnknownSandbox(sandbox_id)
        if not sandbox.managed:
            raise Conflict(f"sandbox {sandbox_id!r} registered itself: the bus runs no container for it",
                           code="not_managed", details={"sandbox_id": sandbox_id})
        if sandbox.desired_state == SandboxState.DELETED and desired != SandboxState.DELETED:
            raise Conflict(f"sandbox {sandbox_id!r} is being deleted", code="sandbox_deleting",
                           details={"sandbox_id": sandbox_id})
        previous, sandbox.desired_state = sandbox.desired_state, desired
        sandbox.state_reason = None  # a new command: the reconciler converges a sandbox whose state has no reason
        if desired == SandboxState.RUNNING:
            sandbox.last_activity_at = utcnow()
        audit.record(session, actor, f"sandbox.{_VERBS[desired]}_requested", target=f"sandbox:{sandbox_id}",
                     previous=previous)
        return _view(sandbox)


_VERBS = {SandboxState.RUNNING: "start", SandboxState.STOPPED: "stop", SandboxState.DELETED: "delete"}


def converge_later(queue: LifecycleQueue, sandbox_ids: list[str]) -> None:
    """Ask the lifecycle workers to converge these sandboxes (after their command committed). A broker that cannot
    take the task is logged, not raised: the command stands, and the reconciler sweep converges it later."""
    for sandbox_id in sandbox_ids:
        try:
            queue.converge(sandbox_id)
        except Exception as exc:
            log.warning("sandbox %s: could not enqueue its lifecycle task (%s); the reconciler will", sandbox_id, exc)


def wake(db: Database, sandbox_ids: list[str], emit) -> list[str]:
    """Ask the stopped managed sandboxes among `sandbox_ids` (recipients of a direct message) to run again: their
    agent then reads the message from the mailbox. Returns the ids to converge."""
    if not sandbox_ids:
        return []
    asleep = (Sandbox.id.in_(sandbox_ids), Sandbox.managed, Sandbox.desired_state == SandboxState.STOPPED)
    with db.read() as session:  # the common case, nothing asleep, costs no write transaction
        if session.scalar(select(func.count()).select_from(Sandbox).where(*asleep)) == 0:
            return []
    woken = []
    with db.write() as session:
        for sandbox in session.scalars(select(Sandbox).where(*asleep).with_for_update()):
            sandbox.desired_state, sandbox.state_reason, sandbox.last_activity_at = SandboxState.RUNNING, None, utcnow()
            audit.record(session, WAKE_ACTOR, "sandbox.start_requested", target=f"sandbox:{sandbox.id}",
                         previous=SandboxState.STOPPED, reason="a message arrived")
            woken.append(sandbox.id)
    for sandbox_id in woken:
        log.info("sandbox %s: a message arrived while it was stopped; starting it", sandbox_id)
        emit(event_notification(SANDBOX_WAKING, sandbox_id=sandbox_id))
    return woken


WAKE_ACTOR = audit.Actor("system:wake-on-message", None, None)


def get(db: Database, sandbox_id: str) -> dict:
    """A managed sandbox's view (with its registration); UnknownSandbox when there is none."""
    with db.read() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.managed or sandbox.state == SandboxState.DELETED:
            raise UnknownSandbox(sandbox_id, "is not a managed sandbox")
        return _view(sandbox)


def _view(sandbox: Sandbox) -> dict:
    return {"sandbox_id": sandbox.id, "workspace": sandbox.workspace, "status": sandbox.status,
            **container_view(sandbox)}


def _set_state(sandbox: Sandbox, state: str, reason: str | None, now) -> dict:
    """Move the sandbox's observed state (in its session); the event that says so."""
    sandbox.state, sandbox.state_reason, sandbox.state_changed_at = state, reason, now
    return state_event(sandbox)


def state_event(sandbox: Sandbox) -> dict:
    """The `sandbox.state_changed` event notification for the sandbox's current state."""
    return event_notification(SANDBOX_STATE_CHANGED, sandbox_id=sandbox.id, workspace=sandbox.workspace,
                              state=sandbox.state, desired_state=sandbox.desired_state, reason=sandbox.state_reason)


def _container_spec(request: dict, defaults: dict, default_image: str) -> dict:
    """What the container runs, with the workspace's defaults filled in."""
    limits = {**(defaults.get("default_limits") or {}), **(request.get("limits") or {})}
    return {
        "image": request.get("image") or defaults.get("default_image") or default_image,
        "command": request.get("command"),
        "env": request.get("env") or {},
        "limits": limits,
        "network_mode": request.get("network_mode") or "host",
    }
