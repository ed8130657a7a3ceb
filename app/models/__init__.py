"""SQLAlchemy models: sandboxes, messages, mailbox entries, dead letters and idempotency keys. The database is the
source of truth."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 128
TOPIC_LENGTH = 255
BROADCAST = "broadcast"  # the to_sandbox of a message for every registered sandbox but the sender
ANY_CAPABLE = "any"  # the to_sandbox of a message for one online agent declaring the skill metadata.skill names


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """`moment` with its UTC offset (SQLite hands back naive datetimes, which are stored as UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def isoformat(moment: datetime | None) -> str | None:
    """ISO 8601 with an explicit UTC offset; SQLite hands back naive datetimes, which are stored as UTC."""
    return None if moment is None else aware(moment).isoformat()


class Base(DeclarativeBase):
    """Declarative base whose MetaData names constraints predictably (for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SandboxStatus:
    """Values of Sandbox.status."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNREGISTERED = "unregistered"


class SandboxState:
    """Values of Sandbox.state, the container's lifecycle (managed sandboxes only; None for self-registered ones).

    Lifecycle tasks move it `creating → created → starting → running → stopping → stopped → deleting → deleted`,
    or to `error` (with `state_reason`) when the engine refuses or a transitional state outlives its timeout.
    """

    CREATING = "creating"
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"

    TRANSITIONAL = (CREATING, STARTING, STOPPING, DELETING)
    DESIRABLE = (RUNNING, STOPPED, DELETED)  # what an operator may ask for (Sandbox.desired_state)


class Sandbox(Base):
    """A registered sandbox (container) and the head of its mailbox sequence.

    Unregistering keeps the row (status `unregistered`) so the mailbox and its sequence survive a
    later re-registration under the same id.
    """

    __tablename__ = "sandboxes"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(ID_LENGTH), default="default", index=True)
    agents: Mapped[list] = mapped_column(JSON, default=list)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=SandboxStatus.ONLINE, index=True)
    head_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    unregistered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Sandbox tokens carry the version they were issued under; bumping it (unregister, rotation) revokes them.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Where its latest mailbox socket connected: the API node, when, from which address (collaboration admin).
    connected_node: Mapped[str | None] = mapped_column(String(128))
    connected_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    connected_address: Mapped[str | None] = mapped_column(String(64))
    # Managed sandboxes (a container the bus runs): what was asked (desired_state) and what the engine does (state).
    managed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    desired_state: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str | None] = mapped_column(String(16), index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    state_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    container_id: Mapped[str | None] = mapped_column(String(80))
    container_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    spec: Mapped[dict | None] = mapped_column(JSON)
    # The per-sandbox lifecycle lock: held by one task at a time, and lapses by itself when its holder dies.
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When capability routing last chose it: the round-robin order among equally loaded capable agents.
    last_routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_registered(self) -> bool:
        """True unless the sandbox was unregistered."""
        return self.status != SandboxStatus.UNREGISTERED


class Workspace(Base):
    """A workspace: the scope of sandboxes, policies, broadcasts and registrar keys, with the defaults its managed
    sandboxes start from (`settings`: default_image, default_limits, idle_stop_minutes)."""

    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH))
    description: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MessageStatus:
    """Values of Message.status: accepted (durable, not yet routed), delivered (in every mailbox), dead."""

    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    DEAD = "dead"


class Message(Base):
    """An accepted AgentMessage, with every protocol field and its routing status."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column("message_id", String(ID_LENGTH), primary_key=True)
    from_sandbox: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    to_sandbox: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    from_agent: Mapped[str] = mapped_column(String(ID_LENGTH))
    to_agent: Mapped[str] = mapped_column(String(ID_LENGTH), default="any")
    message_type: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict] = mapped_column(JSON)
    timestamp: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=5)
    requires_response: Mapped[bool] = mapped_column(Boolean, default=False)
    correlation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    ttl: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    topic: Mapped[str | None] = mapped_column(String(TOPIC_LENGTH))  # a topic message: to_sandbox is "broadcast"
    trace_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)  # the conversation it belongs to
    parent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))  # the message it answers or follows from
    hops: Mapped[int] = mapped_column(Integer, default=0)  # how many messages lead to it from its trace's root
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.ACCEPTED)
    unanswered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_messages_status_created_at", "status", "created_at"),
                      Index("ix_messages_status_to_sandbox", "status", "to_sandbox"))

    def to_protocol(self) -> dict:
        """The message as the AgentMessage protocol dict sent to clients."""
        return {
            "message_id": self.id,
            "from_sandbox": self.from_sandbox,
            "to_sandbox": self.to_sandbox,
            "from_agent": self.from_agent,
            "to_agent": self.to_agent,
            "message_type": self.message_type,
            "content": self.content,
            "timestamp": self.timestamp,
            "priority": self.priority,
            "requires_response": self.requires_response,
            "correlation_id": self.correlation_id,
            "ttl": self.ttl,
            "metadata": self.meta,
            "topic": self.topic,
        }


class EntryState:
    """Values of MailboxEntry.state: delivered (in the mailbox, not acknowledged), acked, dead (dead-lettered),
    rerouted (a capability-routed request whose recipient went offline before its ACK: another agent has it)."""

    DELIVERED = "delivered"
    ACKED = "acked"
    DEAD = "dead"
    REROUTED = "rerouted"


ACK_REQUIRED_TYPES = ("request", "command")  # the message types a recipient must acknowledge


class MailboxEntry(Base):
    """One message in one sandbox's mailbox, at position `seq` (1, 2, 3 ... per sandbox).

    Entries that require an ACK carry `next_attempt_at`: when it passes without an ACK while the
    recipient is connected, the entry is pushed again (`attempts` counts the pushes). `expires_at`
    comes from the message's ttl.
    """

    __tablename__ = "mailbox_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    sandbox_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("sandboxes.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("messages.message_id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=EntryState.DELIVERED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requires_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("sandbox_id", "seq"),
        UniqueConstraint("message_id", "sandbox_id"),
        Index("ix_mailbox_entries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_mailbox_entries_state_expires_at", "state", "expires_at"),
    )


class DeadLetter(Base):
    """A message that could not be delivered to one recipient, with the reason and the last error."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("messages.message_id"), index=True)
    sandbox_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    __table_args__ = (UniqueConstraint("message_id", "sandbox_id", "reason"),)


IDEMPOTENCY_KEY_LENGTH = 255  # the longest Idempotency-Key header value


class IdempotencyKey(Base):
    """An `Idempotency-Key` a sandbox sent with a message: which message it created, and a fingerprint of the request.

    The key is scoped per sending sandbox (primary key (sandbox_id, key)); the row is written in the transaction
    that inserts the message, so a key is recorded if and only if its message was accepted. A row older than
    IDEMPOTENCY_WINDOW is expired: it may be replaced by a new send and is purged by beat.
    """

    __tablename__ = "idempotency_keys"

    sandbox_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("messages.message_id", ondelete="CASCADE"),
                                            index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Role:
    """The roles a caller can have: API keys are admin, operator, viewer or registrar; sandbox tokens are sandbox."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    REGISTRAR = "registrar"
    SANDBOX = "sandbox"


KEY_ROLES = (Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.REGISTRAR)


class ApiKey(Base):
    """An API key: a role (and, for registrar keys, the one workspace it may register sandboxes in).

    Only the SHA-256 of the secret is stored; `prefix` (its first characters) identifies it in listings.
    A revoked key stays listed with `revoked_at`.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    workspace: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One line of the audit trail: who (`actor`, `actor_role`, `remote_addr`) did what (`action` on `target`),
    when, and how it ended (`outcome`: ok, refused, failed), with free-form `details`."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[str] = mapped_column(String(160), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(256), index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Policy(Base):
    """A cross-sandbox messaging rule: `effect` (allow or deny) for messages from → to, of some types.

    Selectors are a workspace or sandbox id, or "*" for any; `message_types` empty means every type.
    """

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    effect: Mapped[str] = mapped_column(String(8))
    from_workspace: Mapped[str] = mapped_column(String(ID_LENGTH), default="*")
    from_sandbox: Mapped[str] = mapped_column(String(ID_LENGTH), default="*")
    to_workspace: Mapped[str] = mapped_column(String(ID_LENGTH), default="*")
    to_sandbox: Mapped[str] = mapped_column(String(ID_LENGTH), default="*")
    message_types: Mapped[list] = mapped_column(JSON, default=list)
    topics: Mapped[list] = mapped_column(JSON, default=list)  # topic patterns; empty: every message
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Subscription(Base):
    """A sandbox's durable subscription to the topics matching `pattern` (dot-separated words, `*` one word, `#`
    zero or more): a topic message of its workspace that matches gets an entry in its mailbox."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandboxes.id"), index=True)
    pattern: Mapped[str] = mapped_column(String(TOPIC_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("sandbox_id", "pattern"),)


class DirectoryGeneration(Base):
    """One row (id 1) whose `value` moves, in the same transaction, with every change to what API processes cache:
    a sandbox's registration, workspace or token version, an API key's revocation, the policy rules."""

    __tablename__ = "directory_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


metadata = Base.metadata

__all__ = [
    "BROADCAST", "Base", "metadata", "Sandbox", "SandboxStatus", "SandboxState", "Workspace", "Message",
    "MessageStatus",
    "MailboxEntry", "EntryState", "ACK_REQUIRED_TYPES", "DeadLetter", "IdempotencyKey", "IDEMPOTENCY_KEY_LENGTH",
    "Role", "KEY_ROLES", "ApiKey", "AuditEvent", "Policy", "DirectoryGeneration",
    "utcnow", "isoformat", "aware",
]
