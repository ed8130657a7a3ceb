"""The sandbox registry: register (idempotent), unregister, look up, list, mark online/offline."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.errors import Conflict, UnknownSandbox
from app.models import EntryState, MailboxEntry, Sandbox, SandboxState, SandboxStatus, isoformat, utcnow
from app.services import audit, workspaces
from app.services.directory import mark_changed
from app.services.events import SANDBOX_OFFLINE, SANDBOX_ONLINE, event_notification
from app.services.managed import container_view


def sandbox_to_dict(sandbox: Sandbox, settled_seq: int) -> dict:
    """The public representation of a sandbox; `settled_seq` as computed by `settled_seqs`."""
    return {
        "sandbox_id": sandbox.id,
        "workspace": sandbox.workspace,
        "agents": sandbox.agents or [],
        "metadata": sandbox.meta or {},
        "status": sandbox.status,
        "head_seq": sandbox.head_seq,
        "settled_seq": settled_seq,
        "last_heartbeat": isoformat(sandbox.last_heartbeat),
        "registered_at": isoformat(sandbox.registered_at),
        **container_view(sandbox),
    }


def settled_seqs(session, sandboxes: list[Sandbox]) -> dict[str, int]:
    """For each sandbox, the highest seq up to which every mailbox entry is settled (acknowledged or dead).

    A client that acknowledges what it handles and lost its own cursor resumes from there.
    """
    if not sandboxes:
        return {}
    first_unsettled = dict(session.execute(
        select(MailboxEntry.sandbox_id, func.min(MailboxEntry.seq))
        .where(MailboxEntry.sandbox_id.in_([s.id for s in sandboxes]), MailboxEntry.state == EntryState.DELIVERED)
        .group_by(MailboxEntry.sandbox_id)).all())
    return {s.id: first_unsettled[s.id] - 1 if s.id in first_unsettled else s.head_seq for s in sandboxes}


def _public(session, sandbox: Sandbox) -> dict:
    return sandbox_to_dict(sandbox, settled_seqs(session, [sandbox])[sandbox.id])


def register(db: Database, sandbox_id: str, workspace: str, agents: list, metadata: dict,
             actor: audit.Actor | None = None) -> tuple[dict, bool]:
    """Register `sandbox_id`, or update its agents and metadata if it exists; return (sandbox, created).

    Registering again with the same id is safe: the mailbox and its sequence are kept. Moving a
    registered sandbox to another workspace is refused with Conflict. A new registration starts
    `offline`; a mailbox socket makes it `online`. With `actor` the registration is audited.
    """
    try:
        return _register(db, sandbox_id, workspace, agents, metadata, actor)
    except IntegrityError:
        # Another caller registered the same new id at the same moment (PostgreSQL: both saw no row, the second
        # insert fails on the primary key once the first commits; SQLite serialises writers). The row exists now:
        # this registration is an update of it.
        return _register(db, sandbox_id, workspace, agents, metadata, actor)


def _register(db: Database, sandbox_id: str, workspace: str, agents: list, metadata: dict,
              actor: audit.Actor | None) -> tuple[dict, bool]:
    now = utcnow()
    with db.write() as session:
        workspaces.ensure(session, workspace)
        sandbox = session.get(Sandbox, sandbox_id)
        created = sandbox is None
        if created:
            sandbox = Sandbox(id=sandbox_id, workspace=workspace, head_seq=0, registered_at=now)
            session.add(sandbox)
        elif sandbox.is_registered and sandbox.workspace != workspace:
            raise Conflict(
                f"sandbox {sandbox_id!r} is registered in workspace {sandbox.workspace!r}; "
                "unregister it first to move it",
                code="workspace_mismatch",
                details={"sandbox_id": sandbox_id, "workspace": sandbox.workspace},
            )
        elif not sandbox.is_registered:
            created = True
            sandbox.registered_at = now
            sandbox.unregistered_at = None
        sandbox.workspace = workspace
        sandbox.agents = agents
        sandbox.meta = metadata
        if created:  # online once it connects a mailbox socket; until then messages wait in its mailbox
            sandbox.status = SandboxStatus.OFFLINE
        sandbox.last_heartbeat = now
        session.flush()
        if created:  # a new sandbox, or a return under a new token version: cached facts move
            mark_changed(session)
        if actor is not None:
            audit.record(session, actor, "sandbox.registered", target=f"sandbox:{sandbox_id}", workspace=workspace,
                         created=created, agents=[a.get("name") for a in agents])
        return _public(session, sandbox), created


def unregister(db: Database, sandbox_id: str, actor: audit.Actor | None = None) -> dict:
    """Mark `sandbox_id` unregistered (its mailbox is kept) and revoke its tokens; raise UnknownSandbox if it is not
    registered. With `actor` the unregistration is audited."""
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        sandbox.status = SandboxStatus.UNREGISTERED
        sandbox.unregistered_at = utcnow()
        sandbox.token_version += 1
        session.flush()
        mark_changed(session)
        if actor is not None:
            audit.record(session, actor, "sandbox.unregistered", target=f"sandbox:{sandbox_id}")
        return _public(session, sandbox)


def is_managed(db: Database, sandbox_id: str) -> bool:
    """True for a managed sandbox (one whose container the bus runs) that is not deleted."""
    with db.read() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        return bool(sandbox is not None and sandbox.managed and sandbox.state != SandboxState.DELETED)


def get_registered(db: Database, sandbox_id: str) -> dict:
    """The registered sandbox `sandbox_id`; raise UnknownSandbox if it never was or was unregistered."""
    with db.read() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        return _public(session, sandbox)


def list_sandboxes(db: Database, workspace: str | None = None, status: str | None = None,
                   include_unregistered: bool = False) -> list[dict]:
    """Sandboxes ordered by id, filtered by workspace and status; unregistered ones only when asked."""
    query = select(Sandbox).order_by(Sandbox.id)
    if workspace:
        query = query.where(Sandbox.workspace == workspace)
    if status:
        query = query.where(Sandbox.status == status)
    elif not include_unregistered:
        query = query.where(Sandbox.status != SandboxStatus.UNREGISTERED)
    with db.read() as session:
        sandboxes = session.scalars(query).all()
        settled = settled_seqs(session, sandboxes)
        return [sandbox_to_dict(s, settled[s.id]) for s in sandboxes]


def status_counts(db: Database) -> dict[str, int]:
    """How many sandboxes are online, offline and unregistered."""
    with db.read() as session:
        counts = dict(session.execute(select(Sandbox.status, func.count()).group_by(Sandbox.status)).tuples().all())
    return {status: counts.get(status, 0) for status in (SandboxStatus.ONLINE, SandboxStatus.OFFLINE,
                                                          SandboxStatus.UNREGISTERED)}


def mark_status(db: Database, sandbox_id: str, status: str, node: str | None = None,
                address: str | None = None) -> None:
    """Set a registered sandbox online or offline (and refresh its heartbeat); unknown ids are ignored. Going online
    with a socket records where it connected (`node`, `address`, since now)."""
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is not None and sandbox.is_registered:
            sandbox.status = status
            sandbox.last_heartbeat = utcnow()
            if node is not None:
                sandbox.connected_node, sandbox.connected_address = node, address
                sandbox.connected_since = sandbox.last_heartbeat


def heartbeat(db: Database, sandbox_id: str) -> tuple[dict, list[dict]]:
    """Record a sign of life: refresh last_heartbeat and bring an offline sandbox back online.

    Returns the sandbox and the event notifications of any status change; UnknownSandbox if it is
    not registered.
    """
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        sandbox.last_heartbeat = utcnow()
        events = []
        if sandbox.status != SandboxStatus.ONLINE:
            sandbox.status = SandboxStatus.ONLINE
            events.append(event_notification(SANDBOX_ONLINE, sandbox_id=sandbox_id))
        session.flush()
        return _public(session, sandbox), events


def sweep_silent(db: Database, timeout: float, now=None) -> list[dict]:
    """Mark offline every online sandbox with no heartbeat for `timeout` seconds; return the events."""
    now = now or utcnow()
    with db.write() as session:
        silent = session.scalars(select(Sandbox).where(
            Sandbox.status == SandboxStatus.ONLINE, Sandbox.last_heartbeat < now - timedelta(seconds=timeout),
        ).with_for_update(skip_locked=True)).all()
        for sandbox in silent:
            sandbox.status = SandboxStatus.OFFLINE
        return [event_notification(SANDBOX_OFFLINE, sandbox_id=s.id, last_heartbeat=isoformat(s.last_heartbeat))
                for s in silent]
