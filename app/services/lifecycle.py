"""The lifecycle of managed sandboxes: converge one sandbox's container to its desired state, under a per-sandbox
lease, through a ContainerRuntime.

`converge` is idempotent: it observes the engine first (the container by id, else by our labels) and does only
the steps still missing, so a task that runs twice, or after a worker died half-way, finishes the job. The lease
(`lease_owner`, `lease_expires_at` on the sandbox row) keeps two lifecycle commands for one sandbox from running
at once, and lapses by itself when its holder dies. Every state change is committed, audited and announced
(`emit`) as it happens.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import or_, select, update

from app.db import Database
from app.models import Sandbox, SandboxState, SandboxStatus, aware, utcnow
from app.runtime import (
    LABEL_INSTANCE,
    LABEL_SANDBOX,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    RuntimeFailure,
    labels_for,
)
from app.services import audit
from app.services.auth import issue_sandbox_token
from app.services.directory import mark_changed
from app.services.managed import state_event

LIFECYCLE_ACTOR = audit.Actor("system:lifecycle", None, None)
S = SandboxState


@dataclass(frozen=True)
class LifecycleConfig:
    """What converging needs besides the database and the engine."""

    instance: str  # the bus instance's label value
    public_url: str  # COLLABORATION_BUS_URL inside containers
    jwt_secret: str
    token_ttl: int
    lease_seconds: float
    stop_timeout: float


class LeaseBusy(Exception):
    """Another lifecycle task holds this sandbox's lease; try again later."""


class LeaseLost(Exception):
    """This task's lease lapsed and another task took the sandbox over; it stops without writing."""


@dataclass(frozen=True)
class _Sandbox:
    id: str
    workspace: str
    desired: str | None
    state: str | None
    container_id: str | None
    spec: dict
    container_created_at: object


def converge(db: Database, runtime: ContainerRuntime, config: LifecycleConfig, sandbox_id: str, owner: str,
             emit: Callable[[dict], None]) -> str | None:
    """Drive `sandbox_id`'s container toward its desired state; return the state reached (None: not managed).

    Raises LeaseBusy when another task holds the sandbox, and a transient RuntimeFailure (engine unreachable) for
    the caller to retry; an engine refusal (missing image, bad limit) ends in state `error` with its message.
    """
    if not _acquire(db, sandbox_id, owner, config.lease_seconds):
        raise LeaseBusy(sandbox_id)
    try:
        sandbox = _load(db, sandbox_id)
        if sandbox is None:
            return None
        steps = _Steps(db, runtime, config, sandbox, owner, emit)
        try:
            steps.run()
        except RuntimeFailure as exc:
            if exc.transient:
                raise
            steps.move(S.ERROR, exc.message)
        except LeaseLost:
            pass
        return steps.sandbox.state
    finally:
        _release(db, sandbox_id, owner)


def fail(db: Database, sandbox_id: str, reason: str, emit: Callable[[dict], None]) -> bool:
    """Put a managed sandbox in `error` with `reason` (its task gave up, or its state timed out)."""
    return mark(db, sandbox_id, None, S.ERROR, reason, emit)


def mark(db: Database, sandbox_id: str, expected: str | None, state: str, reason: str | None,
         emit: Callable[[dict], None], **values) -> bool:
    """Record an observed `state` (and column `values`) for a managed sandbox still in `expected` (None: any) that no
    task holds; audit and announce it. False when the sandbox moved on, is deleted or is held."""
    now = utcnow()
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id, with_for_update=True)
        if sandbox is None or not sandbox.managed or sandbox.state == S.DELETED:
            return False
        if (expected is not None and sandbox.state != expected) or (
                sandbox.lease_owner and sandbox.lease_expires_at and aware(sandbox.lease_expires_at) > now):
            return False
        sandbox.state, sandbox.state_reason, sandbox.state_changed_at = state, reason, now
        for name, value in values.items():
            setattr(sandbox, name, value)
        audit.record(session, LIFECYCLE_ACTOR, "sandbox.state_changed", target=f"sandbox:{sandbox_id}",
                     state=state, desired_state=sandbox.desired_state, reason=reason)
        event = state_event(sandbox)
    emit(event)
    return True


class _Steps:
    """The steps of one converge run; `sandbox` is the row as this run last wrote it."""

    def __init__(self, db, runtime, config, sandbox: _Sandbox, owner: str, emit):
        self.db, self.runtime, self.config = db, runtime, config
        self.sandbox, self.owner, self.emit = sandbox, owner, emit

    def run(self) -> None:
        desired = self.sandbox.desired
        container = self.observe()
        if desired == S.DELETED:
            self.move(S.DELETING)
            if container is not None:
                self.runtime.remove(container.id)
            for stray in self.runtime.find(self.labels()):  # one created by a task that died before saving its id
                self.runtime.remove(stray.id)
            self.deleted()
            return
        if container is not None and desired == S.RUNNING and not container.running and self.token_stale():
            self.runtime.remove(container.id)  # its BUS_TOKEN has expired or soon will: a fresh container gets one
            container = None
        if container is None:
            container = self.create()
        if desired == S.RUNNING:
            if not container.running:
                self.move(S.STARTING)
                self.runtime.start(container.id)
                container = self.runtime.inspect(container.id)
            self.settle(container)
        elif desired == S.STOPPED:
            if container.running:
                self.move(S.STOPPING)
                self.runtime.stop(container.id, self.config.stop_timeout)
                container = self.runtime.inspect(container.id)
            self.settle(container)

    def labels(self) -> dict[str, str]:
        return {LABEL_INSTANCE: self.config.instance, LABEL_SANDBOX: self.sandbox.id}

    def observe(self) -> ContainerInfo | None:
        """The sandbox's container as the engine sees it: by its recorded id, else by our labels; None if none."""
        if self.sandbox.container_id:
            try:
                return self.runtime.inspect(self.sandbox.container_id)
            except ContainerNotFound:
                self.write(container_id=None)
        found = self.runtime.find(self.labels())
        if not found:
            return None
        keep, *extra = sorted(found, key=lambda c: not c.running)
        for container in extra:
            self.runtime.remove(container.id)
        self.write(container_id=keep.id)
        return self.runtime.inspect(keep.id)

    def create(self) -> ContainerInfo:
        self.move(S.CREATING)
        spec = self.sandbox.spec
        limits = spec.get("limits") or {}
        token = self.token()
        env = {**(spec.get("env") or {}), "SANDBOX_ID": self.sandbox.id, "WORKSPACE": self.sandbox.workspace,
               "COLLABORATION_BUS_URL": self.config.public_url, "BUS_TOKEN": token}
        container_id = self.runtime.create(ContainerSpec(
            image=spec["image"], command=spec.get("command"), env=env,
            labels=labels_for(self.config.instance, self.sandbox.id, self.sandbox.workspace),
            memory_bytes=limits["memory_mb"] * 1024 * 1024 if limits.get("memory_mb") else None,
            cpus=limits.get("cpus"), pids_limit=limits.get("pids"), network_mode=spec.get("network_mode") or "host",
            name=_container_name(self.sandbox.id),
        ))
        self.write(container_id=container_id, container_created_at=utcnow())
        self.move(S.CREATED)
        return self.runtime.inspect(container_id)

    def settle(self, container: ContainerInfo) -> None:
        """Record where the container ended up after this run's last step."""
        if container.running:
            self.move(S.RUNNING)
        elif container.started_at is None:
            self.move(S.CREATED if self.sandbox.desired == S.STOPPED else S.ERROR,
                      None if self.sandbox.desired == S.STOPPED else container.error or "the container did not start")
        elif self.sandbox.desired == S.RUNNING:
            self.move(S.STOPPED, exit_reason(container))
        else:
            self.move(S.STOPPED)

    def token(self) -> str:
        with self.db.read() as session:
            sandbox = session.get(Sandbox, self.sandbox.id)
            return issue_sandbox_token(self.config.jwt_secret, sandbox, self.config.token_ttl)["token"]

    def token_stale(self) -> bool:
        created = aware(self.sandbox.container_created_at)
        if created is None:
            return False
        return utcnow() - created > timedelta(seconds=self.config.token_ttl / 2)

    def move(self, state: str, reason: str | None = None) -> None:
        """Commit the observed state (when it changed), audit it and announce it."""
        if state == self.sandbox.state and reason is None:
            self.write()
            return
        now = utcnow()
        with self.db.write() as session:
            self._owned_update(session, state=state, state_reason=reason, state_changed_at=now)
            audit.record(session, LIFECYCLE_ACTOR, "sandbox.state_changed", target=f"sandbox:{self.sandbox.id}",
                         state=state, desired_state=self.sandbox.desired, reason=reason)
            event = state_event(session.get(Sandbox, self.sandbox.id))
        self.sandbox = replace(self.sandbox, state=state)
        self.emit(event)

    def deleted(self) -> None:
        """The container is gone: the sandbox is deleted and unregistered (its tokens stop working)."""
        now = utcnow()
        with self.db.write() as session:
            self._owned_update(session, state=S.DELETED, state_reason=None, state_changed_at=now, container_id=None,
                               status=SandboxStatus.UNREGISTERED, unregistered_at=now,
                               token_version=Sandbox.token_version + 1)
            mark_changed(session)
            audit.record(session, LIFECYCLE_ACTOR, "sandbox.state_changed", target=f"sandbox:{self.sandbox.id}",
                         state=S.DELETED, desired_state=S.DELETED)
            event = state_event(session.get(Sandbox, self.sandbox.id))
        self.sandbox = replace(self.sandbox, state=S.DELETED, container_id=None)
        self.emit(event)

    def write(self, **values) -> None:
        """Write `values` to the row (and extend the lease), if this run still holds it."""
        with self.db.write() as session:
            self._owned_update(session, **values)
        self.sandbox = replace(self.sandbox, **{k: v for k, v in values.items()
                                                if k in ("container_id", "container_created_at")})

    def _owned_update(self, session, **values) -> None:
        expires = utcnow() + timedelta(seconds=self.config.lease_seconds)
        result = session.execute(update(Sandbox).where(Sandbox.id == self.sandbox.id, Sandbox.lease_owner == self.owner)
                                 .values(lease_expires_at=expires, **values))
        if result.rowcount != 1:
            raise LeaseLost(self.sandbox.id)


def exit_reason(container: ContainerInfo) -> str:
    """Why a container is not running, in the engine's terms."""
    if container.oom_killed:
        return f"killed for lack of memory (exit code {container.exit_code})"
    if container.error:
        return container.error
    return f"exited with code {container.exit_code}"


def _container_name(sandbox_id: str) -> str:
    """A readable, unique container name (lookups never use it: they go by label)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", sandbox_id)[:60]
    return f"collab-{safe}-{secrets.token_hex(3)}"


def _acquire(db: Database, sandbox_id: str, owner: str, seconds: float) -> bool:
    """Take the sandbox's lease for `owner` if it is free, lapsed, or already `owner`'s (a redelivered task)."""
    now = utcnow()
    with db.write() as session:
        result = session.execute(update(Sandbox).where(
            Sandbox.id == sandbox_id,
            or_(Sandbox.lease_owner.is_(None), Sandbox.lease_expires_at < now, Sandbox.lease_owner == owner),
        ).values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds)))
        return result.rowcount == 1


def _release(db: Database, sandbox_id: str, owner: str) -> None:
    with db.write() as session:
        session.execute(update(Sandbox).where(Sandbox.id == sandbox_id, Sandbox.lease_owner == owner)
                        .values(lease_owner=None, lease_expires_at=None))


def _load(db: Database, sandbox_id: str) -> _Sandbox | None:
    with db.read() as session:
        row = session.execute(select(Sandbox).where(Sandbox.id == sandbox_id, Sandbox.managed)).scalar_one_or_none()
        if row is None or row.state == S.DELETED:
            return None
        return _Sandbox(id=row.id, workspace=row.workspace, desired=row.desired_state, state=row.state,
                        container_id=row.container_id, spec=dict(row.spec or {}),
                        container_created_at=row.container_created_at)
