"""Workspaces: the scope of sandboxes, policies, broadcasts and registrar keys, and the defaults their managed
sandboxes start from."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import Database
from app.errors import Conflict, UnknownWorkspace
from app.models import Sandbox, SandboxState, SandboxStatus, Workspace, isoformat, utcnow
from app.services import audit
from app.services.directory import mark_changed


def workspace_to_dict(workspace: Workspace, sandbox_count: int) -> dict:
    """The public representation of a workspace; `sandbox_count` counts its registered or managed sandboxes."""
    return {
        "id": workspace.id,
        "name": workspace.name,
        "description": workspace.description or "",
        "settings": workspace.settings or {},
        "sandbox_count": sandbox_count,
        "created_at": isoformat(workspace.created_at),
        "updated_at": isoformat(workspace.updated_at),
    }


# The sandboxes that keep a workspace in use: registered ones, and managed ones not yet deleted.
_LIVE = (Sandbox.status != SandboxStatus.UNREGISTERED) | (
    Sandbox.managed & (Sandbox.state.is_(None) | (Sandbox.state != SandboxState.DELETED)))


def _live_sandboxes(workspace_id: str):
    return select(Sandbox).where(Sandbox.workspace == workspace_id, _LIVE)


def _counts(session, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = session.execute(select(Sandbox.workspace, func.count()).where(Sandbox.workspace.in_(ids), _LIVE)
                           .group_by(Sandbox.workspace)).all()
    return dict(rows)


def ensure(session, workspace_id: str) -> None:
    """Create the workspace in `session` if it does not exist (a self-registered sandbox may name a new one)."""
    if session.get(Workspace, workspace_id) is None:
        now = utcnow()
        session.add(Workspace(id=workspace_id, name=workspace_id, description="", settings={}, created_at=now,
                              updated_at=now))
        session.flush()


def create(db: Database, workspace_id: str, name: str | None, description: str, settings: dict,
           actor: audit.Actor) -> dict:
    """Create a workspace; Conflict `workspace_exists` if the id is taken."""
    now = utcnow()
    with db.write() as session:
        if session.get(Workspace, workspace_id) is not None:
            raise Conflict(f"workspace {workspace_id!r} already exists", code="workspace_exists",
                           details={"workspace": workspace_id})
        workspace = Workspace(id=workspace_id, name=name or workspace_id, description=description,
                              settings=settings, created_at=now, updated_at=now)
        session.add(workspace)
        session.flush()
        audit.record(session, actor, "workspace.created", target=f"workspace:{workspace_id}")
        return workspace_to_dict(workspace, 0)


def get(db: Database, workspace_id: str) -> dict:
    """One workspace; UnknownWorkspace if there is none with that id."""
    with db.read() as session:
        workspace = session.get(Workspace, workspace_id)
        if workspace is None:
            raise UnknownWorkspace(workspace_id)
        return workspace_to_dict(workspace, _counts(session, [workspace_id]).get(workspace_id, 0))


def settings_of(session, workspace_id: str) -> dict:
    """The workspace's settings in `session`; UnknownWorkspace if it does not exist."""
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise UnknownWorkspace(workspace_id)
    return workspace.settings or {}


def list_all(db: Database) -> list[dict]:
    """Every workspace, ordered by id."""
    with db.read() as session:
        workspaces = session.scalars(select(Workspace).order_by(Workspace.id)).all()
        counts = _counts(session, [w.id for w in workspaces])
        return [workspace_to_dict(w, counts.get(w.id, 0)) for w in workspaces]


def update(db: Database, workspace_id: str, changes: dict, actor: audit.Actor) -> dict:
    """Change a workspace's name, description or settings (the keys present in `changes`)."""
    with db.write() as session:
        workspace = session.get(Workspace, workspace_id)
        if workspace is None:
            raise UnknownWorkspace(workspace_id)
        for field in ("name", "description", "settings"):
            if field in changes:
                setattr(workspace, field, changes[field])
        workspace.updated_at = utcnow()
        session.flush()
        audit.record(session, actor, "workspace.updated", target=f"workspace:{workspace_id}", fields=sorted(changes))
        return workspace_to_dict(workspace, _counts(session, [workspace_id]).get(workspace_id, 0))


def delete(db: Database, workspace_id: str, force: bool, actor: audit.Actor) -> list[str]:
    """Delete a workspace. With sandboxes in it: Conflict `workspace_not_empty`, unless `force`; then its
    registered sandboxes are unregistered and its managed ones asked to be deleted, in the same transaction.

    Returns the ids of the managed sandboxes now to be deleted (their lifecycle tasks stop and remove them).
    """
    with db.write() as session:
        workspace = session.get(Workspace, workspace_id)
        if workspace is None:
            raise UnknownWorkspace(workspace_id)
        sandboxes = session.scalars(_live_sandboxes(workspace_id).with_for_update()).all()
        if sandboxes and not force:
            raise Conflict(f"workspace {workspace_id!r} has {len(sandboxes)} sandbox(es); delete them first or use "
                           "?force=true", code="workspace_not_empty",
                           details={"workspace": workspace_id, "sandboxes": [s.id for s in sandboxes]})
        to_delete = _release(session, sandboxes)
        session.delete(workspace)
        audit.record(session, actor, "workspace.deleted", target=f"workspace:{workspace_id}", force=force,
                     sandboxes=[s.id for s in sandboxes])
        return to_delete


def _release(session, sandboxes: list[Sandbox]) -> list[str]:
    """Unregister `sandboxes` (their tokens stop working) and ask the managed ones to be deleted; their ids."""
    now = utcnow()
    for sandbox in sandboxes:
        if sandbox.status != SandboxStatus.UNREGISTERED:
            sandbox.status = SandboxStatus.UNREGISTERED
            sandbox.unregistered_at = now
            sandbox.token_version += 1
        if sandbox.managed:
            sandbox.desired_state = SandboxState.DELETED
    if sandboxes:
        mark_changed(session)
    return [s.id for s in sandboxes if s.managed]
