"""Bad input on every endpoint: a 4xx with {"error": {"code", "message", "details"}}, never a 500, nothing stored.

REST endpoints are exercised through Flask's test client on an app whose delivery queue and notifier are
recorders: validation happens before anything is stored or enqueued, so no worker is needed, and every
refused request is checked to leave the database, the queue and the notifications untouched.
WebSocket frames go to the real bus (`bus` fixture: embedded, Redis and RabbitMQ).
"""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from app.composition import create_app
from app.config import Settings
from app.migrate import upgrade
from app.models import Base
from app.schemas import MAX_JSON_DEPTH
from tests.servers import ADMIN_HEADERS, authenticate_test_app
from tests.servers import ws_connect as connect

DEFAULT_LIMIT = 256 * 1024
RECV_TIMEOUT = 10
ERROR_KEYS = {"code", "message", "details"}


# --------------------------------------------------------------------------------------------- fixtures


class Recorder:
    """Stands in for the delivery queue and the notifier: remembers every call."""

    def __init__(self):
        self.calls: list = []

    def enqueue(self, message_id: str, priority: int, expires_at: float | None = None) -> None:
        self.calls.append(("enqueue", message_id, priority))

    def publish(self, notification: dict) -> None:
        self.calls.append(("publish", notification["event"]["event"]))


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory):
    """A SQLite database migrated to head once per session; each app starts from a copy."""
    settings = Settings.from_env({"DATA_DIR": str(tmp_path_factory.mktemp("migrated"))})
    upgrade(settings)
    return settings.sqlite_path


@pytest.fixture
def make_app(tmp_path, migrated_db):
    """Build an app on its own migrated SQLite file, with `env` added to the settings; sandboxes a and b registered."""
    apps = []

    def build(**env):
        data_dir = tmp_path / f"app{len(apps)}"
        settings = Settings.from_env({"DATA_DIR": str(data_dir), "MESSAGE_BACKEND": "memory", **env})
        data_dir.mkdir()
        shutil.copyfile(migrated_db, settings.sqlite_path)
        recorder = Recorder()
        app = create_app(settings, start_listener=False, delivery=recorder, notifier=recorder)
        authenticate_test_app(app)
        app.testing = False  # errors must go through the app's handlers, as in production
        ctx = app.extensions["bus"]
        apps.append(app)
        http = app.test_client()
        for sandbox_id in ("a", "b"):
            assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id}).status_code == 201
        ctx.delivery.calls.clear()
        return app

    yield build
    for app in apps:
        app.extensions["bus"].db.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def http(app):
    return app.test_client()


def snapshot(app) -> dict:
    """Every row of every table, and every enqueue/notification so far: what a refused request must not change.

    The audit trail is left out: recording refusals is its job.
    """
    ctx = app.extensions["bus"]
    with ctx.db.read() as session:
        state = {table.name: session.execute(select(table)).all() for table in Base.metadata.sorted_tables
                 if table.name != "audit_events"}
    state["recorded"] = list(ctx.delivery.calls)
    return state


def assert_error(response, status: int, code: str) -> dict:
    """The response is `status` with the JSON error shape and `code`; returns the error object."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert isinstance(error["details"], (dict, list)), error
    assert "Traceback" not in error["message"]
    return error


def refused(app, method: str, path: str, status: int, code: str, **kwargs) -> dict:
    """Send a request that must be refused with `status`/`code` and change nothing; returns the error object."""
    before = snapshot(app)
    error = assert_error(app.test_client().open(path, method=method, **kwargs), status, code)
    assert snapshot(app) == before, "a refused request changed stored state"
    return error


DROP = object()  # in message(...) overrides: leave the field out


def message(**overrides) -> dict:
    """A valid direct message from a to b, with `overrides` applied (a value of DROP removes the field)."""
    body = {"from_sandbox": "a", "to_sandbox": "b", "from_agent": "planner", "message_type": "request",
            "content": {"task": "review"}}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not DROP}


# --------------------------------------------------------------------------------------------- bodies

POST_ENDPOINTS = ["/api/v1/messages", "/api/v1/broadcast", "/api/v1/sandboxes/register"]

MALFORMED_BODIES = [
    pytest.param(b"", "invalid_json", id="empty"),
    pytest.param(b"  \n\t ", "invalid_json", id="whitespace"),
    pytest.param(b"not json", "invalid_json", id="not-json"),
    pytest.param(b'{"from_sandbox": "a",', "invalid_json", id="truncated"),
    pytest.param(b"{'single': 'quotes'}", "invalid_json", id="single-quotes"),
    pytest.param(b'{"a": 1} trailing', "invalid_json", id="trailing-garbage"),
    pytest.param(b"\xff\xfe{\x00}\x00", "invalid_json", id="not-utf8"),
    pytest.param(b"from_sandbox=a&to_sandbox=b", "invalid_json", id="form-encoded"),
    pytest.param(b'{"content": {"x": NaN}}', "invalid_json", id="nan"),
    pytest.param(b'{"content": {"x": -Infinity}}', "invalid_json", id="infinity"),
    pytest.param(b'{"content": {"x": 1e999}}', "invalid_json", id="float-overflow"),
    pytest.param(b'{"content": {"x": ' + b"9" * 5000 + b"}}", "invalid_json", id="5000-digit-int"),
    pytest.param(b'{"content": {"x": "\\ud800"}}', "invalid_json", id="lone-surrogate"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "invalid_json", id="nested-100000"),
    pytest.param(b'{"content": ' + b'{"x":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 2),
                 "invalid_json", id="nested-past-limit"),
    pytest.param(b"[]", "validation_error", id="array"),
    pytest.param(b'[{"from_sandbox": "a"}]', "validation_error", id="array-of-object"),
    pytest.param(b'"a string"', "validation_error", id="string"),
    pytest.param(b"42", "validation_error", id="number"),
    pytest.param(b"null", "validation_error", id="null"),
    pytest.param(b"true", "validation_error", id="true"),
]


@pytest.mark.parametrize("path", POST_ENDPOINTS)
@pytest.mark.parametrize("raw, code", MALFORMED_BODIES)
def test_malformed_body_is_refused(app, path, raw, code):
    refused(app, "POST", path, 400, code, data=raw, content_type="application/json")


def test_invalid_json_reports_where(app):
    error = refused(app, "POST", "/api/v1/messages", 400, "invalid_json",
                    data='{\n  "from_sandbox": "a",\n  oops\n}', content_type="application/json")
    assert error["details"] == {"line": 3, "column": 3}


def test_too_deep_reports_the_limit(app):
    body = message(content={"x": json.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)})
    error = refused(app, "POST", "/api/v1/messages", 400, "invalid_json", json=body)
    assert error["details"] == {"max_depth": MAX_JSON_DEPTH}


def test_nesting_within_the_limit_and_surrogate_pairs_are_accepted(app, http):
    deep = json.loads("[" * (MAX_JSON_DEPTH - 3) + "]" * (MAX_JSON_DEPTH - 3))  # body > content > x > arrays
    response = http.post("/api/v1/messages", json=message(content={"x": deep, "emoji": "\U0001F600"}))
    assert response.status_code == 202, response.get_json()
    stored = http.get(f"/api/v1/messages/{response.get_json()['message_id']}").get_json()["message"]
    assert stored["content"]["emoji"] == "\U0001F600"


# --------------------------------------------------------------------------------------------- message fields

BAD_MESSAGE_FIELDS = [
    # unknown and missing fields
    pytest.param({"colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"messageType": "request"}, "messageType", id="unknown-camelcase-field"),
    *[pytest.param({name: DROP}, name, id=f"missing-{name}")
      for name in ("from_sandbox", "to_sandbox", "from_agent", "message_type", "content")],
    # priority
    pytest.param({"priority": "5"}, "priority", id="priority-string"),
    pytest.param({"priority": 5.5}, "priority", id="priority-float"),
    pytest.param({"priority": 5.0}, "priority", id="priority-float-integral"),
    pytest.param({"priority": True}, "priority", id="priority-bool"),
    pytest.param({"priority": None}, "priority", id="priority-null"),
    pytest.param({"priority": -1}, "priority", id="priority-negative"),
    pytest.param({"priority": 10}, "priority", id="priority-10"),
    pytest.param({"priority": 10**30}, "priority", id="priority-huge"),
    # requires_response
    pytest.param({"requires_response": "true"}, "requires_response", id="requires_response-string-true"),
    pytest.param({"requires_response": "yes"}, "requires_response", id="requires_response-yes"),
    pytest.param({"requires_response": 1}, "requires_response", id="requires_response-1"),
    pytest.param({"requires_response": 0}, "requires_response", id="requires_response-0"),
    pytest.param({"requires_response": 1.0}, "requires_response", id="requires_response-1.0"),
    pytest.param({"requires_response": None}, "requires_response", id="requires_response-null"),
    # content and metadata
    pytest.param({"content": ["a", "b"]}, "content", id="content-list"),
    pytest.param({"content": "hello"}, "content", id="content-string"),
    pytest.param({"content": 5}, "content", id="content-number"),
    pytest.param({"content": None}, "content", id="content-null"),
    pytest.param({"metadata": ["a"]}, "metadata", id="metadata-list"),
    pytest.param({"metadata": "x"}, "metadata", id="metadata-string"),
    pytest.param({"metadata": None}, "metadata", id="metadata-null"),
    # ttl
    pytest.param({"ttl": 0}, "ttl", id="ttl-0"),
    pytest.param({"ttl": -5}, "ttl", id="ttl-negative"),
    pytest.param({"ttl": "60"}, "ttl", id="ttl-string"),
    pytest.param({"ttl": 1.5}, "ttl", id="ttl-float"),
    pytest.param({"ttl": 30 * 24 * 3600 + 1}, "ttl", id="ttl-over-30-days"),
    # message_type
    pytest.param({"message_type": "question"}, "message_type", id="type-not-in-enum"),
    pytest.param({"message_type": "REQUEST"}, "message_type", id="type-wrong-case"),
    pytest.param({"message_type": ""}, "message_type", id="type-empty"),
    pytest.param({"message_type": 1}, "message_type", id="type-number"),
    pytest.param({"message_type": None}, "message_type", id="type-null"),
    # identifiers
    pytest.param({"from_sandbox": ""}, "from_sandbox", id="from_sandbox-empty"),
    pytest.param({"from_sandbox": "a" * 129}, "from_sandbox", id="from_sandbox-129-chars"),
    pytest.param({"from_sandbox": "has space"}, "from_sandbox", id="from_sandbox-space"),
    pytest.param({"from_sandbox": 7}, "from_sandbox", id="from_sandbox-number"),
    pytest.param({"from_sandbox": None}, "from_sandbox", id="from_sandbox-null"),
    pytest.param({"to_sandbox": "a/b"}, "to_sandbox", id="to_sandbox-slash"),
    pytest.param({"to_sandbox": "x" * 129}, "to_sandbox", id="to_sandbox-129-chars"),
    pytest.param({"to_sandbox": "-b"}, "to_sandbox", id="to_sandbox-leading-dash"),
    pytest.param({"to_sandbox": "b\n"}, "to_sandbox", id="to_sandbox-newline"),
    pytest.param({"from_agent": ""}, "from_agent", id="from_agent-empty"),
    pytest.param({"from_agent": "tab\there"}, "from_agent", id="from_agent-tab"),
    pytest.param({"from_agent": "agent\u00e9"}, "from_agent", id="from_agent-non-ascii"),
    pytest.param({"to_agent": "../etc/passwd"}, "to_agent", id="to_agent-path"),
    pytest.param({"to_agent": None}, "to_agent", id="to_agent-null"),
    pytest.param({"message_id": "bad id"}, "message_id", id="message_id-space"),
    pytest.param({"message_id": ""}, "message_id", id="message_id-empty"),
    pytest.param({"message_id": "m" * 129}, "message_id", id="message_id-129-chars"),
    pytest.param({"message_id": 12345}, "message_id", id="message_id-number"),
    # correlation_id and timestamp
    pytest.param({"correlation_id": ""}, "correlation_id", id="correlation_id-empty"),
    pytest.param({"correlation_id": "c" * 129}, "correlation_id", id="correlation_id-129-chars"),
    pytest.param({"correlation_id": 5}, "correlation_id", id="correlation_id-number"),
    pytest.param({"correlation_id": "a\u0000b"}, "correlation_id", id="correlation_id-nul"),
    pytest.param({"correlation_id": "abc\n"}, "correlation_id", id="correlation_id-trailing-newline"),
    pytest.param({"timestamp": "yesterday"}, "timestamp", id="timestamp-string"),
    pytest.param({"timestamp": 10**400}, "timestamp", id="timestamp-huge"),
]


@pytest.mark.parametrize("overrides, field", BAD_MESSAGE_FIELDS)
def test_bad_message_field_is_refused_and_named(app, overrides, field):
    error = refused(app, "POST", "/api/v1/messages", 400, "validation_error", json=message(**overrides))
    assert field in error["details"], error
    assert field in error["message"], error


def test_every_problem_is_reported_at_once(app):
    error = refused(app, "POST", "/api/v1/messages", 400, "validation_error",
                    json=message(priority=11, requires_response="true", content=[], ttl=0, extra=1))
    assert set(error["details"]) == {"priority", "requires_response", "content", "ttl", "extra"}


def test_boundary_values_are_accepted(app, http):
    limits = message(priority=9, ttl=30 * 24 * 3600, message_id="m" * 128, correlation_id="c" * 128,
                     from_agent="A0_.:@-z", requires_response=True, metadata={}, content={})
    assert http.post("/api/v1/messages", json=limits).status_code == 202
    assert http.post("/api/v1/messages", json=message(priority=0, ttl=1, correlation_id=None)).status_code == 202
    assert http.post("/api/v1/messages", json=message(ttl=None, message_id=None, to_agent="any")).status_code == 202


@pytest.mark.parametrize("overrides, field", [
    pytest.param({"to_sandbox": "b"}, "to_sandbox", id="to_sandbox-not-broadcast"),
    pytest.param({"to_sandbox": "Broadcast"}, "to_sandbox", id="to_sandbox-wrong-case"),
    pytest.param({"from_sandbox": DROP}, "from_sandbox", id="missing-from_sandbox"),
    pytest.param({"from_agent": DROP}, "from_agent", id="missing-from_agent"),
    pytest.param({"content": DROP}, "content", id="missing-content"),
    pytest.param({"message_type": "shout"}, "message_type", id="type-not-in-enum"),
    pytest.param({"priority": "high"}, "priority", id="priority-string"),
    pytest.param({"bogus": 1}, "bogus", id="unknown-field"),
])
def test_bad_broadcast_is_refused(app, overrides, field):
    body = {"from_sandbox": "a", "from_agent": "planner", "content": {"all": True}, **overrides}
    error = refused(app, "POST", "/api/v1/broadcast", 400, "validation_error",
                    json={k: v for k, v in body.items() if v is not DROP})
    assert field in error["details"], error


BAD_IDEMPOTENCY_KEYS = [
    pytest.param([("Idempotency-Key", "")], id="empty"),
    pytest.param([("Idempotency-Key", "k" * 256)], id="256-chars"),
    pytest.param([("Idempotency-Key", "two words")], id="space"),
    pytest.param([("Idempotency-Key", "cl\u00e9")], id="non-ascii"),
    pytest.param([("Idempotency-Key", "del\x7f")], id="del-character"),
    pytest.param([("Idempotency-Key", "first"), ("Idempotency-Key", "second")], id="sent-twice"),
]


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/broadcast"])
@pytest.mark.parametrize("headers", BAD_IDEMPOTENCY_KEYS)
def test_bad_idempotency_key_is_refused_and_named(app, path, headers):
    body = message() if path.endswith("messages") else {"from_sandbox": "a", "from_agent": "x", "content": {}}
    error = refused(app, "POST", path, 400, "validation_error", json=body, headers=headers)
    assert list(error["details"]) == ["Idempotency-Key"], error


# --------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/broadcast"])
def test_content_over_the_default_limit_is_413(app, path):
    body = message(content={"blob": "x" * DEFAULT_LIMIT})
    if path.endswith("broadcast"):
        del body["to_sandbox"]
    error = refused(app, "POST", path, 413, "payload_too_large", json=body)
    assert error["details"]["limit"] == DEFAULT_LIMIT
    assert error["details"]["content_bytes"] > DEFAULT_LIMIT


def test_max_content_bytes_setting_lowers_the_limit(make_app):
    app = make_app(MAX_CONTENT_BYTES="1024")
    http = app.test_client()
    envelope = len('{"blob":""}')
    assert http.post("/api/v1/messages", json=message(content={"blob": "x" * (1024 - envelope)})).status_code == 202
    error = refused(app, "POST", "/api/v1/messages", 413, "payload_too_large",
                    json=message(content={"blob": "x" * (1024 - envelope + 1)}))
    assert error["details"] == {"content_bytes": 1025, "limit_bytes": 1024, "limit": 1024}
    assert "the limit is 1024 bytes (MAX_CONTENT_BYTES)" in error["message"]
    # The limit counts UTF-8 bytes, not characters: 600 two-byte characters are 1200 bytes.
    refused(app, "POST", "/api/v1/messages", 413, "payload_too_large", json=message(content={"blob": "\u00e9" * 600}))


@pytest.mark.parametrize("env, body_bytes", [
    pytest.param({}, DEFAULT_LIMIT + 128 * 1024, id="default"),
    pytest.param({"MAX_CONTENT_BYTES": "1024"}, 200 * 1024, id="max-content-1024"),
])
def test_request_body_far_above_the_limit_is_413_json(make_app, env, body_bytes):
    app = make_app(**env)
    body = json.dumps(message(content={"blob": "x" * body_bytes}))
    limit = int(env.get("MAX_CONTENT_BYTES", DEFAULT_LIMIT)) + 64 * 1024
    for path in POST_ENDPOINTS:
        error = refused(app, "POST", path, 413, "payload_too_large", data=body, content_type="application/json")
        assert error["details"] == {"limit_bytes": limit, "body_bytes": len(body)}, error
        assert f"the limit is {limit} bytes" in error["message"], error


# --------------------------------------------------------------------------------------------- routing and state


def test_message_to_a_never_registered_sandbox_is_404(app):
    error = refused(app, "POST", "/api/v1/messages", 404, "unknown_sandbox", json=message(to_sandbox="ghost"))
    assert error["details"] == {"sandbox_id": "ghost"}


def test_message_to_an_unregistered_sandbox_is_404(app, http):
    assert http.delete("/api/v1/sandboxes/b").status_code == 200
    error = refused(app, "POST", "/api/v1/messages", 404, "unknown_sandbox", json=message())
    assert error["details"] == {"sandbox_id": "b"}


def test_duplicate_message_id_is_409_and_keeps_the_first(app, http):
    first = http.post("/api/v1/messages", json=message(message_id="msg-1", content={"n": 1}))
    assert first.status_code == 202 and first.get_json()["message_id"] == "msg-1"
    for again in (message(message_id="msg-1", content={"n": 2}),
                  {"from_sandbox": "b", "from_agent": "x", "message_id": "msg-1", "content": {}}):
        path = "/api/v1/messages" if "to_sandbox" in again else "/api/v1/broadcast"
        error = refused(app, "POST", path, 409, "duplicate_message_id", json=again)
        assert error["details"] == {"message_id": "msg-1"}
    report = http.get("/api/v1/messages/msg-1").get_json()
    assert report["message"]["content"] == {"n": 1}


def test_unknown_message_is_404(app):
    error = refused(app, "GET", "/api/v1/messages/no-such-message", 404, "unknown_message")
    assert error["details"] == {"message_id": "no-such-message"}
    refused(app, "GET", "/api/v1/messages/%00%ff", 404, "unknown_message")


def test_refused_sends_store_nothing_and_the_next_good_one_goes_through(app, http):
    for body in (message(priority="9"), message(to_sandbox="ghost"), message(content={"x": "y" * DEFAULT_LIMIT})):
        assert 400 <= http.post("/api/v1/messages", json=body).status_code < 500
    recorded = app.extensions["bus"].delivery.calls
    assert recorded == []
    response = http.post("/api/v1/messages", json=message())
    assert response.status_code == 202
    message_id = response.get_json()["message_id"]
    assert ("enqueue", message_id, 5) in recorded
    assert snapshot(app)["messages"][0].message_id == message_id
    assert len(snapshot(app)["messages"]) == 1


# --------------------------------------------------------------------------------------------- sandboxes


@pytest.mark.parametrize("body, field", [
    pytest.param({}, "sandbox_id", id="missing-sandbox_id"),
    pytest.param({"sandbox_id": ""}, "sandbox_id", id="sandbox_id-empty"),
    pytest.param({"sandbox_id": "s" * 129}, "sandbox_id", id="sandbox_id-129-chars"),
    pytest.param({"sandbox_id": "my sandbox"}, "sandbox_id", id="sandbox_id-space"),
    pytest.param({"sandbox_id": "a/b"}, "sandbox_id", id="sandbox_id-slash"),
    pytest.param({"sandbox_id": "c\n"}, "sandbox_id", id="sandbox_id-trailing-newline"),
    pytest.param({"sandbox_id": 42}, "sandbox_id", id="sandbox_id-number"),
    pytest.param({"sandbox_id": "c", "workspace": ""}, "workspace", id="workspace-empty"),
    pytest.param({"sandbox_id": "c", "workspace": 5}, "workspace", id="workspace-number"),
    pytest.param({"sandbox_id": "c", "workspace": "team a"}, "workspace", id="workspace-space"),
    pytest.param({"sandbox_id": "c", "agents": "planner"}, "agents", id="agents-string"),
    pytest.param({"sandbox_id": "c", "agents": {"name": "x"}}, "agents", id="agents-object"),
    pytest.param({"sandbox_id": "c", "agents": ["planner"]}, "agents", id="agent-string"),
    pytest.param({"sandbox_id": "c", "agents": [{}]}, "agents", id="agent-without-name"),
    pytest.param({"sandbox_id": "c", "agents": [{"name": "bad name"}]}, "agents", id="agent-bad-name"),
    pytest.param({"sandbox_id": "c", "agents": [{"name": "x", "role": "y"}]}, "agents", id="agent-unknown-field"),
    pytest.param({"sandbox_id": "c", "agents": [{"name": "x", "capabilities": "code"}]}, "agents",
                 id="capabilities-string"),
    pytest.param({"sandbox_id": "c", "agents": [{"name": "x", "capabilities": [1]}]}, "agents", id="capability-number"),
    pytest.param({"sandbox_id": "c", "agents": [{"name": "x", "capabilities": [""]}]}, "agents", id="capability-empty"),
    pytest.param({"sandbox_id": "c", "agents": [{"name": f"a{i}"} for i in range(101)]}, "agents", id="101-agents"),
    pytest.param({"sandbox_id": "c", "metadata": []}, "metadata", id="metadata-list"),
    pytest.param({"sandbox_id": "c", "metadata": None}, "metadata", id="metadata-null"),
    pytest.param({"sandbox_id": "c", "status": "online"}, "status", id="unknown-field"),
])
def test_bad_registration_is_refused(app, body, field):
    error = refused(app, "POST", "/api/v1/sandboxes/register", 400, "validation_error", json=body)
    assert field in error["details"], error


def test_registration_identifier_boundary(http):
    assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": "s" * 128}).status_code == 201


def test_workspace_change_is_409_and_changes_nothing(app, http):
    original = {"sandbox_id": "c", "workspace": "team-a", "agents": [{"name": "planner"}], "metadata": {"v": 1}}
    assert http.post("/api/v1/sandboxes/register", json=original).status_code == 201
    error = refused(app, "POST", "/api/v1/sandboxes/register", 409, "workspace_mismatch",
                    json={**original, "workspace": "team-b", "agents": [], "metadata": {"v": 2}})
    assert error["details"] == {"sandbox_id": "c", "workspace": "team-a"}
    sandbox = http.get("/api/v1/sandboxes/c").get_json()
    assert (sandbox["workspace"], sandbox["agents"], sandbox["metadata"]) == (
        "team-a", [{"name": "planner", "capabilities": []}], {"v": 1})


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_sandbox_is_404(app, method):
    error = refused(app, method, "/api/v1/sandboxes/ghost", 404, "unknown_sandbox")
    assert error["details"] == {"sandbox_id": "ghost"}


def test_unregistered_sandbox_is_404_on_get_delete_and_poll(app, http):
    assert http.delete("/api/v1/sandboxes/b").status_code == 200
    for method, path in (("GET", "/api/v1/sandboxes/b"), ("DELETE", "/api/v1/sandboxes/b"),
                         ("GET", "/api/v1/sandboxes/b/messages")):
        refused(app, method, path, 404, "unknown_sandbox")


@pytest.mark.parametrize("query, field", [
    pytest.param("since=-1", "since", id="since-negative"),
    pytest.param("since=abc", "since", id="since-abc"),
    pytest.param("since=1.5", "since", id="since-float"),
    pytest.param("since=", "since", id="since-empty"),
    pytest.param("since=--5", "since", id="since-double-minus"),
    pytest.param("since=%C2%B2", "since", id="since-superscript-digit"),
    pytest.param("since=%D9%A3", "since", id="since-arabic-digit"),
    pytest.param("since=true", "since", id="since-bool"),
    pytest.param("since=99999999999999999999999", "since", id="since-beyond-bigint"),
    pytest.param("since=" + "9" * 5000, "since", id="since-5000-digits"),
    pytest.param("limit=0", "limit", id="limit-0"),
    pytest.param("limit=-3", "limit", id="limit-negative"),
    pytest.param("limit=1001", "limit", id="limit-1001"),
    pytest.param("limit=5000", "limit", id="limit-5000"),
    pytest.param("limit=ten", "limit", id="limit-word"),
    pytest.param("page=2", "page", id="unknown-param"),
    pytest.param("since=1&cursor=x", "cursor", id="unknown-param-with-valid"),
])
def test_bad_mailbox_query_is_400(app, query, field):
    error = refused(app, "GET", f"/api/v1/sandboxes/b/messages?{query}", 400, "validation_error")
    assert field in error["details"], error


def test_mailbox_query_boundaries_are_accepted(http):
    for query in ("since=0&limit=1", "limit=1000", f"since={2**63 - 1}"):
        response = http.get(f"/api/v1/sandboxes/b/messages?{query}")
        assert response.status_code == 200, (query, response.get_json())
        assert response.get_json()["entries"] == []


def test_poll_of_an_unknown_sandbox_is_404(app):
    refused(app, "GET", "/api/v1/sandboxes/ghost/messages?since=0", 404, "unknown_sandbox")


@pytest.mark.parametrize("query, field", [
    pytest.param("status=bogus", "status", id="status-bogus"),
    pytest.param("status=ONLINE", "status", id="status-wrong-case"),
    pytest.param("status=", "status", id="status-empty"),
    pytest.param("workspace=", "workspace", id="workspace-empty"),
    pytest.param("workspace=team%20a", "workspace", id="workspace-space"),
    pytest.param("workspace=default%0A", "workspace", id="workspace-trailing-newline"),
    pytest.param("workspace=" + "w" * 129, "workspace", id="workspace-129-chars"),
    pytest.param("include_unregistered=yes", "include_unregistered", id="include-yes"),
    pytest.param("include_unregistered=1", "include_unregistered", id="include-1"),
    pytest.param("include_unregistered=True", "include_unregistered", id="include-True"),
    pytest.param("sort=id", "sort", id="unknown-param"),
])
def test_bad_sandbox_list_query_is_400(app, query, field):
    error = refused(app, "GET", f"/api/v1/sandboxes?{query}", 400, "validation_error")
    assert field in error["details"], error


def test_sandbox_list_filters_are_accepted(http):
    response = http.get("/api/v1/sandboxes?workspace=default&status=offline&include_unregistered=true")
    assert response.status_code == 200
    assert [s["sandbox_id"] for s in response.get_json()["sandboxes"]] == ["a", "b"]


# --------------------------------------------------------------------------------------------- routes, methods, auth


@pytest.mark.parametrize("path", ["/nope", "/api/v1", "/api/v1/nope", "/api/v2/messages",
                                  "/api/v1/sandboxes/b/messages/1", "/healthz/extra"])
def test_unknown_route_is_404_json(app, path):
    refused(app, "GET", path, 404, "not_found")


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/broadcast"), ("PUT", "/api/v1/messages"), ("DELETE", "/api/v1/messages/x"),
    ("PATCH", "/api/v1/sandboxes/a"), ("PUT", "/api/v1/sandboxes"), ("PUT", "/api/v1/sandboxes/register"),
    ("POST", "/api/v1/edition"), ("PATCH", "/api/v1/workspaces/a"),
    ("POST", "/api/v1/sandboxes/a/messages"), ("POST", "/healthz"), ("DELETE", "/healthz"),
])
def test_wrong_method_is_405_json(app, method, path):
    refused(app, method, path, 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/ws/sandboxes/a", "/ws/broadcast", "/ws/events"])
def test_plain_http_to_a_websocket_route_is_400_json(app, path):
    refused(app, "GET", path, 400, "bad_request")


def test_healthz_ignores_query_and_body(http):
    assert http.get("/healthz?verbose=1", data=b"junk").get_json() == {"status": "ok"}


def test_a_bogus_bearer_token_is_401_everywhere_and_changes_nothing(app):
    auth = {"Authorization": "Bearer whatever"}
    for method, path, body in (("POST", "/api/v1/messages", message()),
                               ("POST", "/api/v1/broadcast", {"from_sandbox": "a", "from_agent": "x", "content": {}}),
                               ("POST", "/api/v1/sandboxes/register", {"sandbox_id": "a"}),
                               ("GET", "/api/v1/sandboxes", None),
                               ("GET", "/api/v1/sandboxes/b/messages", None)):
        error = refused(app, method, path, 401, "unauthorized", json=body, headers=auth)
        assert error["details"] == {"reason": "malformed"}


# --------------------------------------------------------------------------------------------- real server


BODY_LIMIT = DEFAULT_LIMIT + 64 * 1024  # MAX_CONTENT_BYTES and room for the envelope around the content
BATCH_LIMIT = 4 * 1024 * 1024  # MAX_BATCH_BYTES


def chunks(size: int, chunk: int = 64 * 1024):
    """A JSON object of `size` bytes, sent chunked (no Content-Length: the server finds the size as it reads)."""
    yield b"{"
    for start in range(0, size - 2, chunk):
        yield b" " * min(chunk, size - 2 - start)
    yield b"}"


@pytest.mark.parametrize("path, limit", [
    ("/api/v1/messages", BODY_LIMIT), ("/api/v1/broadcast", BODY_LIMIT), ("/api/v1/sandboxes/register", BODY_LIMIT),
    ("/api/v1/topics/news/messages", BODY_LIMIT), ("/api/v1/messages/batch", BATCH_LIMIT),
])
@pytest.mark.parametrize("size, chunked", [
    pytest.param(None, False, id="just-over"), pytest.param(5 * 1024 * 1024, False, id="5MB"),
    pytest.param(5 * 1024 * 1024, True, id="5MB-chunked"),
])
def test_oversized_body_on_the_real_server_is_413_json_naming_the_limit(client, path, limit, size, chunked):
    """Whatever the size, and whether or not the client announced it: 413 with the limit in bytes."""
    size = size or limit + 1
    body = chunks(size) if chunked else b"{" + b" " * (size - 2) + b"}"
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "payload_too_large", error
    assert error["details"]["limit_bytes"] == limit and f"{limit} bytes" in error["message"], error
    if not chunked:
        assert error["details"]["body_bytes"] == size and str(size) in error["message"], error


# --------------------------------------------------------------------------------------------- WebSockets


def recv_json(ws) -> dict:
    return json.loads(ws.recv(timeout=RECV_TIMEOUT))


def assert_error_frame(frame: dict, code: str) -> dict:
    assert frame["type"] == "error", frame
    assert set(frame) == {"type"} | ERROR_KEYS, frame
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str) and frame["message"].strip(), frame
    assert isinstance(frame["details"], (dict, list)), frame
    return frame


def register(client, sandbox_id: str) -> None:
    response = client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id})
    assert response.status_code in (200, 201), response.text


def assert_refused_and_closed(url: str, code: str) -> dict:
    with connect(url, open_timeout=RECV_TIMEOUT) as ws:
        frame = assert_error_frame(recv_json(ws), code)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=RECV_TIMEOUT)
        assert ws.close_code == 1008 and ws.close_reason == code
    return frame


@pytest.mark.parametrize("query", ["since=-1", "since=abc", "since=1.5", "since=", "since=99999999999999999999999",
                                   "limit=5", "bogus=1"])
def test_mailbox_socket_with_a_bad_query_is_refused(bus, client, unique, query):
    sandbox = unique("bob")
    register(client, sandbox)
    assert_refused_and_closed(f"{bus.ws_url}/ws/sandboxes/{sandbox}?{query}", "validation_error")


def test_mailbox_socket_of_an_unknown_or_unregistered_sandbox_is_refused(bus, client, unique):
    ghost, leaver = unique("ghost"), unique("leaver")
    frame = assert_refused_and_closed(f"{bus.ws_url}/ws/sandboxes/{ghost}?since=0", "unknown_sandbox")
    assert frame["details"] == {"sandbox_id": ghost}
    register(client, leaver)
    assert client.delete(f"/api/v1/sandboxes/{leaver}").status_code == 200
    assert_refused_and_closed(f"{bus.ws_url}/ws/sandboxes/{leaver}", "unknown_sandbox")


BAD_FRAMES = [
    pytest.param("not json", "invalid_frame", id="not-json"),
    pytest.param("", "invalid_frame", id="empty"),
    pytest.param("[]", "invalid_frame", id="array"),
    pytest.param('"ack"', "invalid_frame", id="string"),
    pytest.param("{}", "invalid_frame", id="no-type"),
    pytest.param('{"type": 5}', "invalid_frame", id="numeric-type"),
    pytest.param('{"type": null}', "invalid_frame", id="null-type"),
    pytest.param('{"type": "subscribe_all"}', "invalid_frame", id="unknown-type"),
    pytest.param('{"type": "ACK", "seq": 1}', "invalid_frame", id="type-wrong-case"),
    pytest.param('{"type": "ping", "x": NaN}', "invalid_frame", id="nan"),
    pytest.param("[" * 5000, "invalid_frame", id="deeply-nested"),
    pytest.param(b"\xff\xfe", "invalid_frame", id="binary-not-utf8"),
]
BAD_ACKS = [
    pytest.param('{"type": "ack"}', "validation_error", id="ack-without-seq"),
    pytest.param('{"type": "ack", "seq": "1"}', "validation_error", id="ack-seq-string"),
    pytest.param('{"type": "ack", "seq": 1.5}', "validation_error", id="ack-seq-float"),
    pytest.param('{"type": "ack", "seq": true}', "validation_error", id="ack-seq-bool"),
    pytest.param('{"type": "ack", "seq": null}', "validation_error", id="ack-seq-null"),
    pytest.param('{"type": "ack", "seq": 0}', "validation_error", id="ack-seq-0"),
    pytest.param('{"type": "ack", "seq": -1}', "validation_error", id="ack-seq-negative"),
    pytest.param('{"type": "ack", "seq": 99999999999999999999999}', "validation_error", id="ack-seq-beyond-bigint"),
    pytest.param('{"type": "ack", "seq": 1, "id": "x"}', "validation_error", id="ack-unknown-field"),
    pytest.param('{"type": "ack", "seq": 2}', "unknown_entry", id="ack-nonexistent-seq"),
]


def test_mailbox_socket_answers_bad_frames_and_stays_usable(bus, client, unique):
    sender, receiver = unique("sender"), unique("receiver")
    register(client, sender)
    register(client, receiver)
    sent = client.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": receiver, "from_agent": "x",
                                                 "message_type": "notification", "content": {"n": 1}})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["message_id"]
    with connect(f"{bus.ws_url}/ws/sandboxes/{receiver}?since=0", open_timeout=RECV_TIMEOUT) as ws:
        assert recv_json(ws)["type"] == "welcome"
        frame = recv_json(ws)
        assert (frame["type"], frame["seq"], frame["message"]["message_id"]) == ("message", 1, message_id)
        for bad in BAD_FRAMES + BAD_ACKS:
            raw, code = bad.values
            ws.send(raw)
            assert_error_frame(recv_json(ws), code)
        # None of that acked anything; the socket still works and a good ack lands.
        report = client.get(f"/api/v1/messages/{message_id}").json()
        assert [d["state"] for d in report["deliveries"]] == ["delivered"]
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws) == {"type": "pong"}
        ws.send(json.dumps({"type": "ack", "seq": 1}))
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws) == {"type": "pong"}  # no error frame came before the pong
    report = client.get(f"/api/v1/messages/{message_id}").json()
    assert [d["state"] for d in report["deliveries"]] == ["acked"]


@pytest.mark.parametrize("channel", ["broadcast", "events"])
def test_channel_sockets_answer_bad_frames_and_stay_usable(bus, channel):
    """The replies to bad frames; what the channel carries meanwhile (the session's bus is shared: an `events`
    socket also gets other tests' events, e.g. a `sandbox.disconnected` that a NATS bus delivers a moment later than
    a Redis one) is passed over."""
    with connect(f"{bus.ws_url}/ws/{channel}", open_timeout=RECV_TIMEOUT) as ws:
        assert recv_json(ws)["type"] == "welcome"
        for raw in ('{"type": "subscribe"}', '{"type": "ack", "seq": 1}', "not json", "{}"):
            ws.send(raw)
            frame = assert_error_frame(recv_reply(ws), "invalid_frame")
        assert frame["message"]
        ws.send('{"type": "bogus"}')
        assert assert_error_frame(recv_reply(ws), "invalid_frame")["details"] == {"type": "bogus"}
        ws.send('{"type": "heartbeat"}')
        assert recv_reply(ws) == {"type": "pong"}


def recv_reply(ws) -> dict:
    """The next frame that is not channel traffic (`event`, `message`)."""
    while (frame := recv_json(ws))["type"] in ("event", "message"):
        pass
    return frame


# ------------------------------------------------------------------ query strings, reserved ids, database outage

def test_token_query_parameter_is_left_to_authentication(http):
    """Browsers pass `?token=`; resource endpoints must not refuse it as an unknown field."""
    assert http.get("/api/v1/sandboxes?token=abc").status_code == 200
    assert http.get("/api/v1/sandboxes/b/messages?since=0&token=abc").status_code == 200


def test_numeric_looking_workspace_is_a_valid_filter(http):
    assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": "c", "workspace": "123"}).status_code == 201
    listed = http.get("/api/v1/sandboxes?workspace=123").get_json()
    assert [s["sandbox_id"] for s in listed["sandboxes"]] == ["c"]


def test_broadcast_is_not_a_sandbox_id(app):
    error = refused(app, "POST", "/api/v1/sandboxes/register", 400, "validation_error",
                    json={"sandbox_id": "broadcast"})
    assert "sandbox_id" in error["details"]


def test_unreachable_database_is_503_json_not_500(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/bus.db",
                                  "MESSAGE_BACKEND": "memory", "DATA_DIR": str(tmp_path)})
    app = create_app(settings, start_listener=False)
    response = app.test_client().get("/api/v1/sandboxes", headers=ADMIN_HEADERS)  # checking the key needs the database
    assert_error(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "1"
    app.extensions["bus"].db.dispose()
