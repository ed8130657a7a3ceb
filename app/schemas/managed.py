"""Request schemas of workspaces and managed sandboxes (containers the bus runs)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas import (
    RESERVED_ID_ERROR,
    RESERVED_SANDBOX_IDS,
    AgentSpecSchema,
    Identifier,
    QueryBoolean,
    QueryInteger,
    StrictBoolean,
    StrictSchema,
    _identifier,
)
from app.services.managed import RESERVED_ENV

NETWORK_MODES = ("host", "none", "bridge")
MAX_DESCRIPTION = 2000
_image = validate.And(
    validate.Length(min=1, max=255),
    validate.Regexp(r"^[a-z0-9][a-z0-9._/:@-]*\Z", error="must be an image reference such as "
                                                           "aintandem/collab-agent:1 (lower-case letters, digits and "
                                                           ". _ / : @ -)"),
)
_env_name = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z", error="must be a variable name: letters, digits "
                                                                       "and _, not starting with a digit")
_printable = validate.Regexp(r"^[^\x00]*\Z", error="must not contain NUL characters")


class LimitsSchema(StrictSchema):
    """Resource limits of a container: memory in MiB, CPUs (fractions allowed), processes."""

    memory_mb = fields.Integer(strict=True, validate=validate.Range(min=8, max=1024 * 1024))
    cpus = fields.Float(allow_nan=False, validate=validate.Range(min=0.01, max=1024))
    pids = fields.Integer(strict=True, validate=validate.Range(min=8, max=4_194_304))


class WorkspaceSettingsSchema(StrictSchema):
    """What a workspace's managed sandboxes start from, and when idle ones stop."""

    default_image = fields.String(validate=_image)
    default_limits = fields.Nested(LimitsSchema)
    idle_stop_minutes = fields.Float(allow_none=True, allow_nan=False,
                                     validate=validate.Range(min=0.05, max=7 * 24 * 60))


class WorkspaceCreateSchema(StrictSchema):
    """A new workspace: its id (as sandboxes, policies and keys name it), a display name, a description, settings."""

    id = Identifier(required=True)
    name = fields.String(load_default=None, validate=validate.And(validate.Length(min=1, max=128), _printable))
    description = fields.String(load_default="",
                                validate=validate.And(validate.Length(max=MAX_DESCRIPTION), _printable))
    settings = fields.Nested(WorkspaceSettingsSchema, load_default=dict)


class WorkspaceUpdateSchema(StrictSchema):
    """Changes to a workspace (at least one field); `settings` replaces the settings as a whole."""

    name = fields.String(validate=validate.And(validate.Length(min=1, max=128), _printable))
    description = fields.String(validate=validate.And(validate.Length(max=MAX_DESCRIPTION), _printable))
    settings = fields.Nested(WorkspaceSettingsSchema)

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("give at least one of name, description, settings", "_schema")


class WorkspaceDeleteQuery(StrictSchema):
    """`force=true` deletes a workspace that still has sandboxes (they are stopped and removed first)."""

    force = QueryBoolean(load_default=False)


def _env(value: dict) -> None:
    reserved = sorted(set(value) & set(RESERVED_ENV))
    if reserved:
        raise ValidationError(f"{', '.join(reserved)} are set by the bus itself")
    if len(value) > 200:
        raise ValidationError("at most 200 variables")


class CreateSandboxSchema(StrictSchema):
    """A managed sandbox: which workspace, what to run (image, command, env), its limits and network, its agents."""

    sandbox_id = fields.String(load_default=None, validate=validate.And(
        _identifier, validate.NoneOf(RESERVED_SANDBOX_IDS, error=RESERVED_ID_ERROR)))
    workspace = Identifier(load_default="default")
    image = fields.String(load_default=None, validate=_image)
    command = fields.List(fields.String(validate=validate.And(validate.Length(max=8192), _printable)),
                          load_default=None, validate=validate.Length(min=1, max=256))
    env = fields.Dict(keys=fields.String(validate=_env_name),
                      values=fields.String(validate=validate.And(validate.Length(max=32768), _printable)),
                      load_default=dict, validate=_env)
    limits = fields.Nested(LimitsSchema, load_default=dict)
    network_mode = fields.String(load_default=None, validate=validate.OneOf(NETWORK_MODES))
    agents = fields.List(fields.Nested(AgentSpecSchema), load_default=list, validate=validate.Length(max=100))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    start = StrictBoolean(load_default=True)


class LogsQuery(StrictSchema):
    """Which of a container's log lines: the last `tail`, those since `since` (unix seconds), and with `follow`
    the new ones as they come, until the container stops."""

    tail = QueryInteger(load_default=None, validate=validate.Range(min=0, max=100_000))
    since = QueryInteger(load_default=None, validate=validate.Range(min=0, max=10**11))
    follow = QueryBoolean(load_default=False)


class CollaborationSandboxesQuery(StrictSchema):
    """Filter of GET /api/v1/collaboration/sandboxes."""

    workspace = Identifier(load_default=None)


class DisconnectSchema(StrictSchema):
    """Which sandbox to disconnect from every API node, and why (shown to its agent as the close reason)."""

    sandbox_id = Identifier(required=True)
    reason = fields.String(load_default="disconnected by an operator", validate=validate.And(
        validate.Length(min=1, max=120),
        validate.Regexp(r"^[\x20-\x7e]+\Z", error="must be printable ASCII (it travels as the socket's close reason)")))
