"""Response schemas of workspaces, managed sandboxes and the edition (see app.schemas.responses for the rules they
follow: every always-present field required, nullable ones marked, no undocumented fields)."""

from __future__ import annotations

from marshmallow import fields, validate

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
