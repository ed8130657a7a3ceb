"""An agent's skill as it declares it at registration (A2A's AgentSkill fields plus JSON Schemas of its input and
output), and the query of GET /api/v1/agents."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates

from app.schemas.base import Identifier, StrictSchema
from app.services.skills import schema_problem

MAX_TAGS = 50


def _json_schema(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), load_default=None, allow_none=True,
                       metadata={"description": description})


class SkillSpecSchema(StrictSchema):
    """One skill of an agent: an id unique within the agent, a name, what it does, tags, and optional JSON Schemas
    (any draft jsonschema knows; `$schema` picks it, 2020-12 otherwise) of the content it takes and returns."""

    id = Identifier(required=True)
    name = fields.String(load_default="", validate=validate.Length(max=200))
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list,
                       validate=validate.Length(max=MAX_TAGS))
    input_schema = _json_schema("JSON Schema a message's content must satisfy to be routed to this skill "
                                "(else 422).")
    output_schema = _json_schema("JSON Schema of the response content (documentation; the bus does not check it).")

    @validates("input_schema", "output_schema")
    def _is_json_schema(self, value, data_key: str, **kwargs):
        problem = value is not None and schema_problem(value)
        if problem:
            raise ValidationError(f"is not a valid JSON Schema: {problem}")


class AgentListQuery(StrictSchema):
    """Filters of GET /api/v1/agents: by skill id, tag, workspace, and whether the sandbox is online."""

    skill = Identifier(load_default=None)
    tag = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    workspace = Identifier(load_default=None)
    online = fields.Boolean(load_default=None, truthy={"true"}, falsy={"false"})
