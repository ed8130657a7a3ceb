"""Schemas of the ways to send several messages: the batch envelope and the mailbox socket's `send` frame."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from app.models import ID_LENGTH
from app.schemas import SEQ_MAX, StrictSchema, idempotency_key_rules


class BatchEnvelopeSchema(StrictSchema):
    """A batch send: `{"messages": [AgentMessage, ...]}`, at least one; each item is validated on its own."""

    messages = fields.List(fields.Raw(metadata={"description": "An AgentMessage, as POST /messages takes it."}),
                           required=True, validate=validate.Length(min=1))


def check_frame_ref(value) -> None:
    """A frame's `ref`: a string of 1-128 characters or a JSON integer (echoed as it came)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError("must be a string or an integer")
    if isinstance(value, str) and not 1 <= len(value) <= ID_LENGTH:
        raise ValidationError(f"must be 1-{ID_LENGTH} characters")
    if isinstance(value, int) and abs(value) > SEQ_MAX:
        raise ValidationError("must be within ±2^63-1")


def frame_ref(value):
    """`value` when it is a valid frame `ref` (to echo in an answer), else None."""
    try:
        check_frame_ref(value)
    except ValidationError:
        return None
    return value


class SendFrameSchema(StrictSchema):
    """A mailbox socket's `send` frame: an AgentMessage (validated on its own) and an optional client `ref`
    echoed in the answer, so a client with several sends in flight can match each answer."""

    type = fields.String(required=True, validate=validate.Equal("send"))
    ref = fields.Raw(load_default=None, validate=lambda value: check_frame_ref(value))
    message = fields.Raw(required=True)
    idempotency_key = fields.String(load_default=None, validate=idempotency_key_rules)
