"""Agent cards and capability routing: which agents declare which skills, checking a message against a skill's
input schema, and choosing the one agent a message to sandbox "any" goes to.

A message with `to_sandbox: "any"` and `metadata.skill: X` goes to one online agent of the sender's workspace that
declares X (every workspace for a sender that is not a registered sandbox): the one with the fewest
unacknowledged requests, the longest unchosen among equals (round-robin). A sandbox whose last heartbeat is older
than the stale limit is not chosen. With no capable agent online the message waits, unrouted, up to its ttl
(the outbox sweep tries again; app.services.redelivery dead-letters it `no_capable_agent` when the ttl passes).
An agent that goes offline before it ACKs gives its capability-routed entries back (`reroute_orphaned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable
from sqlalchemy import func, or_, select

from app.db import Database
from app.errors import InvalidRequest, Unprocessable
from app.models import (
    ANY_CAPABLE,
    EntryState,
    MailboxEntry,
    Message,
    MessageStatus,
    Sandbox,
    SandboxStatus,
    aware,
    isoformat,
    utcnow,
)
from app.services import policies
from app.services.events import MESSAGE_REROUTED, event_notification

CONTENT_INVALID = "content_invalid"
REROUTE_BATCH = 500


def schema_problem(schema: dict) -> str | None:
    """Why `schema` is not a JSON Schema its `$schema` draft (2020-12 by default) accepts, or None when it is."""
    try:
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        return f"{exc.message}" + (f" (at {where})" if where else "")
    return None


def skill_of(metadata: dict | None) -> str:
    """The skill a message to "any" asks for (`metadata.skill`); InvalidRequest when it names none."""
    skill = (metadata or {}).get("skill")
    if not isinstance(skill, str) or not skill:
        raise InvalidRequest('a message to sandbox "any" names the skill it needs in metadata.skill',
                             details={"metadata": {"skill": ["required (a skill id) when to_sandbox is \"any\""]}})
    return skill


def declarations(sandbox: Sandbox, skill: str) -> list[dict]:
    """The declarations of `skill` by the agents of `sandbox` (empty when none declares it)."""
    return [declared for agent in sandbox.agents or [] for declared in agent.get("skills") or []
            if declared.get("id") == skill]


def check_content(db: Database, workspace: str | None, skill: str, content: dict) -> None:
    """Refuse (422 `content_invalid`, naming the failing path) content that does not satisfy the input schema of
    every registered agent of `workspace` (every workspace when None) declaring `skill`. No declaration, or none
    with an input schema: nothing to check."""
    with db.read() as session:
        schemas = []
        for sandbox in _registered(session, workspace):
            for declared in declarations(sandbox, skill):
                schema = declared.get("input_schema")
                if schema is not None and schema not in schemas:
                    schemas.append(schema)
    for schema in schemas:
        _validate(schema, content, skill)


def _validate(schema: dict, content: dict, skill: str) -> None:
    validator = validators.validator_for(schema, default=Draft202012Validator)(schema)
    try:
        error = next(iter(sorted(validator.iter_errors(content), key=lambda e: list(e.path))), None)
    except Unresolvable as exc:
        raise Unprocessable(f"the input schema of skill {skill!r} refers to what the bus cannot resolve: {exc}",
                            code=CONTENT_INVALID, details={"skill": skill}) from None
    if error is not None:
        path = "content" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        raise Unprocessable(f"{path}: {error.message} (the input schema of skill {skill!r})", code=CONTENT_INVALID,
                            details={"skill": skill, "path": path, "error": error.message,
                                     "schema_path": "/".join(str(p) for p in error.schema_path)})


def _registered(session, workspace: str | None) -> list[Sandbox]:
    query = select(Sandbox).where(Sandbox.status != SandboxStatus.UNREGISTERED)
    if workspace is not None:
        query = query.where(Sandbox.workspace == workspace)
    return list(session.scalars(query.order_by(Sandbox.id)))


def is_fresh(sandbox: Sandbox, stale_after: float, now=None) -> bool:
    """True when `sandbox` is online and (unless `stale_after` is 0) heard from within `stale_after` seconds."""
    if sandbox.status != SandboxStatus.ONLINE:
        return False
    heartbeat = aware(sandbox.last_heartbeat)
    if not stale_after:
        return True
    return heartbeat is not None and heartbeat >= (now or utcnow()) - timedelta(seconds=stale_after)


def agent_cards(db: Database, *, skill: str | None = None, tag: str | None = None, workspace: str | None = None,
                online: bool | None = None, stale_after: float = 0) -> list[dict]:
    """The agents of registered sandboxes with their skills and their sandbox's liveness (`online`: connected
    with a fresh heartbeat), filtered by skill id, skill tag, workspace and liveness."""
    now = utcnow()
    cards = []
    with db.read() as session:
        for sandbox in _registered(session, workspace):
            live = is_fresh(sandbox, stale_after, now)
            if online is not None and live != online:
                continue
            for agent in sandbox.agents or []:
                declared = agent.get("skills") or []
                if skill is not None and not any(s.get("id") == skill for s in declared):
                    continue
                if tag is not None and not any(tag in (s.get("tags") or []) for s in declared):
                    continue
                cards.append({"sandbox_id": sandbox.id, "workspace": sandbox.workspace, "name": agent.get("name"),
                              "capabilities": agent.get("capabilities") or [], "skills": declared,
                              "online": live, "sandbox_status": sandbox.status,
                              "last_heartbeat": isoformat(sandbox.last_heartbeat)})
    return cards


@dataclass(frozen=True)
class Chosen:
    """The sandbox capability routing chose, locked for its new entry: the row fields delivery needs."""

    id: str
    workspace: str
    status: str
    head_seq: int


def choose(session, message: Message, exclude: set[str], stale_after: float) -> Chosen | None:
    """The capable agent's sandbox `message` (to "any") goes to, locked and marked chosen; None when no capable
    agent is online (see the module's rules). Sandboxes in `exclude` (those it already went to) are skipped."""
    skill = (message.meta or {}).get("skill")
    sender = session.get(Sandbox, message.from_sandbox)
    workspace = sender.workspace if sender is not None and sender.is_registered else None
    now = utcnow()
    rules = policies.load_rules(session)
    origin = policies.Endpoint(message.from_sandbox, workspace)
    capable = [s for s in _registered(session, workspace)
               if s.id != message.from_sandbox and s.id not in exclude and is_fresh(s, stale_after, now)
               and declarations(s, skill)
               and not (rules and policies.denying_rule(rules, origin, policies.Endpoint(s.id, s.workspace),
                                                        message.message_type, None))]
    if not capable:
        return None
    load = dict(session.execute(
        select(MailboxEntry.sandbox_id, func.count()).where(
            MailboxEntry.sandbox_id.in_([s.id for s in capable]), MailboxEntry.state == EntryState.DELIVERED,
            MailboxEntry.requires_ack.is_(True)).group_by(MailboxEntry.sandbox_id)).all())
    never = now - timedelta(days=36500)
    for sandbox in sorted(capable, key=lambda s: (load.get(s.id, 0), aware(s.last_routed_at) or never, s.id)):
        row = session.execute(select(Sandbox.id, Sandbox.workspace, Sandbox.status, Sandbox.head_seq)
                              .where(Sandbox.id == sandbox.id).with_for_update()).first()
        if row is not None and row.status == SandboxStatus.ONLINE:
            session.get(Sandbox, sandbox.id).last_routed_at = now
            return Chosen(row.id, row.workspace, row.status, row.head_seq)
    return None


def waiting_for(db: Database, agents: list[dict], limit: int = REROUTE_BATCH) -> list[tuple[str, int]]:
    """(message id, priority) of messages to "any" still waiting for an agent with one of the skills `agents`
    declare, oldest first."""
    declared = {skill.get("id") for agent in agents for skill in agent.get("skills") or []}
    if not declared:
        return []
    with db.read() as session:
        waiting = session.execute(select(Message.id, Message.priority, Message.meta).where(
            Message.status == MessageStatus.ACCEPTED, Message.to_sandbox == ANY_CAPABLE)
            .order_by(Message.created_at).limit(limit)).all()
    return [(row.id, row.priority) for row in waiting if (row.meta or {}).get("skill") in declared]


def reroute_orphaned(db: Database, stale_after: float) -> tuple[list[tuple[str, int]], list[dict]]:
    """Take capability-routed entries still awaiting an ACK from sandboxes no longer online (or silent past
    `stale_after`) and make their messages routable again; return (message id, priority) pairs to enqueue for
    delivery and the `message.rerouted` events. The entry stays in the old mailbox as `rerouted` (settled)."""
    now = utcnow()
    to_route, events = [], []
    query = (select(MailboxEntry, Message, Sandbox)
             .join(Message, Message.id == MailboxEntry.message_id)
             .join(Sandbox, Sandbox.id == MailboxEntry.sandbox_id)
             .where(Message.to_sandbox == ANY_CAPABLE, MailboxEntry.state == EntryState.DELIVERED,
                    MailboxEntry.requires_ack.is_(True),
                    or_(Sandbox.status != SandboxStatus.ONLINE, *([Sandbox.last_heartbeat < now - timedelta(
                        seconds=stale_after)] if stale_after else [])))
             .order_by(MailboxEntry.id).limit(REROUTE_BATCH).with_for_update(skip_locked=True, of=MailboxEntry))
    with db.write() as session:
        for entry, message, sandbox in session.execute(query).all():
            entry.state, entry.next_attempt_at, entry.updated_at = EntryState.REROUTED, None, now
            entry.last_error = f"sandbox {sandbox.id!r} went offline before its ACK; routed to another agent"
            message.status = MessageStatus.ACCEPTED
            to_route.append((message.id, message.priority))
            events.append(event_notification(MESSAGE_REROUTED, message_id=message.id, from_sandbox=sandbox.id,
                                             skill=(message.meta or {}).get("skill"), seq=entry.seq))
    return to_route, events
