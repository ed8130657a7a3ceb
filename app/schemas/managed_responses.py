"""Response schemas of workspaces, managed sandboxes and the edition (see app.schemas.responses for the rules they
follow: every always-present field required, nullable ones marked, no undocumented fields)."""

from __future__ import annotations

from marshmallow import fields, validate

from app.brokers import NAMES
from app.models import SandboxState
from app.schemas.responses import SANDBOX_STATUSES, FreeObject, Int, ResponseSchema, Str, Timestamp

SANDBOX_STATES = (SandboxState.CREATING, SandboxState.CREATED, SandboxState.STARTING, SandboxState.RUNNING,
                  SandboxState.STOPPING, SandboxState.STOPPED, SandboxState.DELETING, SandboxState.DELETED,
                  SandboxState.ERROR)


class WorkspaceSchema(ResponseSchema):
    """A workspace, with how many registered or managed sandboxes it holds."""

    id = Str()
    name = Str()
    description = Str()
    settings = FreeObject()
    sandbox_count = Int()
    created_at = Timestamp()
    updated_at = Timestamp()


class WorkspaceListSchema(ResponseSchema):
    """Every workspace, by id."""

    workspaces = fields.List(fields.Nested(WorkspaceSchema), required=True)
    count = Int()


class WorkspaceDeletedSchema(ResponseSchema):
    """A deleted workspace, and the managed sandboxes now being stopped and removed with it."""

    id = Str()
    deleted = fields.Boolean(required=True)
    deleting_sandboxes = fields.List(fields.String(), required=True)


class ManagedSandboxSchema(ResponseSchema):
    """A managed sandbox: its registration status, what was asked (`desired_state`) and what the engine last did
    (`state`, with `state_reason` when it is not what was asked), its container and what it runs (`spec`)."""

    sandbox_id = Str()
    workspace = Str()
    status = Str(validate=validate.OneOf(SANDBOX_STATUSES))
    managed = fields.Boolean(required=True)
    desired_state = Str(validate=validate.OneOf(SandboxState.DESIRABLE))
    state = Str(validate=validate.OneOf(SANDBOX_STATES))
    state_reason = Str(allow_none=True)
    state_changed_at = Timestamp(allow_none=True)
    container_id = Str(allow_none=True)
    spec = FreeObject()


class ContainerSchema(ResponseSchema):
    """A container as the engine reports it."""

    id = Str()
    status = Str()
    exit_code = Int(allow_none=True)
    error = Str()
    oom_killed = fields.Boolean(required=True)
    started_at = Timestamp(allow_none=True)
    finished_at = Timestamp(allow_none=True)


class SandboxStatusSchema(ManagedSandboxSchema):
    """A managed sandbox and its container right now (`container` null and `engine_error` set when the engine
    cannot tell)."""

    container = fields.Nested(ContainerSchema, required=True, allow_none=True)
    engine_error = Str(allow_none=True)


class _EditionLimitsSchema(ResponseSchema):
    managed_sandboxes = Int(allow_none=True, metadata={"description": "null: no limit"})


class _ManagedUseSchema(ResponseSchema):
    enabled = fields.Boolean(required=True)
    in_use = Int()


class EditionSchema(ResponseSchema):
    """The bus's edition (community, enterprise), its limits and what is in use."""

    edition = Str(validate=validate.OneOf(("community", "enterprise")))
    limits = fields.Nested(_EditionLimitsSchema, required=True)
    managed_sandboxes = fields.Nested(_ManagedUseSchema, required=True)


class _SandboxCountsSchema(ResponseSchema):
    online = Int()
    offline = Int()
    unregistered = Int()


class _RatesSchema(ResponseSchema):
    accepted = fields.Float(required=True, metadata={"description": "messages accepted per second"})
    delivered = fields.Float(required=True, metadata={"description": "mailbox entries made per second"})
    dead_lettered = fields.Float(required=True, metadata={"description": "dead letters per second"})


class _WindowsSchema(ResponseSchema):
    last_60s = fields.Nested(_RatesSchema, required=True)
    last_300s = fields.Nested(_RatesSchema, required=True)


class CollaborationStatusSchema(ResponseSchema):
    """The team at a glance: sandboxes by status, connected ones, message rates, queue depths, workers (queues and
    workers are null where the broker cannot tell; `unavailable` says why)."""

    sandboxes = fields.Nested(_SandboxCountsSchema, required=True)
    connected = Int()
    message_rates = fields.Nested(_WindowsSchema, required=True)
    queues = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True, allow_none=True)
    workers = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True, allow_none=True)
    unavailable = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class ConnectionSchema(ResponseSchema):
    """A registered sandbox and where its latest mailbox socket connected (null before it ever did)."""

    sandbox_id = Str()
    workspace = Str()
    status = Str(validate=validate.OneOf(SANDBOX_STATUSES))
    managed = fields.Boolean(required=True)
    connected = fields.Boolean(required=True)
    node = Str(allow_none=True)
    since = Timestamp(allow_none=True)
    address = Str(allow_none=True)
    last_heartbeat = Timestamp(allow_none=True)


class ConnectionListSchema(ResponseSchema):
    """Registered sandboxes with their connection details, by id."""

    sandboxes = fields.List(fields.Nested(ConnectionSchema), required=True)
    count = Int()


class DisconnectedSchema(ResponseSchema):
    """A sandbox disconnected from every API node."""

    sandbox_id = Str()
    status = Str(validate=validate.Equal("offline"))
    disconnected = fields.Boolean(required=True)


class _SettingSchema(ResponseSchema):
    name = Str(metadata={"description": "The environment variable that sets it."})
    value = fields.Raw(required=True, allow_none=True,
                       metadata={"description": "Its value (`********` for a secret that is set)."})
    default = fields.Raw(required=True, allow_none=True, metadata={"description": "Its value when not set."})
    changed = fields.Boolean(required=True, metadata={"description": "Whether the value differs from the default."})
    secret = fields.Boolean(required=True)


class ConfigurationSchema(ResponseSchema):
    """The answering API node's settings, by environment variable, with secrets hidden."""

    edition = Str(validate=validate.OneOf(("community", "enterprise")))
    broker = Str(validate=validate.OneOf(NAMES))
    settings = fields.List(fields.Nested(_SettingSchema), required=True)
