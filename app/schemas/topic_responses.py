"""Response schemas of topics: sandboxes' subscriptions (see app.schemas.responses for the rules they follow)."""

from __future__ import annotations

from marshmallow import fields

from app.schemas.responses import Int, ResponseSchema, Str, Timestamp


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
