"""marshmallow schemas for requests and query strings, `load_or_raise` that maps their errors to InvalidRequest,
and `parse_json`, the strict JSON parser every request body and WebSocket frame goes through."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from app.errors import InvalidRequest
from app.models import ANY_CAPABLE, BROADCAST, ID_LENGTH, IDEMPOTENCY_KEY_LENGTH
from app.schemas.base import (  # re-exported: the schemas of every resource build on them
    Identifier,
    QueryBoolean,
    QueryInteger,
    StrictBoolean,
    StrictSchema,
    _identifier,
)
from app.schemas.skills import SkillSpecSchema
from app.services.dead_letters import REASONS as DEAD_LETTER_REASONS
from app.services.event_log import EVENT_ID
from app.services.policies import ANY as ANY_SELECTOR
from app.services.policies import EFFECTS as POLICY_EFFECTS
from app.services.policies import MAX_DESCRIPTION
from app.services.topics import PATTERN_RULE, is_pattern

MESSAGE_TYPES = ("request", "response", "notification", "command")
ANY_AGENT = "any"
RESERVED_SANDBOX_IDS = (BROADCAST, ANY_CAPABLE)
RESERVED_ID_ERROR = 'is reserved: messages to it mean a broadcast ("broadcast") or capability routing ("any")'
SEQ_MAX = 2**63 - 1  # the largest mailbox seq the database stores (BIGINT)
MAX_JSON_DEPTH = 128  # arrays/objects nested deeper than this are refused (recursion would fail later)

class AgentMessageSchema(StrictSchema):
    """An AgentMessage as a client sends it; the server assigns message_id (when absent) and timestamp."""

    message_id = Identifier(load_default=None)
    from_sandbox = Identifier(required=True)
    to_sandbox = Identifier(load_default=None)
    from_agent = Identifier(required=True)
    to_agent = Identifier(load_default=ANY_AGENT)
    message_type = fields.String(required=True, validate=validate.OneOf(MESSAGE_TYPES))
    content = fields.Dict(keys=fields.String(), required=True)
    timestamp = fields.Float(load_default=None, allow_nan=False)
    priority = fields.Integer(strict=True, load_default=5, validate=validate.Range(min=0, max=9))
    requires_response = StrictBoolean(load_default=False)
    correlation_id = fields.String(load_default=None, allow_none=True, validate=validate.And(
        validate.Length(min=1, max=ID_LENGTH),
        validate.Regexp(r"^[^\x00-\x1f\x7f]*\Z", error="must not contain control characters"),
    ))
    ttl = fields.Integer(strict=True, load_default=None, allow_none=True,
                         validate=validate.Range(min=1, max=30 * 24 * 3600))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)

    @validates_schema
    def _recipient_given(self, data, **kwargs):
        """to_sandbox may be left out only by a response that names its request's correlation_id."""
        answers_a_request = data.get("message_type") == "response" and data.get("correlation_id")
        if data.get("to_sandbox") is None and not answers_a_request:
            raise ValidationError("Missing data for required field (only a response with a correlation_id "
                                  "may leave it out: it then goes to the requester).", "to_sandbox")


class BroadcastSchema(AgentMessageSchema):
    """A broadcast: an AgentMessage whose to_sandbox is absent or "broadcast"."""

    to_sandbox = fields.String(load_default=BROADCAST, validate=validate.Equal(
        BROADCAST, error='must be "broadcast" (or left out) for a broadcast'))
    message_type = fields.String(load_default="notification", validate=validate.OneOf(MESSAGE_TYPES))


idempotency_key_rules = validate.And(
    validate.Length(min=1, max=IDEMPOTENCY_KEY_LENGTH),
    validate.Regexp(r"[\x21-\x7e]*\Z", error="must be printable ASCII without spaces (characters 0x21-0x7E)"),
)


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


class IdempotencyKeyHeaderSchema(StrictSchema):
    """The `Idempotency-Key` header of a send: 1-255 printable ASCII characters without spaces (0x21-0x7E).

    Loads `{"Idempotency-Key": value}` into `{"key": value}`.
    """

    key = fields.String(data_key=IDEMPOTENCY_KEY_HEADER, required=True, validate=idempotency_key_rules)


class AgentSpecSchema(StrictSchema):
    """One agent living in a sandbox: its name and what it can do."""

    name = Identifier(required=True)
    capabilities = fields.List(fields.String(validate=validate.Length(min=1, max=ID_LENGTH)), load_default=list,
                               validate=validate.Length(max=100))
    skills = fields.List(fields.Nested(SkillSpecSchema), load_default=list, validate=validate.Length(max=100),
                         metadata={"description": "What the agent can be asked to do: a message to sandbox "
                                                  '"any" with metadata.skill names one of these ids.'})

    @validates_schema
    def _unique_skills(self, data, **kwargs):
        ids = [skill["id"] for skill in data.get("skills", [])]
        if len(ids) != len(set(ids)):
            raise ValidationError("each skill id appears once per agent", "skills")

    @post_load
    def _without_empty_skills(self, data, **kwargs):  # an agent without skills is stored (and shown) as before
        if not data.get("skills"):
            data.pop("skills", None)
        return data


class RegisterSandboxSchema(StrictSchema):
    """A sandbox registration: id, workspace, its agents and free-form metadata."""

    sandbox_id = fields.String(required=True, validate=validate.And(_identifier, validate.NoneOf(
        RESERVED_SANDBOX_IDS, error=RESERVED_ID_ERROR)))
    workspace = Identifier(load_default="default")
    agents = fields.List(fields.Nested(AgentSpecSchema), load_default=list, validate=validate.Length(max=100))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)


class SandboxListQuery(StrictSchema):
    """Filters of GET /api/v1/sandboxes."""

    workspace = Identifier(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(("online", "offline", "unregistered")))
    include_unregistered = QueryBoolean(load_default=False)


class MailboxQuery(StrictSchema):
    """Paging of a mailbox: entries after `since`, at most `limit` of them."""

    since = QueryInteger(load_default=0, validate=validate.Range(min=0, max=SEQ_MAX))
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=1000))


class EventsQuery(StrictSchema):
    """Where an events socket resumes: after the event `since` (an `id` of an earlier `event` frame)."""

    since = fields.String(load_default=None, validate=validate.Regexp(
        EVENT_ID, error="must be the id of an event frame (`<12 hex digits>-<number>` or `<number>-<number>`)"))


class AckSchema(StrictSchema):
    """An ACK of one mailbox entry (POST /sandboxes/{id}/ack)."""

    seq = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=SEQ_MAX))


class AckFrameSchema(AckSchema):
    """A client's `ack` frame on a mailbox socket."""

    type = fields.String(required=True, validate=validate.Equal("ack"))


class NackSchema(AckSchema):
    """A NACK of one mailbox entry, with the reason (POST /sandboxes/{id}/nack)."""

    reason = fields.String(load_default="nacked by the recipient", validate=validate.Length(min=1, max=2000))


class DeadLetterFilterSchema(StrictSchema):
    """Which dead letters: reason, recipient, message, and a time window (ISO 8601) of dead-lettering."""

    reason = fields.String(load_default=None, validate=validate.OneOf(DEAD_LETTER_REASONS))
    sandbox_id = Identifier(load_default=None)
    message_id = Identifier(load_default=None)
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)


class DeadLetterListQuery(DeadLetterFilterSchema):
    """GET /dead-letters: a filter plus paging (`after` is the last id of the previous page)."""

    after = QueryInteger(load_default=0, validate=validate.Range(min=0, max=SEQ_MAX))
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=1000))


class DeadLetterPurgeQuery(DeadLetterFilterSchema):
    """DELETE /dead-letters: a filter, or `all=true` to purge every dead letter."""

    all = QueryBoolean(load_default=False)


class BulkReplaySchema(DeadLetterFilterSchema):
    """POST /dead-letters/replay: a filter (empty means all) and how many to replay at most in this call."""

    limit = fields.Integer(strict=True, load_default=1000, validate=validate.Range(min=1, max=10000))


class NackFrameSchema(NackSchema):
    """A client's `nack` frame: the entry could not be handled, and why."""

    type = fields.String(required=True, validate=validate.Equal("nack"))


def _selector(value: str) -> None:
    """A policy selector: "*" (any), or an identifier."""
    if value != ANY_SELECTOR:
        _identifier(value)


def _sandbox_selector(value: str) -> None:
    """A policy's sandbox selector: "*" or a sandbox id; "broadcast" names no sandbox (broadcasts are checked per
    recipient)."""
    _selector(value)
    if value in RESERVED_SANDBOX_IDS:
        raise ValidationError('is reserved: a broadcast is checked against the rules of each recipient; use "*" '
                              'or a sandbox id')


def topic_pattern(value: str) -> None:
    """A marshmallow validator: `value` is a subscription pattern (app.services.topics)."""
    if not is_pattern(value):
        raise ValidationError(f"must be a topic pattern: {PATTERN_RULE}")


def _distinct(values: list) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("must not name a message type twice")


class PolicySchema(StrictSchema):
    """A messaging policy rule (POST /policies): effect, selectors ("*" or an id; default "*"), message types
    (empty: every type), topic patterns (empty: every message; else only topic messages they match) and a
    description."""

    effect = fields.String(required=True, validate=validate.OneOf(POLICY_EFFECTS))
    from_workspace = fields.String(load_default=ANY_SELECTOR, validate=_selector)
    from_sandbox = fields.String(load_default=ANY_SELECTOR, validate=_sandbox_selector)
    to_workspace = fields.String(load_default=ANY_SELECTOR, validate=_selector)
    to_sandbox = fields.String(load_default=ANY_SELECTOR, validate=_sandbox_selector)
    message_types = fields.List(fields.String(validate=validate.OneOf(MESSAGE_TYPES)), load_default=list,
                                validate=_distinct)
    topics = fields.List(fields.String(validate=topic_pattern), load_default=list,
                         validate=validate.And(validate.Length(max=50), _distinct))
    description = fields.String(load_default="", validate=validate.Length(max=MAX_DESCRIPTION))


class PolicyCheckSchema(StrictSchema):
    """A dry run of the policy check (POST /policies/check): would this send be allowed?"""

    from_sandbox = Identifier(required=True)
    to_sandbox = Identifier(required=True)
    message_type = fields.String(required=True, validate=validate.OneOf(MESSAGE_TYPES))
    privileged = StrictBoolean(load_default=False)


def load_or_raise(schema: Schema, data: Any, *, what: str = "request body") -> dict:
    """Validate `data` with `schema`; raise InvalidRequest with per-field details when it does not match."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what} must be a JSON object", details={"_schema": ["expected a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields_ = ", ".join(sorted(str(k) for k in exc.normalized_messages()))
        raise InvalidRequest(f"invalid {what}: check {fields_}", details=exc.normalized_messages()) from None


AUTH_QUERY_PARAMETERS = ("token",)  # read by app.auth, never by a resource's query schema


def query_args(args) -> dict:
    """The query string as a plain dict of strings (first value of each key), without the auth parameters."""
    return {key: value for key, value in args.items() if key not in AUTH_QUERY_PARAMETERS}


class _NotStrictJSON(ValueError):
    """Raised by parse_json's hooks for text Python's json module accepts but strict JSON (RFC 8259) does not."""


def _refuse_constant(name: str):
    raise _NotStrictJSON(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJSON(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # beyond Python's digit limit for int()
        raise _NotStrictJSON(f"an integer of {len(text)} digits is too long") from None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _too_deep(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def parse_json(raw: bytes | str, *, what: str = "request body", code: str = "invalid_json") -> Any:
    """Parse `raw` as strict JSON; raise InvalidRequest(`code`) naming `what` when it is not.

    Refuses what would break later instead of here: text that is not UTF-8, NaN/Infinity and
    out-of-range numbers, unpaired surrogate escapes such as "\\ud800" (not encodable as UTF-8),
    integers too long to read, and nesting deeper than MAX_JSON_DEPTH.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{what} is not UTF-8 text", code=code) from None
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
        if _SURROGATE_ESCAPE.search(raw):
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             code=code, details={"line": exc.lineno, "column": exc.colno}) from None
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} contains an unpaired surrogate escape (\\ud800-\\udfff); it is not valid Unicode",
                             code=code) from None
    except _NotStrictJSON as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}", code=code) from None
    except RecursionError:
        raise _nested_too_deep(what, code) from None
    if _too_deep(data, MAX_JSON_DEPTH):
        raise _nested_too_deep(what, code)
    return data


def _nested_too_deep(what: str, code: str) -> InvalidRequest:
    return InvalidRequest(f"{what} nests arrays/objects deeper than {MAX_JSON_DEPTH} levels", code=code,
                          details={"max_depth": MAX_JSON_DEPTH})


class TokenRequestSchema(StrictSchema):
    """POST /sandboxes/{id}/token: a fresh sandbox token; `rotate` also revokes every token issued before."""

    rotate = StrictBoolean(load_default=False)


class AuditQuery(StrictSchema):
    """GET /audit: exact action, outcome, actor, target; a time window (ISO 8601); paging `after` + `limit`."""

    action = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    outcome = fields.String(load_default=None, validate=validate.OneOf(("ok", "refused", "failed")))
    actor = fields.String(load_default=None, validate=validate.Length(min=1, max=160))
    target = fields.String(load_default=None, validate=validate.Length(min=1, max=256))
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    after = QueryInteger(load_default=0, validate=validate.Range(min=0, max=SEQ_MAX))
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=1000))
