"""Response schemas of topics (sandboxes' subscriptions), conversation traces and agent cards (see
app.schemas.responses for the rules they follow)."""

from __future__ import annotations

from marshmallow import fields

from app.schemas.responses import (
    DeliverySchema,
    Int,
    MessageDeadLetterSchema,
    ResponseSchema,
    SkillSchema,
    StoredMessageSchema,
    Str,
    Timestamp,
)


class SubscriptionSchema(ResponseSchema):
    """A sandbox's durable subscription to the topics matching `pattern`."""

    sandbox_id = Str()
    pattern = Str()
    created_at = Timestamp()


class SubscriptionListSchema(ResponseSchema):
    """A sandbox's subscriptions, oldest first."""

    sandbox_id = Str()
    subscriptions = fields.List(fields.Nested(SubscriptionSchema), required=True)
    count = Int()


class TraceNodeSchema(ResponseSchema):
    """One message of a trace: the message, its status, hops from the root, its parent, timings, deliveries and
    dead letters, and the messages that follow from it."""

    message = fields.Nested(StoredMessageSchema, required=True)
    status = Str()
    hops = Int()
    parent_id = Str(allow_none=True)
    accepted_at = Timestamp()
    routed_at = Timestamp(allow_none=True)
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
    dead_letters = fields.List(fields.Nested(MessageDeadLetterSchema), required=True)
    children = fields.List(fields.Nested(lambda: TraceNodeSchema()), required=True,
                           metadata={"description": "The messages that followed from this one."})


class TraceSchema(ResponseSchema):
    """A conversation: its root messages (usually one) with what followed from them, at most 1000 messages."""

    trace_id = Str()
    message_count = Int()
    truncated = fields.Boolean(required=True)
    roots = fields.List(fields.Nested(TraceNodeSchema), required=True)


class TraceSummarySchema(ResponseSchema):
    """One conversation in the trace list."""

    trace_id = Str()
    root_message_id = Str()
    root_from_sandbox = Str()
    started_at = Timestamp()
    last_at = Timestamp()
    message_count = Int()
    max_hops = Int()
    sandboxes = fields.List(fields.String(), required=True, metadata={"description": "Senders, and the recipients "
                                                                                     "the messages reached."})
    dead_messages = Int()


class TraceListSchema(ResponseSchema):
    """Recent conversations, the latest active first."""

    traces = fields.List(fields.Nested(TraceSummarySchema), required=True)
    count = Int()


class AgentCardSchema(ResponseSchema):
    """An agent with its skills, its sandbox and whether capability routing may choose it now (`online`)."""

    sandbox_id = Str()
    workspace = Str()
    name = Str()
    capabilities = fields.List(fields.String(), required=True)
    skills = fields.List(fields.Nested(SkillSchema), required=True)
    online = fields.Boolean(required=True, metadata={"description": "Connected, with a heartbeat within "
                                                                    "HEARTBEAT_TIMEOUT."})
    sandbox_status = Str()
    last_heartbeat = Timestamp(allow_none=True)


class AgentCardListSchema(ResponseSchema):
    """The agents matching the filters."""

    agents = fields.List(fields.Nested(AgentCardSchema), required=True)
    count = Int()
