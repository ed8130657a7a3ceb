"""Cross-sandbox messaging policies: the evaluation (plain calls on a real SQLite database), broadcast scoping in
delivery, and the REST API (CRUD, dry-run check, bad input, permissions) through an in-process app."""

from __future__ import annotations

import functools

import pytest

from app.composition import create_app
from app.config import Settings
from app.errors import Forbidden, NotFound
from app.migrate import upgrade
from app.services import audit, auth, delivery, messages, policies, registry
from app.services.directory import Directory

LIMIT = 256 * 1024
ADMIN = audit.Actor("key:1:test", "admin", "127.0.0.1")


@functools.cache
def directory(db) -> Directory:
    """One directory per database, as an API process keeps one: rules and registrations made between checks must
    be seen by the next check."""
    return Directory(db)


def register(db, workspace: str, *ids: str) -> None:
    for sandbox_id in ids:
        registry.register(db, sandbox_id, workspace, [], {})


def rule(db, effect: str, **selectors) -> dict:
    return policies.create_rule(db, {"effect": effect, **selectors}, ADMIN)


def refusal(db, sender: str, to: str, message_type: str = "request", privileged: bool = False) -> Forbidden:
    with pytest.raises(Forbidden) as err:
        policies.check_send(directory(db), from_sandbox=sender, to_sandbox=to, message_type=message_type,
                            privileged=privileged)
    assert err.value.code == "policy_denied"
    assert {k: err.value.details[k] for k in ("from_sandbox", "to_sandbox", "message_type")} == {
        "from_sandbox": sender, "to_sandbox": to, "message_type": message_type}
    return err.value


def allowed(db, sender: str, to: str, message_type: str = "request", privileged: bool = False) -> bool:
    policies.check_send(directory(db), from_sandbox=sender, to_sandbox=to, message_type=message_type,
                        privileged=privileged)
    return True


@pytest.fixture
def sandboxes(db):
    """a1, a2 in ws1; b1, b2 in ws2."""
    register(db, "ws1", "a1", "a2")
    register(db, "ws2", "b1", "b2")
    return db


# ------------------------------------------------------------------------------------------- evaluation

def test_same_workspace_is_allowed_for_every_type_but_command(sandboxes):
    db = sandboxes
    for message_type in ("request", "response", "notification"):
        assert allowed(db, "a1", "a2", message_type)
    error = refusal(db, "a1", "a2", "command")
    assert error.details["reason"] == "commands need a grant" and error.details["rule"] is None
    assert "default policy" in error.message


def test_cross_workspace_is_refused_by_default(sandboxes):
    error = refusal(sandboxes, "a1", "b1", "notification")
    assert error.details["rule"] is None and error.details["reason"] == policies.DIFFERENT_WORKSPACES
    assert error.message.startswith("refused by the default policy: sandboxes in different workspaces")


def test_allow_rule_opens_cross_workspace_only_for_its_types(sandboxes):
    db = sandboxes
    grant = rule(db, "allow", from_workspace="ws1", to_workspace="ws2", message_types=["request", "response"])
    assert allowed(db, "a1", "b2", "request") and allowed(db, "a2", "b1", "response")
    assert refusal(db, "a1", "b1", "notification").details["reason"] == policies.DIFFERENT_WORKSPACES
    assert refusal(db, "b1", "a1", "request").details["rule"] is None  # one direction only
    decision = policies.evaluate(directory(db), from_sandbox="a1", to_sandbox="b1", message_type="request",
                                 privileged=False)
    assert decision.to_dict() == {"allowed": True, "rule": grant, "reason": policies.ALLOWED_BY_RULE}


def test_deny_rule_beats_allow_rule_and_privilege_and_names_itself(sandboxes):
    db = sandboxes
    rule(db, "allow", from_workspace="ws1", to_workspace="ws2")
    deny = rule(db, "deny", from_sandbox="a1", message_types=["command"], description="a1 gives no orders")
    later_deny = rule(db, "deny", from_sandbox="a1", to_sandbox="b1")
    assert allowed(db, "a1", "b2", "request")
    error = refusal(db, "a1", "b2", "command", privileged=True)
    assert error.details["rule"] == deny and error.details["reason"] == policies.DENIED_BY_RULE
    assert error.message == f"refused by policy {deny['id']} (deny a1 → * for command)"
    # Both deny rules match: the lowest id is reported.
    assert refusal(db, "a1", "b1", "command").details["rule"]["id"] == deny["id"]
    assert refusal(db, "a1", "b1", "request", privileged=True).details["rule"] == later_deny
    assert allowed(db, "a2", "b1", "request")


def test_command_needs_a_grant_unless_privileged(sandboxes):
    db = sandboxes
    assert refusal(db, "a1", "a2", "command").details["reason"] == "commands need a grant"
    assert allowed(db, "a1", "a2", "command", privileged=True)
    assert allowed(db, "a1", "b1", "notification", privileged=True)
    rule(db, "allow", from_sandbox="a1", to_workspace="ws1", message_types=["command"])
    assert allowed(db, "a1", "a2", "command")
    assert refusal(db, "a2", "a1", "command").details["reason"] == "commands need a grant"
    # A grant that does not list command (all types) grants it too: it matches command.
    rule(db, "allow", from_sandbox="a2", to_sandbox="a1")
    assert allowed(db, "a2", "a1", "command")


def test_unknown_or_unregistered_sender_is_refused_unless_privileged(sandboxes):
    db = sandboxes
    error = refusal(db, "stranger", "a1", "notification")
    assert error.details["reason"] == policies.UNKNOWN_SENDER and "not a registered sandbox" in error.message
    assert allowed(db, "stranger", "a1", "notification", privileged=True)
    registry.unregister(db, "a2")
    assert refusal(db, "a2", "a1").details["reason"] == policies.UNKNOWN_SENDER
    # A workspace selector never matches a sender without one; a sandbox or "*" selector does.
    rule(db, "allow", from_workspace="ws1", to_sandbox="a1")
    assert refusal(db, "stranger", "a1").details["reason"] == policies.UNKNOWN_SENDER
    rule(db, "allow", from_sandbox="stranger", to_sandbox="a1", message_types=["notification"])
    assert allowed(db, "stranger", "a1", "notification")


def test_wildcards_match_any_and_specific_selectors_must_equal(sandboxes):
    db = sandboxes
    everything = rule(db, "deny", to_sandbox="b2")
    for sender in ("a1", "b1", "nobody"):
        for message_type in ("request", "command"):
            assert refusal(db, sender, "b2", message_type, privileged=True).details["rule"] == everything
    assert allowed(db, "b2", "b1", "request")
    rule(db, "allow", to_workspace="ws2", message_types=["notification"])  # any sender into ws2
    assert allowed(db, "a1", "b1", "notification") and allowed(db, "nobody", "b1", "notification")
    assert refusal(db, "a1", "b1", "request").details["reason"] == policies.DIFFERENT_WORKSPACES


def test_broadcast_is_not_checked_by_check_send(sandboxes):
    db = sandboxes
    rule(db, "deny")
    assert allowed(db, "a1", "broadcast", "command")
    assert policies.evaluate(directory(db), from_sandbox="a1", to_sandbox="broadcast", message_type="command",
                             privileged=False).allowed


def test_rules_crud_and_audit(db):
    created = rule(db, "deny", from_workspace="ws1", message_types=["command", "command", "request"],
                   description="no orders from ws1")
    assert created["message_types"] == ["command", "request"] and created["to_sandbox"] == "*"
    assert created["created_by"] == ADMIN.id and created["created_at"]
    assert policies.get_rule(db, created["id"]) == created and policies.list_rules(db) == [created]
    assert policies.delete_rule(db, created["id"], ADMIN) == created
    assert policies.list_rules(db) == []
    for missing in (created["id"], 0, 2**40):
        with pytest.raises(NotFound) as err:
            policies.get_rule(db, missing)
        assert err.value.code == "unknown_policy"
    with pytest.raises(NotFound):
        policies.delete_rule(db, created["id"], ADMIN)
    events = audit.list_page(db, audit.AuditFilter(target=f"policy:{created['id']}"), 0, 10)["events"]
    assert [(e["action"], e["actor"], e["details"]["rule"]) for e in events] == [
        ("policy.created", ADMIN.id, created), ("policy.deleted", ADMIN.id, created)]


# ------------------------------------------------------------------------------------------- broadcast scoping

def notification(sender: str, to: str = "broadcast", message_type: str = "notification") -> dict:
    return {"from_sandbox": sender, "to_sandbox": to, "from_agent": "agent", "to_agent": "any",
            "message_type": message_type, "content": {"x": 1}, "priority": 5, "requires_response": False,
            "correlation_id": None, "ttl": None, "metadata": {}}


def broadcast(db, sender: str, message_type: str = "notification") -> list[str]:
    message = messages.accept(db, notification(sender, message_type=message_type), max_content_bytes=LIMIT)
    result = delivery.deliver(db, message.id)
    again = delivery.deliver(db, message.id)
    assert again.new_recipients == [] and again.recipients == result.recipients
    return [sandbox for sandbox, _ in result.recipients]


def test_broadcast_reaches_only_the_senders_workspace(sandboxes):
    db = sandboxes
    register(db, "ws1", "a3")
    assert broadcast(db, "a1") == ["a2", "a3"]
    assert broadcast(db, "b1") == ["b2"]
    registry.unregister(db, "b2")
    message = messages.accept(db, notification("b1"), max_content_bytes=LIMIT)
    result = delivery.deliver(db, message.id)  # nobody else in ws2: delivered to none, still news
    assert result.recipients == [] and result.dead_letter_events == [] and result.notifications()
    assert messages.report(db, message.id)["status"] == "delivered"


def test_deny_rule_removes_a_broadcast_recipient(sandboxes):
    db = sandboxes
    register(db, "ws1", "a3")
    rule(db, "deny", from_sandbox="a1", to_sandbox="a3", message_types=["notification"])
    assert broadcast(db, "a1") == ["a2"]
    assert broadcast(db, "a1", "request") == ["a2", "a3"]  # the rule is for notifications only
    assert broadcast(db, "a2") == ["a1", "a3"]
    rule(db, "allow", from_workspace="ws1", to_workspace="ws2")  # allow rules do not widen a broadcast
    assert broadcast(db, "a2") == ["a1", "a3"]


def test_unregistered_senders_broadcast_reaches_every_registered_sandbox(sandboxes):
    db = sandboxes
    assert broadcast(db, "operator") == ["a1", "a2", "b1", "b2"]
    rule(db, "deny", to_workspace="ws2", to_sandbox="b1")
    assert broadcast(db, "operator") == ["a1", "a2", "b2"]


def test_seqs_stay_dense_per_mailbox_with_scoped_broadcasts(sandboxes):
    db = sandboxes
    broadcast(db, "a1")
    broadcast(db, "b1")
    message = messages.accept(db, notification("operator"), max_content_bytes=LIMIT)
    assert dict(delivery.deliver(db, message.id).recipients) == {"a1": 1, "a2": 2, "b1": 1, "b2": 2}


# ------------------------------------------------------------------------------------------- REST API

class Recorder:
    """Stands in for the delivery queue and notifier: this file tests the HTTP layer and the database."""

    def enqueue(self, *args, **kwargs):
        pass

    def publish(self, notification):
        pass


def build_app(tmp_path, **env):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "memory", **env})
    upgrade(settings)
    recorder = Recorder()
    application = create_app(settings, start_listener=False, delivery=recorder, notifier=recorder)
    ctx = application.extensions["bus"]
    register(ctx.db, "ws1", "a1", "a2")
    register(ctx.db, "ws2", "b1")
    return application


@pytest.fixture
def app(tmp_path):
    application = build_app(tmp_path, AUTH_ENABLED="false")
    yield application
    application.extensions["bus"].db.dispose()


@pytest.fixture
def http(app):
    return app.test_client()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()["error"]
    assert body["code"] and body["message"] and "details" in body
    return body


def test_create_list_show_delete(app, http):
    assert http.get("/api/v1/policies").get_json() == {"policies": [], "count": 0}
    answer = http.post("/api/v1/policies", json={"effect": "allow", "from_workspace": "ws1", "to_workspace": "ws2",
                                                  "message_types": ["request"], "description": "ws1 asks ws2"})
    assert answer.status_code == 201, answer.get_json()
    created = answer.get_json()
    assert {k: created[k] for k in ("effect", "from_workspace", "from_sandbox", "to_workspace", "to_sandbox",
                                    "message_types", "description", "created_by")} == {
        "effect": "allow", "from_workspace": "ws1", "from_sandbox": "*", "to_workspace": "ws2", "to_sandbox": "*",
        "message_types": ["request"], "description": "ws1 asks ws2", "created_by": "anonymous"}
    assert isinstance(created["id"], int) and created["created_at"]
    minimal = http.post("/api/v1/policies", json={"effect": "deny"}).get_json()
    assert (minimal["message_types"], minimal["description"], minimal["to_workspace"]) == ([], "", "*")
    assert http.get("/api/v1/policies").get_json() == {"policies": [created, minimal], "count": 2}
    assert http.get(f"/api/v1/policies/{created['id']}").get_json() == created
    deleted = http.delete(f"/api/v1/policies/{created['id']}")
    assert deleted.status_code == 200 and deleted.get_json() == created
    assert error_of(http.get(f"/api/v1/policies/{created['id']}"), 404)["code"] == "unknown_policy"
    assert error_of(http.delete(f"/api/v1/policies/{created['id']}"), 404)["code"] == "unknown_policy"
    assert error_of(http.get("/api/v1/policies/99999999999999999999999"), 404)["code"] == "unknown_policy"
    assert http.get("/api/v1/policies").get_json()["count"] == 1
    db = app.extensions["bus"].db
    actions = [e["action"] for e in audit.list_page(db, audit.AuditFilter(), 0, 100)["events"]
               if e["action"].startswith("policy.")]
    assert actions == ["policy.created", "policy.created", "policy.deleted"]


def test_check_is_a_dry_run_of_the_send_path(http):
    def check(**body):
        answer = http.post("/api/v1/policies/check", json=body)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    same = check(from_sandbox="a1", to_sandbox="a2", message_type="request")
    assert same == {"allowed": True, "rule": None, "reason": policies.SAME_WORKSPACE}
    assert check(from_sandbox="a1", to_sandbox="a2", message_type="command")["reason"] == "commands need a grant"
    assert check(from_sandbox="a1", to_sandbox="b1", message_type="request") == {
        "allowed": False, "rule": None, "reason": policies.DIFFERENT_WORKSPACES}
    assert check(from_sandbox="a1", to_sandbox="b1", message_type="request", privileged=True) == {
        "allowed": True, "rule": None, "reason": policies.PRIVILEGED}
    deny = http.post("/api/v1/policies", json={"effect": "deny", "from_sandbox": "a1"}).get_json()
    assert check(from_sandbox="a1", to_sandbox="b1", message_type="request", privileged=True) == {
        "allowed": False, "rule": deny, "reason": policies.DENIED_BY_RULE}
    assert check(from_sandbox="a1", to_sandbox="broadcast", message_type="notification")["allowed"]


@pytest.mark.parametrize("body, field", [
    pytest.param({"effect": "deny", "colour": "red"}, "colour", id="unknown-field"),
    pytest.param({}, "effect", id="effect-missing"),
    pytest.param({"effect": "maybe"}, "effect", id="effect-unknown"),
    pytest.param({"effect": "ALLOW"}, "effect", id="effect-uppercase"),
    pytest.param({"effect": None}, "effect", id="effect-null"),
    pytest.param({"effect": "allow", "message_types": ["gossip"]}, "message_types", id="type-unknown"),
    pytest.param({"effect": "allow", "message_types": "request"}, "message_types", id="types-not-a-list"),
    pytest.param({"effect": "allow", "message_types": ["request", "request"]}, "message_types", id="type-twice"),
    pytest.param({"effect": "allow", "message_types": [5]}, "message_types", id="type-number"),
    pytest.param({"effect": "allow", "from_sandbox": "team a"}, "from_sandbox", id="selector-space"),
    pytest.param({"effect": "allow", "to_workspace": ""}, "to_workspace", id="selector-empty"),
    pytest.param({"effect": "allow", "to_sandbox": "**"}, "to_sandbox", id="selector-double-star"),
    pytest.param({"effect": "allow", "to_sandbox": "a*"}, "to_sandbox", id="selector-glob"),
    pytest.param({"effect": "allow", "from_workspace": "ws1\n"}, "from_workspace", id="selector-newline"),
    pytest.param({"effect": "allow", "from_workspace": "w" * 129}, "from_workspace", id="selector-129-chars"),
    pytest.param({"effect": "allow", "from_sandbox": None}, "from_sandbox", id="selector-null"),
    pytest.param({"effect": "allow", "to_sandbox": 7}, "to_sandbox", id="selector-number"),
    pytest.param({"effect": "allow", "to_sandbox": "broadcast"}, "to_sandbox", id="selector-broadcast"),
    pytest.param({"effect": "allow", "description": "d" * 501}, "description", id="description-501-chars"),
    pytest.param({"effect": "allow", "description": ["x"]}, "description", id="description-list"),
    pytest.param({"effect": "allow", "id": 3}, "id", id="server-set-id"),
    pytest.param({"effect": "allow", "created_by": "me"}, "created_by", id="server-set-created-by"),
])
def test_bad_policy_is_400(app, http, body, field):
    error = error_of(http.post("/api/v1/policies", json=body), 400)
    assert error["code"] == "validation_error" and field in error["details"]
    assert http.get("/api/v1/policies").get_json()["count"] == 0


def test_description_of_500_chars_is_accepted(http):
    assert http.post("/api/v1/policies", json={"effect": "allow", "description": "d" * 500}).status_code == 201


@pytest.mark.parametrize("raw, code", [
    pytest.param(b"", "invalid_json", id="empty"),
    pytest.param(b"{", "invalid_json", id="truncated"),
    pytest.param(b"[]", "validation_error", id="array"),
    pytest.param(b'"allow"', "validation_error", id="string"),
])
def test_malformed_policy_body_is_400(http, raw, code):
    response = http.post("/api/v1/policies", data=raw, content_type="application/json")
    assert error_of(response, 400)["code"] == code


@pytest.mark.parametrize("body, field", [
    pytest.param({"from_sandbox": "a1", "to_sandbox": "a2"}, "message_type", id="type-missing"),
    pytest.param({"from_sandbox": "a1", "to_sandbox": "a2", "message_type": "gossip"}, "message_type", id="type-bad"),
    pytest.param({"from_sandbox": "*", "to_sandbox": "a2", "message_type": "request"}, "from_sandbox", id="star"),
    pytest.param({"from_sandbox": "a1", "to_sandbox": "a2", "message_type": "request", "privileged": "yes"},
                 "privileged", id="privileged-string"),
    pytest.param({"from_sandbox": "a1", "to_sandbox": "a2", "message_type": "request", "extra": 1}, "extra",
                 id="unknown-field"),
])
def test_bad_check_is_400(http, body, field):
    error = error_of(http.post("/api/v1/policies/check", json=body), 400)
    assert error["code"] == "validation_error" and field in error["details"]


def test_with_authentication_admin_manages_and_viewer_only_reads(tmp_path):
    application = build_app(tmp_path, AUTH_ENABLED="true")
    db = application.extensions["bus"].db
    try:
        http = application.test_client()
        _, admin = auth.create_key(db, "t", "admin")
        _, viewer = auth.create_key(db, "v", "viewer")
        as_admin = {"Authorization": f"Bearer {admin}"}
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert error_of(http.get("/api/v1/policies"), 401)["code"] == "unauthorized"
        created = http.post("/api/v1/policies", json={"effect": "deny", "to_sandbox": "b1"}, headers=as_admin)
        assert created.status_code == 201, created.get_json()
        assert created.get_json()["created_by"].startswith("key:")
        refused = http.post("/api/v1/policies", json={"effect": "allow"}, headers=as_viewer)
        assert error_of(refused, 403)["code"] == "forbidden"
        rule_id = created.get_json()["id"]
        assert error_of(http.delete(f"/api/v1/policies/{rule_id}", headers=as_viewer), 403)["code"] == "forbidden"
        assert http.get("/api/v1/policies", headers=as_viewer).get_json()["count"] == 1
        check = http.post("/api/v1/policies/check", headers=as_viewer,
                          json={"from_sandbox": "a1", "to_sandbox": "b1", "message_type": "request"})
        assert check.get_json()["rule"]["id"] == rule_id
        assert http.delete(f"/api/v1/policies/{rule_id}", headers=as_admin).status_code == 200
    finally:
        db.dispose()
