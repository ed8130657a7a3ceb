"""Every documented operation of the REST API: path, view (whose docstring gives the summary and description),
parameters, body, success answers and the errors it can give. app.api.openapi turns `OPERATIONS` (and the open
`docs_operations()`) into the OpenAPI document; a route without an entry here fails tests/test_openapi.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from marshmallow import Schema

from app import schemas as req
from app.api import (
    agents,
    audit,
    collaboration,
    configuration,
    dead_letters,
    managed,
    messages,
    policies,
    sandboxes,
    topics,
    traces,
    workspaces,
)
from app.schemas import managed as managed_req
from app.schemas import managed_responses as managed_res
from app.schemas import responses as res
from app.schemas import topic_responses as topic_res
from app.schemas import topics as topic_req
from app.schemas.sending import BatchEnvelopeSchema
from app.schemas.skills import AgentListQuery
from app.services.topics import TOPIC_RULE

SEQ_MAX = req.SEQ_MAX

# Errors by status: when each can happen (the body is always the Error schema).
ERROR_DESCRIPTIONS = {
    400: "Invalid request: `invalid_json` (body not strict JSON) or `validation_error` (body, query or header does "
         "not match the schema; `details` names each field).",
    401: "No credentials, or credentials that do not authenticate (`details.reason`: missing, invalid, expired, "
         "revoked, ...).",
    403: "The caller may not do this: `forbidden` (role, another sandbox's resource), `sandbox_mismatch`, "
         "`policy_denied`, `edition_limit` (the edition's managed sandbox limit is reached).",
    404: "Not found: `unknown_sandbox`, `unknown_message`, `unknown_entry`, `unknown_dead_letter`, "
         "`unknown_policy`, `unknown_correlation_id`, `unknown_workspace`, `unknown_subscription`, `unknown_trace`, "
         "or `not_found` "
         "for a path the API does not have.",
    409: "Conflicts with the current state: `duplicate_message_id`, `idempotency_key_reused`, "
         "`workspace_mismatch`, `entry_dead_lettered`, `entry_not_pending`, `workspace_exists`, "
         "`workspace_not_empty`, `sandbox_exists`, `not_managed`, `sandbox_deleting`, `no_container`, "
         "`managed_sandboxes_disabled`, `too_many_subscriptions`, `hop_limit` and `trace_budget` (runaway guards: "
         "`details.guard`).",
    422: "`content_invalid`: a message to sandbox \"any\" does not satisfy the input schema of the skill it asks "
         "for (`details.path` names the failing part of the content).",
    413: "`payload_too_large`: the body or the message content exceeds the configured limit; `batch_too_large`: a "
         "batch carries more than `MAX_BATCH_MESSAGES` messages.",
    429: "`too_many_requests`: the caller's request rate, or failed authentications from its address, are over the "
         "limit; `pair_rate` (a runaway guard): the sender sent the recipient more than PAIR_RATE_PER_MINUTE "
         "messages in the last minute. Retry after `Retry-After` seconds.",
    503: "`database_unavailable`: the database cannot be reached right now; `overloaded` (sends): the delivery "
         "backlog is full. Retry after `Retry-After` seconds.",
}
AUTHENTICATED_ERRORS = (401, 429, 503)  # every operation that needs a token can give these

_identifier_param = {"type": "string", "minLength": 1, "maxLength": 128,
                     "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"}
_id_param = {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}


@dataclass
class Operation:
    """One documented operation: `path` relative to /api/v1 unless it starts with "//" (then absolute)."""

    method: str
    path: str
    view: object
    tag: str
    ok: dict  # status -> response schema class (or a dict: a ready OpenAPI response object)
    errors: tuple = ()
    body: type[Schema] | None = None
    body_required: bool = True
    query: type[Schema] | None = None
    header: type[Schema] | None = None
    path_params: dict = field(default_factory=dict)
    open: bool = False  # no token needed
    ok_headers: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.path[1:] if self.path.startswith("//") else f"/api/v1{self.path}"


SANDBOX_ID = {"sandbox_id": _identifier_param}
WORKSPACE_ID = {"workspace_id": _identifier_param}
REPLAYED = {"Idempotent-Replayed": {"description": "`true` when this answers a repeated send with the same "
                                                   "Idempotency-Key: no new message was accepted.",
                                    "schema": {"type": "string", "enum": ["true"]}}}

OPERATIONS: list[Operation] = [
    # messages
    Operation("post", "/messages", messages.send_message, "messages", {202: res.MessageAcceptedSchema},
              (400, 403, 404, 409, 413), body=req.AgentMessageSchema, header=req.IdempotencyKeyHeaderSchema,
              ok_headers=REPLAYED),
    Operation("post", "/broadcast", messages.broadcast, "messages", {202: res.MessageAcceptedSchema},
              (400, 403, 404, 409, 413), body=req.BroadcastSchema, header=req.IdempotencyKeyHeaderSchema,
              ok_headers=REPLAYED),
    Operation("post", "/messages/batch", messages.send_batch, "messages",
              {202: res.BatchResultSchema, 207: res.BatchResultSchema}, (400, 403, 413), body=BatchEnvelopeSchema),
    Operation("get", "/messages/{message_id}", messages.get_message, "messages", {200: res.DeliveryReportSchema},
              (403, 404), path_params={"message_id": {"type": "string", "minLength": 1}}),
    # sandboxes
    Operation("get", "/sandboxes", sandboxes.list_sandboxes, "sandboxes", {200: res.SandboxListSchema},
              (400, 403), query=req.SandboxListQuery),
    Operation("post", "/sandboxes/register", sandboxes.register_sandbox, "sandboxes",
              {200: res.RegisteredSandboxSchema, 201: res.RegisteredSandboxSchema}, (400, 403, 409, 413),
              body=req.RegisterSandboxSchema),
    Operation("get", "/sandboxes/{sandbox_id}", sandboxes.get_sandbox, "sandboxes", {200: res.SandboxSchema},
              (403, 404), path_params=SANDBOX_ID),
    Operation("delete", "/sandboxes/{sandbox_id}", sandboxes.unregister_sandbox, "sandboxes",
              {200: res.SandboxSchema, 202: managed_res.ManagedSandboxSchema}, (403, 404, 409),
              path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/token", sandboxes.sandbox_token, "sandboxes",
              {200: res.SandboxTokenSchema}, (400, 403, 404, 413), body=req.TokenRequestSchema, body_required=False,
              path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/heartbeat", sandboxes.sandbox_heartbeat, "sandboxes",
              {200: res.HeartbeatSchema}, (403, 404), path_params=SANDBOX_ID),
    # mailbox (polling clients)
    Operation("get", "/sandboxes/{sandbox_id}/messages", sandboxes.poll_mailbox, "mailbox",
              {200: res.MailboxPageSchema}, (400, 403, 404), query=req.MailboxQuery, path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/ack", sandboxes.ack_entry, "mailbox", {200: res.AckResultSchema},
              (400, 403, 404, 409, 413), body=req.AckSchema, path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/nack", sandboxes.nack_entry, "mailbox", {200: res.NackResultSchema},
              (400, 403, 404, 409, 413), body=req.NackSchema, path_params=SANDBOX_ID),
    # dead letters
    Operation("get", "/dead-letters", dead_letters.list_dead_letters, "dead-letters",
              {200: res.DeadLetterPageSchema}, (400, 403), query=req.DeadLetterListQuery),
    Operation("delete", "/dead-letters", dead_letters.purge_dead_letters, "dead-letters",
              {200: res.DeadLetterPurgedSchema}, (400, 403), query=req.DeadLetterPurgeQuery),
    Operation("post", "/dead-letters/replay", dead_letters.replay_dead_letters, "dead-letters",
              {202: res.BulkReplayResultSchema}, (400, 403, 413), body=req.BulkReplaySchema, body_required=False),
    Operation("get", "/dead-letters/{dead_letter_id}", dead_letters.get_dead_letter, "dead-letters",
              {200: res.DeadLetterSchema}, (403, 404), path_params={"dead_letter_id": _id_param}),
    Operation("delete", "/dead-letters/{dead_letter_id}", dead_letters.delete_dead_letter, "dead-letters",
              {200: res.DeadLetterDeletedSchema}, (403, 404), path_params={"dead_letter_id": _id_param}),
    Operation("post", "/dead-letters/{dead_letter_id}/replay", dead_letters.replay_dead_letter, "dead-letters",
              {202: res.ReplayResultSchema}, (403, 404), path_params={"dead_letter_id": _id_param}),
    # policies
    Operation("get", "/policies", policies.list_policies, "policies", {200: res.PolicyListSchema}, (403,)),
    Operation("post", "/policies", policies.create_policy, "policies", {201: res.PolicyRuleSchema},
              (400, 403, 413), body=req.PolicySchema),
    Operation("get", "/policies/{rule_id}", policies.get_policy, "policies", {200: res.PolicyRuleSchema},
              (403, 404), path_params={"rule_id": {"type": "integer", "minimum": 0}}),
    Operation("delete", "/policies/{rule_id}", policies.delete_policy, "policies", {200: res.PolicyRuleSchema},
              (403, 404), path_params={"rule_id": {"type": "integer", "minimum": 0}}),
    Operation("post", "/policies/check", policies.check_policy, "policies", {200: res.PolicyDecisionSchema},
              (400, 403, 413), body=req.PolicyCheckSchema),
    # workspaces
    Operation("get", "/workspaces", workspaces.list_workspaces, "workspaces", {200: managed_res.WorkspaceListSchema},
              (403,)),
    Operation("post", "/workspaces", workspaces.create_workspace, "workspaces", {201: managed_res.WorkspaceSchema},
              (400, 403, 409, 413), body=managed_req.WorkspaceCreateSchema),
    Operation("get", "/workspaces/{workspace_id}", workspaces.get_workspace, "workspaces",
              {200: managed_res.WorkspaceSchema}, (403, 404), path_params=WORKSPACE_ID),
    Operation("put", "/workspaces/{workspace_id}", workspaces.update_workspace, "workspaces",
              {200: managed_res.WorkspaceSchema}, (400, 403, 404, 413), body=managed_req.WorkspaceUpdateSchema,
              path_params=WORKSPACE_ID),
    Operation("delete", "/workspaces/{workspace_id}", workspaces.delete_workspace, "workspaces",
              {200: managed_res.WorkspaceDeletedSchema, 202: managed_res.WorkspaceDeletedSchema}, (400, 403, 404, 409),
              query=managed_req.WorkspaceDeleteQuery, path_params=WORKSPACE_ID),
    # managed sandboxes
    Operation("post", "/sandboxes", managed.create_sandbox, "managed sandboxes",
              {202: managed_res.ManagedSandboxSchema}, (400, 403, 404, 409, 413), body=managed_req.CreateSandboxSchema),
    Operation("get", "/sandboxes/{sandbox_id}/status", managed.sandbox_status, "managed sandboxes",
              {200: managed_res.SandboxStatusSchema}, (403, 404), path_params=SANDBOX_ID),
    Operation("get", "/sandboxes/{sandbox_id}/logs", managed.sandbox_logs, "managed sandboxes",
              {200: {"description": "The container's output, one line per line (streamed with `follow=true`).",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}}, (400, 403, 404, 409),
              query=managed_req.LogsQuery, path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/start", managed.start_sandbox, "managed sandboxes",
              {202: managed_res.ManagedSandboxSchema}, (403, 404, 409), path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/stop", managed.stop_sandbox, "managed sandboxes",
              {202: managed_res.ManagedSandboxSchema}, (403, 404, 409), path_params=SANDBOX_ID),
    Operation("get", "/edition", managed.edition, "managed sandboxes", {200: managed_res.EditionSchema}, (403,)),
    Operation("get", "/configuration", configuration.get_configuration, "meta",
              {200: managed_res.ConfigurationSchema}, (403,)),
    # collaboration admin
    Operation("get", "/collaboration/status", collaboration.status, "collaboration",
              {200: managed_res.CollaborationStatusSchema}, (403,)),
    Operation("get", "/collaboration/sandboxes", collaboration.sandboxes, "collaboration",
              {200: managed_res.ConnectionListSchema}, (400, 403), query=managed_req.CollaborationSandboxesQuery),
    Operation("post", "/collaboration/disconnect", collaboration.disconnect, "collaboration",
              {200: managed_res.DisconnectedSchema}, (400, 403, 404, 413), body=managed_req.DisconnectSchema),
    # topics
    Operation("post", "/topics/{topic}/messages", topics.publish, "topics", {202: res.MessageAcceptedSchema},
              (400, 403, 404, 409, 413), body=topic_req.PublishSchema, header=req.IdempotencyKeyHeaderSchema,
              ok_headers=REPLAYED, path_params={"topic": {"type": "string", "minLength": 1, "maxLength": 255,
                                                         "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
                                                         "description": f"The topic: {TOPIC_RULE}."}}),
    Operation("get", "/sandboxes/{sandbox_id}/subscriptions", topics.list_subscriptions, "topics",
              {200: topic_res.SubscriptionListSchema}, (403, 404), path_params=SANDBOX_ID),
    Operation("post", "/sandboxes/{sandbox_id}/subscriptions", topics.subscribe, "topics",
              {200: topic_res.SubscriptionSchema, 201: topic_res.SubscriptionSchema}, (400, 403, 404, 409, 413),
              body=topic_req.SubscriptionPatternSchema, path_params=SANDBOX_ID),
    Operation("delete", "/sandboxes/{sandbox_id}/subscriptions", topics.unsubscribe, "topics",
              {200: topic_res.SubscriptionSchema}, (400, 403, 404), query=topic_req.SubscriptionPatternSchema,
              path_params=SANDBOX_ID),
    # agent cards
    Operation("get", "/agents", agents.list_agents, "agents", {200: topic_res.AgentCardListSchema}, (400, 403),
              query=AgentListQuery),
    # traces
    Operation("get", "/traces", traces.list_traces, "traces", {200: topic_res.TraceListSchema}, (400, 403),
              query=topic_req.TraceListQuery),
    Operation("get", "/traces/{trace_id}", traces.get_trace, "traces", {200: topic_res.TraceSchema}, (403, 404),
              path_params={"trace_id": _identifier_param}),
    # audit
    Operation("get", "/audit", audit.list_audit_events, "audit", {200: res.AuditPageSchema}, (400, 403),
              query=req.AuditQuery),
]


def docs_operations() -> list[Operation]:
    """The open operations: health, metrics, this document and its page (no token needed). Their views live in
    app.api.docs and create_app, which import this module, hence the stand-ins carrying their descriptions."""
    return [
        Operation("get", "/openapi.json", _Doc("The OpenAPI 3.1 document of the REST API (open: no token "
                                               "needed)."), "meta",
                  {200: {"description": "This document.",
                         "content": {"application/json": {"schema": {"type": "object"}}}}}, open=True),
        Operation("get", "//api/docs", _Doc("The API reference as one self-contained HTML page, generated from the "
                                            "OpenAPI document (open)."), "meta",
                  {200: {"description": "The HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
                  open=True),
        Operation("get", "//healthz", _Doc("The process is alive and serving."), "meta", {200: res.HealthSchema},
                  open=True),
        Operation("get", "//readyz", _Doc("Ready to serve: the database and the broker answer (503 naming what "
                                          "does not)."), "meta",
                  {200: res.ReadySchema, 503: {
                      "description": "`not_ready`: `details` maps each dependency to `ok` or what failed.",
                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                      "headers": {"Retry-After": {"schema": {"type": "string"}}}}}, open=True),
        Operation("get", "//metrics", _Doc("This process's counters in Prometheus text format."), "meta",
                  {200: {"description": "Prometheus text exposition format.",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}}, open=True),
    ]


class _Doc:
    """A stand-in for a view defined inside create_app: just its docstring."""

    def __init__(self, doc: str):
        self.__doc__ = doc
        self.__name__ = ""
