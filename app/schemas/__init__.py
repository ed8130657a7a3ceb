"""marshmallow schemas for requests and query strings, and `load_or_raise` that maps their errors to InvalidRequest."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app.errors import InvalidRequest
from app.models import ID_LENGTH

MESSAGE_TYPES = ("request", "response", "notification", "command")
BROADCAST = "broadcast"
ANY_AGENT = "any"

_identifier = validate.And(
    validate.Length(min=1, max=ID_LENGTH),
    validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$", error="must start with a letter or digit and use only letters, digits and _ . : @ -"),
)


def Identifier(**kwargs) -> fields.String:
    """A sandbox/agent/message id: 1-128 characters, letters, digits and _ . : @ -."""
    return fields.String(validate=_identifier, **kwargs)


class StrictBoolean(fields.Boolean):
    """A boolean that accepts only JSON true/false, not 1, "yes" or "true"."""

    truthy = {True}
    falsy = {False}


class StrictSchema(Schema):
    """A schema that refuses unknown fields."""

    class Meta:
        unknown = RAISE


class AgentMessageSchema(StrictSchema):
    """An AgentMessage as a client sends it; the server assigns message_id (when absent) and timestamp."""

    message_id = Identifier(load_default=None)
    from_sandbox = Identifier(required=True)
    to_sandbox = Identifier(required=True)
    from_agent = Identifier(required=True)
    to_agent = Identifier(load_default=ANY_AGENT)
    message_type = fields.String(required=True, validate=validate.OneOf(MESSAGE_TYPES))
    content = fields.Dict(keys=fields.String(), required=True)
    timestamp = fields.Float(load_default=None, allow_nan=False)
    priority = fields.Integer(strict=True, load_default=5, validate=validate.Range(min=0, max=9))
    requires_response = StrictBoolean(load_default=False)
    correlation_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=ID_LENGTH))
    ttl = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1, max=30 * 24 * 3600))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)


class BroadcastSchema(AgentMessageSchema):
    """A broadcast: an AgentMessage whose to_sandbox is absent or "broadcast"."""

    to_sandbox = fields.String(load_default=BROADCAST, validate=validate.Equal(BROADCAST, error='must be "broadcast" (or left out) for a broadcast'))
    message_type = fields.String(load_default="notification", validate=validate.OneOf(MESSAGE_TYPES))


class AgentSpecSchema(StrictSchema):
    """One agent living in a sandbox: its name and what it can do."""

    name = Identifier(required=True)
    capabilities = fields.List(fields.String(validate=validate.Length(min=1, max=ID_LENGTH)), load_default=list, validate=validate.Length(max=100))


class RegisterSandboxSchema(StrictSchema):
    """A sandbox registration: id, workspace, its agents and free-form metadata."""

    sandbox_id = Identifier(required=True)
    workspace = Identifier(load_default="default")
    agents = fields.List(fields.Nested(AgentSpecSchema), load_default=list, validate=validate.Length(max=100))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)


class SandboxListQuery(StrictSchema):
    """Filters of GET /api/v1/sandboxes."""

    workspace = Identifier(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(("online", "offline", "unregistered")))
    include_unregistered = StrictBoolean(load_default=False)


class MailboxQuery(StrictSchema):
    """Paging of a mailbox: entries after `since`, at most `limit` of them."""

    since = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(strict=True, load_default=100, validate=validate.Range(min=1, max=1000))


class AckFrameSchema(StrictSchema):
    """A client's `ack` frame on a mailbox socket."""

    type = fields.String(required=True, validate=validate.Equal("ack"))
    seq = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))


def load_or_raise(schema: Schema, data: Any, *, what: str = "request body") -> dict:
    """Validate `data` with `schema`; raise InvalidRequest with per-field details when it does not match."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what} must be a JSON object", details={"_schema": ["expected a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields_ = ", ".join(sorted(str(k) for k in exc.normalized_messages()))
        raise InvalidRequest(f"invalid {what}: check {fields_}", details=exc.normalized_messages()) from None


def query_args(args) -> dict:
    """Turn a query-string MultiDict into plain values, converting integer- and boolean-looking strings."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if value.lstrip("-").isdigit():
            out[key] = int(value)
        elif value in ("true", "false"):
            out[key] = value == "true"
        else:
            out[key] = value
    return out
