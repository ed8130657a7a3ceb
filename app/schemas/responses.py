"""marshmallow schemas of the REST API's answers: what the OpenAPI document (app.api.openapi) publishes and what
schemathesis checks responses against. The blueprints serialize plain dicts from the services; these schemas
describe those dicts exactly (every field that is always present is required; nullable fields are marked;
free-form objects such as content, metadata and error details accept any properties). They refuse unknown
fields, so a field added to an answer without documenting it here fails the response checks."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from app.models import EntryState, MessageStatus, SandboxStatus
from app.schemas import MESSAGE_TYPES
from app.services.dead_letters import REASONS as DEAD_LETTER_REASONS
from app.services.policies import EFFECTS as POLICY_EFFECTS

SANDBOX_STATUSES = (SandboxStatus.ONLINE, SandboxStatus.OFFLINE, SandboxStatus.UNREGISTERED)
MESSAGE_STATUSES = (MessageStatus.ACCEPTED, MessageStatus.DELIVERED, MessageStatus.DEAD)
ENTRY_STATES = (EntryState.DELIVERED, EntryState.ACKED, EntryState.DEAD, EntryState.REROUTED)


def Str(**kwargs) -> fields.String:
    """A string that is always present (and not null unless `allow_none=True`)."""
    return fields.String(required=True, **kwargs)


def Int(**kwargs) -> fields.Integer:
    """An integer that is always present (and not null unless `allow_none=True`)."""
    return fields.Integer(required=True, **kwargs)


def Timestamp(**kwargs) -> fields.String:
    """An ISO 8601 date-time with an explicit UTC offset, as the bus writes them."""
    return fields.String(required=True, metadata={"format": "date-time"}, **kwargs)


def FreeObject(**kwargs) -> fields.Dict:
    """A JSON object with any properties (content, metadata, details)."""
    return fields.Dict(keys=fields.String(), required=True, **kwargs)


class ResponseSchema(Schema):
    """An answer's schema: every property it documents, and no others."""

    class Meta:
        unknown = RAISE


class ErrorBodySchema(ResponseSchema):
    """What went wrong: a stable machine-readable `code`, a sentence for people, and details (per-field messages
    for validation errors, the ids involved otherwise)."""

    code = Str(metadata={"example": "validation_error"})
    message = Str()
    details = FreeObject()


class ErrorSchema(ResponseSchema):
    """Every error answer of the bus: `{"error": {"code", "message", "details"}}`."""

    error = fields.Nested(ErrorBodySchema, required=True)


class MessageAcceptedSchema(ResponseSchema):
    """202 to a send: the message is durable and will be delivered."""

    message_id = Str()
    status = Str(validate=validate.OneOf(MESSAGE_STATUSES))
    timestamp = fields.Float(required=True, metadata={"description": "Acceptance time, Unix seconds."})


class BatchItemResultSchema(ResponseSchema):
    """The answer to one item of a batch send: `status` 202 with `message_id` and `timestamp`, or the item's
    HTTP status with `error` (as the single send would have answered it)."""

    index = Int(validate=validate.Range(min=0))
    status = Int()
    message_id = fields.String()
    timestamp = fields.Float()
    error = fields.Nested(ErrorBodySchema)


class BatchResultSchema(ResponseSchema):
    """202 (every item accepted) or 207 (some refused) to a batch send: one result per item, in order."""

    accepted = Int(validate=validate.Range(min=0))
    refused = Int(validate=validate.Range(min=0))
    results = fields.List(fields.Nested(BatchItemResultSchema), required=True)


class StoredMessageSchema(ResponseSchema):
    """An AgentMessage as the bus stored it (server-assigned message_id and timestamp; recipient resolved)."""

    message_id = Str()
    from_sandbox = Str()
    to_sandbox = Str()
    from_agent = Str()
    to_agent = Str()
    message_type = Str(validate=validate.OneOf(MESSAGE_TYPES))
    content = FreeObject()
    timestamp = fields.Float(required=True)
    priority = Int(validate=validate.Range(min=0, max=9))
    requires_response = fields.Boolean(required=True)
    correlation_id = Str(allow_none=True)
    ttl = Int(allow_none=True)
    metadata = FreeObject()
    topic = Str(allow_none=True, metadata={"description": "a topic message's topic (to_sandbox is broadcast)"})


class DeliverySchema(ResponseSchema):
    """The message's entry in one recipient's mailbox."""

    sandbox_id = Str()
    seq = Int()
    state = Str(validate=validate.OneOf(ENTRY_STATES))
    attempts = Int()
    delivered_at = Timestamp()
    acked_at = Timestamp(allow_none=True)


class ResponseRefSchema(ResponseSchema):
    """A response to a request message."""

    message_id = Str()
    from_sandbox = Str()
    from_agent = Str()
    status = Str(validate=validate.OneOf(MESSAGE_STATUSES))
    accepted_at = Timestamp()


class MessageDeadLetterSchema(ResponseSchema):
    """A dead letter of the message, as its report lists it."""

    sandbox_id = Str(allow_none=True)
    reason = Str(validate=validate.OneOf(DEAD_LETTER_REASONS))
    last_error = Str(allow_none=True)
    created_at = Timestamp()


class DeliveryReportSchema(ResponseSchema):
    """GET /messages/{id}: the message, its status, each recipient's delivery state, responses, dead letters."""

    message = fields.Nested(StoredMessageSchema, required=True)
    status = Str(validate=validate.OneOf(MESSAGE_STATUSES))
    accepted_at = Timestamp()
    routed_at = Timestamp(allow_none=True)
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
    response_state = fields.String(required=True, allow_none=True,
                                   validate=validate.OneOf(("answered", "unanswered", "awaiting")),
                                   metadata={"description": "For a request that requires a response; else null."})
    responses = fields.List(fields.Nested(ResponseRefSchema), required=True)
    dead_letters = fields.List(fields.Nested(MessageDeadLetterSchema), required=True)


class SkillSchema(ResponseSchema):
    """A skill an agent declared: what a message to sandbox "any" with metadata.skill = `id` asks for."""

    id = Str()
    name = Str()
    description = Str()
    tags = fields.List(fields.String(), required=True)
    input_schema = FreeObject(allow_none=True, metadata={"description": "JSON Schema the content must satisfy."})
    output_schema = FreeObject(allow_none=True)


class AgentSchema(ResponseSchema):
    """An agent of a sandbox, as registered."""

    name = Str()
    capabilities = fields.List(fields.String(), required=True)
    skills = fields.List(fields.Nested(SkillSchema), load_default=list,
                         metadata={"description": "Absent for agents registered without skills."})


class SandboxSchema(ResponseSchema):
    """A sandbox in the registry: `head_seq` is its mailbox's last seq; every entry up to `settled_seq` is
    acknowledged or dead."""

    sandbox_id = Str()
    workspace = Str()
    agents = fields.List(fields.Nested(AgentSchema), required=True)
    metadata = FreeObject()
    status = Str(validate=validate.OneOf(SANDBOX_STATUSES))
    head_seq = Int()
    settled_seq = Int()
    last_heartbeat = Timestamp(allow_none=True)
    registered_at = Timestamp(allow_none=True)
    managed = fields.Boolean(required=True, metadata={"description": "true: the bus runs its container; the fields "
                                                                     "below are present then (GET …/status)."})
    desired_state = fields.String()
    state = fields.String()
    state_reason = fields.String(allow_none=True)
    state_changed_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    container_id = fields.String(allow_none=True)
    spec = fields.Dict(keys=fields.String())


class RegisteredSandboxSchema(SandboxSchema):
    """A registration's answer: the sandbox and a fresh sandbox token for it."""

    token = Str()
    token_expires_at = Int(metadata={"description": "Unix seconds."})


class SandboxListSchema(ResponseSchema):
    """GET /sandboxes."""

    sandboxes = fields.List(fields.Nested(SandboxSchema), required=True)
    count = Int()


class SandboxTokenSchema(ResponseSchema):
    """POST /sandboxes/{id}/token: a fresh bearer token for the sandbox."""

    sandbox_id = Str()
    token = Str()
    expires_at = Int(metadata={"description": "Unix seconds."})
    token_type = Str(validate=validate.Equal("Bearer"))


class HeartbeatSchema(ResponseSchema):
    """POST /sandboxes/{id}/heartbeat."""

    sandbox_id = Str()
    status = Str(validate=validate.OneOf(SANDBOX_STATUSES))
    last_heartbeat = Timestamp(allow_none=True)


class MailboxEntrySchema(ResponseSchema):
    """One mailbox entry: its seq, state and message."""

    seq = Int()
    state = Str(validate=validate.OneOf(ENTRY_STATES))
    message = fields.Nested(StoredMessageSchema, required=True)


class MailboxPageSchema(ResponseSchema):
    """GET /sandboxes/{id}/messages: entries after `since`; poll again with `since=next_since`."""

    sandbox_id = Str()
    since = Int()
    head_seq = Int()
    entries = fields.List(fields.Nested(MailboxEntrySchema), required=True)
    next_since = Int()


class AckResultSchema(ResponseSchema):
    """POST /sandboxes/{id}/ack."""

    sandbox_id = Str()
    seq = Int()
    message_id = Str()
    state = Str(validate=validate.Equal(EntryState.ACKED))


class NackResultSchema(ResponseSchema):
    """POST /sandboxes/{id}/nack: the entry is dead-lettered `nacked`."""

    sandbox_id = Str()
    seq = Int()
    message_id = Str()
    state = Str(validate=validate.Equal(EntryState.DEAD))


class DeadLetterSchema(ResponseSchema):
    """A dead letter: the message (when it still exists), its recipient (null: before routing), why, attempts."""

    id = Int()
    message_id = Str()
    sandbox_id = Str(allow_none=True)
    reason = Str(validate=validate.OneOf(DEAD_LETTER_REASONS))
    attempts = Int()
    last_error = Str(allow_none=True)
    created_at = Timestamp()
    message = fields.Nested(StoredMessageSchema)


class DeadLetterPageSchema(ResponseSchema):
    """GET /dead-letters: a page; `next_after` (null on the last page) pages on."""

    dead_letters = fields.List(fields.Nested(DeadLetterSchema), required=True)
    count = Int()
    total = Int()
    next_after = Int(allow_none=True)


class ReplayResultSchema(ResponseSchema):
    """A replayed dead letter: pushed again from the mailbox, or queued for routing again."""

    id = Int()
    message_id = Str()
    sandbox_id = Str(allow_none=True)
    replayed = fields.Boolean(required=True)
    redelivery = Str(validate=validate.OneOf(("mailbox", "queued")))


class BulkReplayResultSchema(ResponseSchema):
    """POST /dead-letters/replay."""

    replayed = Int()
    items = fields.List(fields.Nested(ReplayResultSchema), required=True)


class DeadLetterDeletedSchema(ResponseSchema):
    """DELETE /dead-letters/{id}."""

    id = Int()
    deleted = fields.Boolean(required=True)


class DeadLetterPurgedSchema(ResponseSchema):
    """DELETE /dead-letters."""

    purged = Int()


class PolicyRuleSchema(ResponseSchema):
    """A stored messaging policy rule."""

    id = Int()
    effect = Str(validate=validate.OneOf(POLICY_EFFECTS))
    from_workspace = Str()
    from_sandbox = Str()
    to_workspace = Str()
    to_sandbox = Str()
    message_types = fields.List(fields.String(validate=validate.OneOf(MESSAGE_TYPES)), required=True)
    topics = fields.List(fields.String(), required=True, metadata={"description": "topic patterns; empty: any"})
    description = Str()
    created_by = Str(allow_none=True)
    created_at = Timestamp(allow_none=True)


class PolicyListSchema(ResponseSchema):
    """GET /policies."""

    policies = fields.List(fields.Nested(PolicyRuleSchema), required=True)
    count = Int()


class PolicyDecisionSchema(ResponseSchema):
    """POST /policies/check: the decision, the deciding rule (null: the default or a privileged caller), why."""

    allowed = fields.Boolean(required=True)
    rule = fields.Nested(PolicyRuleSchema, required=True, allow_none=True)
    reason = Str()


class AuditEventSchema(ResponseSchema):
    """One audit row."""

    id = Int()
    at = Timestamp()
    action = Str()
    outcome = Str(validate=validate.OneOf(("ok", "refused", "failed")))
    actor = Str()
    actor_role = Str(allow_none=True)
    target = Str(allow_none=True)
    remote_addr = Str(allow_none=True)
    details = FreeObject()


class AuditPageSchema(ResponseSchema):
    """GET /audit: rows oldest first; ask again with `after=next_after` for the next page."""

    events = fields.List(fields.Nested(AuditEventSchema), required=True)
    next_after = Int()


class HealthSchema(ResponseSchema):
    """GET /healthz."""

    status = Str(validate=validate.Equal("ok"))


class ReadySchema(ResponseSchema):
    """GET /readyz when ready: each dependency checked answers "ok"."""

    status = Str(validate=validate.Equal("ready"))
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
