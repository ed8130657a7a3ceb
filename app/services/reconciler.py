"""Keep the records of managed sandboxes and the engine in agreement (run by beat, and on engine events).

One pass (`reconcile`):
- a sandbox whose command was never carried out (its task was lost, its worker died) is converged again;
- a transitional state (creating, starting, stopping, deleting) older than its timeout becomes `error`;
- a sandbox recorded `running` whose container died is marked `stopped` with the exit reason; one whose container
  was removed behind the bus's back is marked `error` (both are reported, not restarted: a start brings it back);
- a container with this bus's label but no sandbox record is an orphan: removed once older than the grace period;
- a running sandbox of a workspace with `settings.idle_stop_minutes` that has neither received nor sent a message
  for that long is asked to stop (a message wakes it again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from app.db import Database
from app.models import MailboxEntry, Message, Sandbox, SandboxState, Workspace, aware, utcnow
from app.runtime import LABEL_INSTANCE, LABEL_SANDBOX, ContainerInfo, ContainerNotFound, ContainerRuntime
from app.services import audit, lifecycle, managed

S = SandboxState


@dataclass(frozen=True)
class ReconcileConfig:
    """The bus instance whose containers are ours, and how long states and orphans may last."""

    instance: str
    state_timeout: float
    orphan_grace: float


@dataclass
class Report:
    """What one pass did: sandboxes to converge (the caller enqueues them), marked, timed out; orphans removed."""

    converge: list[str] = field(default_factory=list)
    marked: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    idle_stopped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.converge or self.marked or self.timed_out or self.orphans_removed or self.idle_stopped)


@dataclass(frozen=True)
class _Row:
    id: str
    desired: str | None
    state: str | None
    reason: str | None
    changed_at: object
    container_id: str | None
    leased: bool


def reconcile(db: Database, runtime: ContainerRuntime, config: ReconcileConfig,
              emit: Callable[[dict], None]) -> Report:
    """One pass over every managed sandbox and every container of ours. Raises EngineUnavailable when the engine
    cannot be listed (nothing is marked then: an unreachable engine says nothing about containers)."""
    containers = runtime.find({LABEL_INSTANCE: config.instance})
    rows = _rows(db)
    report = Report()
    by_sandbox: dict[str, list[ContainerInfo]] = {}
    for container in containers:
        by_sandbox.setdefault(container.labels.get(LABEL_SANDBOX, ""), []).append(container)
    now = utcnow()
    for row in rows:
        if row.leased:
            continue  # a task is working on it
        if row.state in S.TRANSITIONAL and _age(row.changed_at, now) > config.state_timeout:
            lifecycle.fail(db, row.id, f"stuck in {row.state} for more than {config.state_timeout:g} s", emit)
            report.timed_out.append(row.id)
        elif _needs_converging(row):
            report.converge.append(row.id)
        elif _looks_changed(row, by_sandbox.get(row.id, [])) and observe(db, runtime, row.id, emit):
            report.marked.append(row.id)
    for sandbox_id in _idle(db, now):
        managed.request_state(db, sandbox_id, S.STOPPED, IDLE_ACTOR)
        report.idle_stopped.append(sandbox_id)
        report.converge.append(sandbox_id)
    known = {row.id for row in rows}
    for sandbox_id, found in by_sandbox.items():
        if sandbox_id in known:
            continue
        for container in found:
            if container.created_at is None or _age(container.created_at, now) >= config.orphan_grace:
                runtime.remove(container.id)
                report.orphans_removed.append(container.id)
    return report


SETTLED = (S.CREATED, S.RUNNING, S.STOPPED)  # states in which a sandbox has a container that should exist


def observe(db: Database, runtime: ContainerRuntime, sandbox_id: str, emit: Callable[[dict], None]) -> bool:
    """Check a settled sandbox's container (after an engine event or in a sweep): a `running` one whose container
    died becomes `stopped` with the exit reason; one whose container was removed by hand becomes `error`. True when
    it was marked."""
    with db.read() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.managed or sandbox.state not in SETTLED or not sandbox.container_id:
            return False
        state, container_id = sandbox.state, sandbox.container_id
    try:
        container = runtime.inspect(container_id)
    except ContainerNotFound:
        return lifecycle.mark(db, sandbox_id, state, S.ERROR,
                              f"container {container_id[:12]} was removed outside the bus", emit, container_id=None)
    if state != S.RUNNING or container.running:
        return False
    return lifecycle.mark(db, sandbox_id, S.RUNNING, S.STOPPED, lifecycle.exit_reason(container), emit)


IDLE_ACTOR = audit.Actor("system:idle-policy", None, None)


def _idle(db: Database, now) -> list[str]:
    """Running sandboxes of workspaces with an idle policy, silent (no mailbox entry, no message sent, no start)
    for longer than it allows."""
    with db.read() as session:
        limits = {w.id: (w.settings or {}).get("idle_stop_minutes") for w in session.scalars(select(Workspace))}
        limits = {workspace: minutes for workspace, minutes in limits.items() if minutes}
        if not limits:
            return []
        idle = []
        for sandbox in session.scalars(select(Sandbox).where(
                Sandbox.managed, Sandbox.workspace.in_(list(limits)), Sandbox.state == S.RUNNING,
                Sandbox.desired_state == S.RUNNING)):
            received = session.scalar(select(MailboxEntry.created_at).where(MailboxEntry.sandbox_id == sandbox.id)
                                      .order_by(MailboxEntry.seq.desc()).limit(1))
            sent = session.scalar(select(func.max(Message.created_at)).where(Message.from_sandbox == sandbox.id))
            moments = [aware(m) for m in (sandbox.state_changed_at, sandbox.last_activity_at, received, sent) if m]
            if moments and (now - max(moments)).total_seconds() > limits[sandbox.workspace] * 60:
                idle.append(sandbox.id)
        return idle


def _looks_changed(row: _Row, containers: list[ContainerInfo]) -> bool:
    """The engine's listing disagrees with the record: the container is missing, or not running while `running`."""
    if row.state not in SETTLED or not row.container_id:
        return False
    listed = next((c for c in containers if c.id == row.container_id), None)
    return listed is None or (row.state == S.RUNNING and not listed.running)


def _needs_converging(row: _Row) -> bool:
    """A command not carried out yet: a state that is neither what was asked nor explained by a reason."""
    if row.desired is None or row.desired == row.state:
        return False
    if row.state in S.TRANSITIONAL:
        return True  # its task died half-way (the lease lapsed)
    if row.desired == S.STOPPED and row.state == S.CREATED:
        return False  # created and never started: that is stopped
    return row.reason is None or row.desired != S.RUNNING


def _rows(db: Database) -> list[_Row]:
    now = utcnow()
    with db.read() as session:
        sandboxes = session.scalars(select(Sandbox).where(Sandbox.managed, Sandbox.state != S.DELETED)).all()
        return [_Row(s.id, s.desired_state, s.state, s.state_reason, s.state_changed_at, s.container_id,
                     bool(s.lease_owner and s.lease_expires_at and _after(s.lease_expires_at, now)))
                for s in sandboxes]


def _after(moment, now) -> bool:
    return aware(moment) > now


def _age(moment, now) -> float:
    return (now - aware(moment)).total_seconds() if moment is not None else float("inf")

