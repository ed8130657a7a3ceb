"""Request schemas of topics (publishing to one, sandboxes' subscriptions) and of the trace list."""

from __future__ import annotations

from datetime import UTC

from marshmallow import ValidationError, fields, validate

from app.schemas import AgentMessageSchema, Identifier, QueryInteger, StrictSchema, topic_pattern
from app.schemas.sending import SendFrameSchema, check_frame_ref
from app.services.topics import TOPIC_RULE, is_topic


class PublishSchema(AgentMessageSchema):
    """A topic message: an AgentMessage without a recipient (the topic's subscribers in the sender's workspace
    receive it); its type defaults to notification."""

    to_sandbox = fields.Constant(None, dump_only=True)
    message_type = fields.String(load_default="notification",
                                 validate=validate.OneOf(("notification", "request", "command")))

    def _recipient_given(self, data, **kwargs):  # replaces the check of AgentMessageSchema: the topic addresses it
        return None


def _topic_name(value: str) -> None:
    if not is_topic(value):
        raise ValidationError(f"must be a topic: {TOPIC_RULE}")


class PublishFrameSchema(SendFrameSchema):
    """A mailbox socket's `publish` frame: the topic, a topic message (validated on its own, as PublishSchema),
    an optional `ref` echoed in the answer and an optional idempotency key."""

    type = fields.String(required=True, validate=validate.Equal("publish"))
    topic = fields.String(required=True, validate=_topic_name)


class SubscriptionPatternSchema(StrictSchema):
    """A subscription: the topic pattern (`*` one word, `#` zero or more)."""

    pattern = fields.String(required=True, validate=topic_pattern)


class SubscriptionFrameSchema(SubscriptionPatternSchema):
    """A mailbox socket's `subscribe` / `unsubscribe` frame: the pattern, and an optional `ref` echoed in the answer."""

    type = fields.String(required=True, validate=validate.OneOf(("subscribe", "unsubscribe")))
    ref = fields.Raw(load_default=None, validate=lambda value: check_frame_ref(value))


class TraceListQuery(StrictSchema):
    """Filters of GET /api/v1/traces: a sandbox taking part, active since a time, how many (latest first)."""

    sandbox = Identifier(load_default=None)
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=500))
