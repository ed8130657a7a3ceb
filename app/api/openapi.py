"""The OpenAPI 3.1 document of the REST API, built with apispec from the request schemas (app.schemas) and the
response schemas (app.schemas.responses), and the self-contained HTML page rendered from it.

`build_document()` turns app.api.operations' list of operations into the document served at
GET /api/v1/openapi.json, `render_html()` into the page at GET /api/docs.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from marshmallow import Schema, fields, validate

from app.api.operations import (
    AUTHENTICATED_ERRORS,
    ERROR_DESCRIPTIONS,
    OPERATIONS,
    Operation,
    _identifier_param,
    docs_operations,
)
from app.schemas import responses as res

TITLE = "AInTandem Collaboration Bus"
API_VERSION = "1"
OPENAPI_VERSION = "3.1.0"

# ------------------------------------------------------------------------------------------ apispec glue

def _js_pattern(pattern: str) -> str:
    """A Python `re.match` pattern as a JSON Schema (ECMA 262, search semantics) pattern: anchored, `\\Z` → `$`."""
    if pattern.endswith(r"\Z"):
        pattern = pattern[:-2] + "$"
    return pattern if pattern.startswith("^") else "^" + pattern


def _composed_validators(self, field_: fields.Field, **kwargs) -> dict:
    """apispec attribute function: the constraints of validators combined with `validate.And` (apispec only reads
    validators given directly), e.g. the length and pattern of every identifier."""
    out: dict = {}
    for combined in field_.validators:
        if not isinstance(combined, validate.And):
            continue
        for v in combined.validators:
            if isinstance(v, validate.Length):
                is_list = isinstance(field_, fields.List)
                if v.min is not None:
                    out["minItems" if is_list else "minLength"] = v.min
                if v.max is not None:
                    out["maxItems" if is_list else "maxLength"] = v.max
                if v.equal is not None:
                    out.update({"minLength": v.equal, "maxLength": v.equal})
            elif isinstance(v, validate.Regexp):
                out["pattern"] = _js_pattern(v.regex.pattern)
            elif isinstance(v, validate.OneOf):
                out["enum"] = list(v.choices)
            elif isinstance(v, validate.NoneOf):
                out["not"] = {"enum": list(v.iterable)}
    return out


_SELECTOR = {"anyOf": [{"type": "string", "enum": ["*"]}, dict(_identifier_param)]}
_FIELD_OVERRIDES = {  # constraints that live in plain validation functions apispec cannot read
    ("PolicySchema", "from_workspace"): _SELECTOR,
    ("PolicySchema", "to_workspace"): _SELECTOR,
    ("PolicySchema", "from_sandbox"): {**_SELECTOR, "not": {"enum": ["broadcast"]}},
    ("PolicySchema", "to_sandbox"): {**_SELECTOR, "not": {"enum": ["broadcast"]}},
}


def _schema_name(schema) -> str:
    cls = resolve_schema_cls(schema)
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


def _summary(view) -> tuple[str, str]:
    doc = inspect.cleandoc(view.__doc__ or "")
    first, _, rest = doc.partition("\n")
    return first.strip(), rest.strip()


def _error_response(status: int) -> dict:
    response = {"description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                               "schema": {"type": "string"}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return response


def _operation(spec: APISpec, op: Operation) -> dict:
    summary, description = _summary(op.view)
    parameters = [{"in": "path", "name": name, "required": True, "schema": schema}
                  for name, schema in op.path_params.items()]
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    if op.header is not None:
        parameters.append({"in": "header", "schema": op.header})
    responses: dict = {}
    for status, schema in op.ok.items():
        if isinstance(schema, dict):
            responses[str(status)] = schema
            continue
        responses[str(status)] = {
            "description": _summary(schema)[0] or "Success.",
            "content": {"application/json": {"schema": _schema_name(schema)}},
        }
        if op.ok_headers:
            responses[str(status)]["headers"] = op.ok_headers
    errors = set(op.errors) | (set() if op.open else set(AUTHENTICATED_ERRORS))
    for status in sorted(errors):
        responses[str(status)] = _error_response(status)
    operation = {"operationId": getattr(op.view, "__name__", "") or _operation_id(op), "tags": [op.tag],
                 "summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {"required": op.body_required,
                                    "content": {"application/json": {"schema": _schema_name(op.body)}}}
    if op.open:
        operation["security"] = []
    return operation


def _operation_id(op: Operation) -> str:
    return op.method + re.sub(r"[^A-Za-z0-9]+", "_", op.url).rstrip("_")


def _cleanup(node):
    """Post-process apispec's output: JSON Schema patterns, no `default: null` on fields that are not nullable, and
    the constraints of `_FIELD_OVERRIDES`."""
    if isinstance(node, dict):
        if "pattern" in node and isinstance(node["pattern"], str):
            node["pattern"] = _js_pattern(node["pattern"])
        if node.get("default", 0) is None and "null" not in (node.get("type") or []):
            del node["default"]
        for value in node.values():
            _cleanup(value)
    elif isinstance(node, list):
        for value in node:
            _cleanup(value)
    return node


DESCRIPTION = """The REST API of the AInTandem Collaboration Bus: agents in sandboxes send AgentMessages to each other
through the bus, which stores each message durably, delivers it to the recipient's mailbox (pushed over the
WebSocket `/ws/sandboxes/{sandbox_id}`, or polled with `GET /api/v1/sandboxes/{sandbox_id}/messages`) and keeps
what cannot be delivered as dead letters.

Every `/api/v1` call needs `Authorization: Bearer <token>`: an API key (admin, operator, viewer, registrar) or
a sandbox token from registration (a `token` query parameter works too, for browsers). This document, its
page (`/api/docs`), `/healthz` and `/metrics` are open. Every error answer is
`{"error": {"code", "message", "details"}}`. The WebSockets (`/ws/sandboxes/{id}`, `/ws/broadcast`,
`/ws/events`) are described in docs/protocol.md."""


@lru_cache(maxsize=1)
def build_document() -> dict:
    """The OpenAPI document of the API, as a JSON-ready dict (built once per process)."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(title=TITLE, version=API_VERSION, openapi_version=OPENAPI_VERSION, plugins=[plugin],
                   info={"description": DESCRIPTION},
                   tags=[{"name": t} for t in ("messages", "sandboxes", "managed sandboxes", "workspaces",
                                               "collaboration", "topics", "agents", "traces", "mailbox", "dead-letters",
                                               "policies", "audit", "meta")],
                   security=[{"bearerAuth": []}])
    plugin.converter.add_attribute_function(_composed_validators)
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`cbk_…`) or a sandbox token (a JWT from registration or POST "
                       "/sandboxes/{id}/token)."})
    operations = [*OPERATIONS, *docs_operations()]
    schema_classes = [res.ErrorSchema] + [
        cls for op in operations for cls in (op.body, *op.ok.values())
        if isinstance(cls, type) and issubclass(cls, Schema)]
    named: dict[str, type] = {}
    for cls in dict.fromkeys(schema_classes):
        name = _schema_name(cls)
        if named.setdefault(name, cls) is not cls:
            raise RuntimeError(f"two schemas would be the component {name!r}: {named[name]} and {cls}")
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=cls)
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(op.url, {})[op.method] = _operation(spec, op)
    for url, operations in paths.items():
        spec.path(path=url, operations=operations)
    raw = spec.to_dict()
    document = _cleanup({"openapi": raw.pop("openapi"), "info": raw.pop("info"), **raw})
    schemas = document["components"]["schemas"]
    for (schema_name, field_name), override in _FIELD_OVERRIDES.items():
        prop = schemas[schema_name.removesuffix("Schema")]["properties"][field_name]
        prop.pop("type", None)
        prop.update(json.loads(json.dumps(override)))
    return document


# ------------------------------------------------------------------------------------------ the HTML page

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:1.2rem 2rem}header h1{margin:0;font-size:1.4rem}
main{max-width:70rem;margin:0 auto;padding:1rem 2rem 3rem}nav ul{columns:2;list-style:none;padding:0}
nav li{margin:.15rem 0}a{color:#1f5fbf;text-decoration:none}a:hover{text-decoration:underline}
section.op{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:1rem 0;padding:.8rem 1.2rem}
.method{display:inline-block;min-width:4.2rem;text-align:center;font-weight:700;border-radius:4px;color:#fff;
padding:.1rem .4rem;margin-right:.6rem;font-size:.85rem}.get{background:#2f855a}.post{background:#2b6cb0}
.delete{background:#c53030}.put,.patch{background:#b7791f}code,.path{font-family:ui-monospace,Menlo,Consolas,monospace}
.path{font-size:1.05rem}table{border-collapse:collapse;width:100%;margin:.4rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #e7e9ee;text-align:left;padding:.3rem .5rem;vertical-align:top}
th{background:#f0f2f5}.muted{color:#667085}.tag{font-size:.75rem;color:#667085;float:right}
h3{font-size:.95rem;margin:.8rem 0 .2rem}pre{white-space:pre-wrap}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _ref_name(schema: dict) -> str | None:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    return ref.rsplit("/", 1)[-1] if ref else None


def _type_text(schema: dict) -> str:
    """A short human rendering of a JSON Schema: type, format, enum and constraints."""
    if not isinstance(schema, dict):
        return ""
    name = _ref_name(schema)
    if name:
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            text = " | ".join(_type_text(s) for s in schema[key])
            return text + (f" (not {_e(', '.join(map(str, schema['not'].get('enum', []))))})"
                           if isinstance(schema.get("not"), dict) else "")
    kind = schema.get("type", "any")
    kind = " | ".join(kind) if isinstance(kind, list) else kind
    if kind.startswith("array") and "items" in schema:
        text = f"array of {_type_text(schema['items'])}"
    else:
        text = _e(kind)
    if "format" in schema:
        text += f" ({_e(schema['format'])})"
    notes = []
    if "enum" in schema:
        notes.append("one of " + ", ".join(f"<code>{_e(json.dumps(v))}</code>" for v in schema["enum"]))
    for key, label in (("minLength", "min length"), ("maxLength", "max length"), ("minimum", "min"),
                       ("maximum", "max"), ("minItems", "min items"), ("maxItems", "max items")):
        if key in schema:
            notes.append(f"{label} {_e(schema[key])}")
    if "pattern" in schema:
        notes.append(f"pattern <code>{_e(schema['pattern'])}</code>")
    if "default" in schema:
        notes.append(f"default <code>{_e(json.dumps(schema['default']))}</code>")
    if schema.get("additionalProperties") not in (None, False):
        notes.append("any properties")
    return text + (f' <span class="muted">— {"; ".join(notes)}</span>' if notes else "")


def _properties_table(schema: dict) -> str:
    props = schema.get("properties") or {}
    if not props:
        return f"<p>{_type_text(schema)}</p>"
    required = set(schema.get("required") or ())
    rows = "".join(
        f"<tr><td><code>{_e(name)}</code></td><td>{'yes' if name in required else ''}</td>"
        f"<td>{_type_text(prop)}</td><td>{_e(prop.get('description', ''))}</td></tr>"
        for name, prop in props.items())
    extra = "" if schema.get("additionalProperties") is False else '<p class="muted">Other properties allowed.</p>'
    return f"<table><tr><th>Field</th><th>Required</th><th>Type</th><th>Notes</th></tr>{rows}</table>{extra}"


def render_html(document: dict) -> str:
    """A self-contained HTML page (no scripts, no external resources) listing every operation of `document`."""
    ops = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]
    toc = "".join(f'<li><a href="#op-{_e(op.get("operationId") or method + path)}"><span class="method {method}">'
                  f'{method.upper()}</span><span class="path">{_e(path)}</span></a></li>' for path, method, op in ops)
    sections = []
    for path, method, op in ops:
        parts = [f'<section class="op" id="op-{_e(op.get("operationId") or method + path)}">',
                 f'<span class="tag">{_e(", ".join(op.get("tags", [])))}</span>',
                 f'<h2><span class="method {method}">{method.upper()}</span><span class="path">{_e(path)}</span></h2>',
                 f"<p><strong>{_e(op.get('summary', ''))}</strong></p>"]
        if op.get("description"):
            parts.append(f"<p>{_e(op['description'])}</p>")
        parts.append("<p class='muted'>Open: no token needed.</p>" if op.get("security") == []
                     else "<p class='muted'>Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>")
        if op.get("parameters"):
            rows = "".join(
                f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                f"<td>{'yes' if p.get('required') else ''}</td><td>{_type_text(p.get('schema', {}))}</td>"
                f"<td>{_e(p.get('description', ''))}</td></tr>" for p in op["parameters"])
            parts.append("<h3>Parameters</h3><table><tr><th>Name</th><th>In</th><th>Required</th><th>Type</th>"
                         f"<th>Notes</th></tr>{rows}</table>")
        body = op.get("requestBody")
        if body:
            schema = body["content"]["application/json"]["schema"]
            name = _ref_name(schema)
            resolved = document["components"]["schemas"].get(name, schema) if name else schema
            parts.append(f"<h3>Request body ({'required' if body.get('required') else 'optional'}, "
                         f"application/json): {_type_text(schema)}</h3>{_properties_table(resolved)}")
        rows = []
        for status, response in op["responses"].items():
            content = response.get("content") or {}
            kinds = ", ".join(f"{_e(media)} {_type_text(c.get('schema', {}))}" for media, c in content.items())
            rows.append(f"<tr><td><code>{_e(status)}</code></td><td>{_e(response.get('description', ''))}</td>"
                        f"<td>{kinds}</td></tr>")
        parts.append("<h3>Responses</h3><table><tr><th>Status</th><th>When</th><th>Body</th></tr>"
                     + "".join(rows) + "</table></section>")
        sections.append("".join(parts))
    schemas = "".join(
        f'<section class="op" id="schema-{_e(name)}"><h2 class="path">{_e(name)}</h2>'
        f"<p>{_e(schema.get('description', ''))}</p>{_properties_table(schema)}</section>"
        for name, schema in document["components"]["schemas"].items())
    info = document["info"]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(info['title'])} API"
            f"</title><style>{_STYLE}</style></head><body><header><h1>{_e(info['title'])} — REST API v"
            f"{_e(info['version'])}</h1></header><main><pre>{_e(info.get('description', ''))}</pre>"
            f"<p>Machine-readable: <a href='/api/v1/openapi.json'>/api/v1/openapi.json</a> "
            f"(OpenAPI {_e(document['openapi'])}).</p><h2>Operations</h2><nav><ul>{toc}</ul></nav>"
            f"{''.join(sections)}<h2>Schemas</h2>{schemas}</main></body></html>")
