"""Response schemas of topics (sandboxes' subscriptions) and conversation traces (see app.schemas.responses for
the rules they follow)."""

from __future__ import annotations

from marshmallow import fields

from app.schemas.responses import (
    DeliverySchema, FreeObject, Int, MessageDeadLetterSchema, ResponseSchema, Str, StoredMessageSchema, Timestamp,
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
    children = fields.List(FreeObject(), required=True, metadata={"description": "TraceNode objects"})


class TraceSchema(ResponseSchema):
    """A conversation: its root messages (usually one) with what followed from them, at most 1000 messages."""

    trace_id = Str()
    message_count = Int()
    truncated = fields.Boolean(required=True)
    roots = fields.List(fields.Nested(TraceNodeSchema), required=True)
