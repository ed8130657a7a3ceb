"""The field types and base schema every request schema builds on (no schema of a resource lives here)."""

from __future__ import annotations

import re

from marshmallow import RAISE, Schema, fields, validate

from app.models import ID_LENGTH

# Patterns end in \Z, not $: `$` also matches before a trailing "\n".
_identifier = validate.And(
    validate.Length(min=1, max=ID_LENGTH),
    validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*\Z",
                    error="must start with a letter or digit and use only letters, digits and _ . : @ -"),
)


def Identifier(**kwargs) -> fields.String:
    """A sandbox/agent/message id: 1-128 characters, letters, digits and _ . : @ -."""
    return fields.String(validate=_identifier, **kwargs)


class StrictBoolean(fields.Boolean):
    """A boolean that accepts only JSON true/false, not 1, "yes" or "true"."""

    truthy = {True}
    falsy = {False}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):  # 1 == True and 0 == False would pass the set lookups
            raise self.make_error("invalid", input=value)
        return value


class QueryInteger(fields.Integer):
    """An integer written in a query string: plain ASCII digits only (no sign, spaces, underscores or 5.0)."""

    _digits = re.compile(r"[0-9]{1,30}")

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not self._digits.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class QueryBoolean(fields.Boolean):
    """A boolean written in a query string: exactly `true` or `false`."""

    truthy = {"true", True}
    falsy = {"false", False}

    def _deserialize(self, value, attr, data, **kwargs):
        if value not in ("true", "false", True, False) or isinstance(value, int) and not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictSchema(Schema):
    """A schema that refuses unknown fields."""

    class Meta:
        unknown = RAISE
