"""The dead-letter REST API on a real SQLite database: list/filter/page, show, replay, delete, purge, bad input.

Dead letters are produced by the services (`give_up`, NACK), as a worker would; end-to-end replay over real
sockets is in test_delivery_guarantees.py."""

from __future__ import annotations

import pytest

from app.composition import create_app
from app.config import Settings
from app.migrate import upgrade
from app.services import delivery, messages, redelivery, registry
from tests.servers import authenticate_test_app


class Recorder:
    """Stands in for the delivery queue and notifier (this file tests the HTTP layer and the database)."""

    def __init__(self):
        self.calls = []

    def enqueue(self, message_id, priority, expires_at=None):
        self.calls.append(("enqueue", message_id, priority))

    def publish(self, notification):
        self.calls.append(("publish", notification.get("kind")))


@pytest.fixture
def app(tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "memory"})
    upgrade(settings)
    recorder = Recorder()
    application = create_app(settings, start_listener=False, delivery=recorder, notifier=recorder)
    authenticate_test_app(application)
    ctx = application.extensions["bus"]
    for sandbox in ("a", "b", "c"):
        registry.register(ctx.db, sandbox, "default", [], {})
    yield application
    ctx.db.dispose()


@pytest.fixture
def http(app):
    return app.test_client()


def dead_letter(app, to: str = "b", how: str = "undeliverable") -> str:
    db = app.extensions["bus"].db
    message = messages.accept(db, {
        "from_sandbox": "a", "to_sandbox": to, "from_agent": "x", "to_agent": "any", "message_type": "command",
        "content": {}, "priority": 7, "requires_response": False, "correlation_id": None, "ttl": None, "metadata": {},
    }, max_content_bytes=1024)
    if how == "undeliverable":
        delivery.give_up(db, message.id, "worker crashed")
    else:
        delivery.deliver(db, message.id)
        redelivery.nack(db, to, messages.report(db, message.id)["deliveries"][0]["seq"], "bad input")
    return message.id


def error_code(response, status: int) -> str:
    assert response.status_code == status, response.get_json()
    body = response.get_json()["error"]
    assert body["message"] and "details" in body
    return body["code"]


def test_list_filters_and_pages(app, http):
    ids = [dead_letter(app, to) for to in ("b", "c", "b")]
    nacked = dead_letter(app, "c", how="nack")
    everything = http.get("/api/v1/dead-letters").get_json()
    assert everything["total"] == 4 and [d["message_id"] for d in everything["dead_letters"]] == [*ids, nacked]
    assert everything["dead_letters"][0]["message"]["priority"] == 7
    assert http.get("/api/v1/dead-letters?reason=nacked").get_json()["dead_letters"][0]["last_error"] == "bad input"
    assert http.get("/api/v1/dead-letters?sandbox_id=b").get_json()["total"] == 2
    page = http.get("/api/v1/dead-letters?limit=3").get_json()
    rest = http.get(f"/api/v1/dead-letters?limit=3&after={page['next_after']}").get_json()
    assert page["count"] == 3 and rest["count"] == 1 and rest["next_after"] is None
    window = "since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z"
    assert http.get(f"/api/v1/dead-letters?{window}").get_json()["total"] == 0


def test_show_replay_and_delete_one(app, http):
    message_id = dead_letter(app)
    dead = http.get("/api/v1/dead-letters").get_json()["dead_letters"][0]
    assert http.get(f"/api/v1/dead-letters/{dead['id']}").get_json()["message"]["message_id"] == message_id
    replayed = http.post(f"/api/v1/dead-letters/{dead['id']}/replay")
    assert replayed.status_code == 202 and replayed.get_json()["redelivery"] == "queued"
    assert ("enqueue", message_id, 7) in app.extensions["bus"].delivery.calls
    assert http.get("/api/v1/dead-letters").get_json()["total"] == 0
    assert http.get(f"/api/v1/messages/{message_id}").get_json()["status"] == "accepted"

    other = dead_letter(app)
    dead = http.get(f"/api/v1/dead-letters?message_id={other}").get_json()["dead_letters"][0]
    assert http.delete(f"/api/v1/dead-letters/{dead['id']}").get_json() == {"id": dead["id"], "deleted": True}
    assert error_code(http.get(f"/api/v1/dead-letters/{dead['id']}"), 404) == "unknown_dead_letter"


def test_bulk_replay_by_filter(app, http):
    for to in ("b", "b", "c"):
        dead_letter(app, to)
    answer = http.post("/api/v1/dead-letters/replay", json={"sandbox_id": "b"})
    assert answer.status_code == 202 and answer.get_json()["replayed"] == 2
    assert http.get("/api/v1/dead-letters").get_json()["total"] == 1
    assert http.post("/api/v1/dead-letters/replay").get_json()["replayed"] == 1  # empty body: everything


def test_purge_needs_a_filter_or_all(app, http):
    for to in ("b", "c", "c"):
        dead_letter(app, to)
    assert error_code(http.delete("/api/v1/dead-letters"), 400) == "filter_required"
    assert http.delete("/api/v1/dead-letters?sandbox_id=c").get_json() == {"purged": 2}
    assert http.delete("/api/v1/dead-letters?all=true").get_json() == {"purged": 1}
    assert http.get("/api/v1/dead-letters").get_json()["total"] == 0


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("GET", "/api/v1/dead-letters?reason=bored", {}, 400, "validation_error"),
    ("GET", "/api/v1/dead-letters?since=yesterday", {}, 400, "validation_error"),
    ("GET", "/api/v1/dead-letters?limit=0", {}, 400, "validation_error"),
    ("GET", "/api/v1/dead-letters?after=-1", {}, 400, "validation_error"),
    ("GET", "/api/v1/dead-letters?color=red", {}, 400, "validation_error"),
    ("GET", "/api/v1/dead-letters/999", {}, 404, "unknown_dead_letter"),
    ("GET", "/api/v1/dead-letters/abc", {}, 404, "not_found"),
    ("POST", "/api/v1/dead-letters/999/replay", {}, 404, "unknown_dead_letter"),
    ("DELETE", "/api/v1/dead-letters/999", {}, 404, "unknown_dead_letter"),
    ("POST", "/api/v1/dead-letters/replay", {"json": {"reason": "nope"}}, 400, "validation_error"),
    ("POST", "/api/v1/dead-letters/replay", {"json": {"limit": 0}}, 400, "validation_error"),
    ("POST", "/api/v1/dead-letters/replay", {"json": [1]}, 400, "validation_error"),
    ("POST", "/api/v1/dead-letters/replay", {"data": "{oops"}, 400, "invalid_json"),
    ("DELETE", "/api/v1/dead-letters?all=yes", {}, 400, "validation_error"),
])
def test_bad_input_is_refused_and_changes_nothing(app, http, method, path, kwargs, status, code):
    dead_letter(app)
    assert error_code(http.open(path, method=method, **kwargs), status) == code
    assert http.get("/api/v1/dead-letters").get_json()["total"] == 1


def test_polling_clients_ack_and_nack_over_rest(app, http):
    db = app.extensions["bus"].db
    ids = [messages.accept(db, {
        "from_sandbox": "a", "to_sandbox": "b", "from_agent": "x", "to_agent": "any", "message_type": "request",
        "content": {"i": i}, "priority": 5, "requires_response": False, "correlation_id": None, "ttl": None,
        "metadata": {}}, max_content_bytes=1024).id for i in range(2)]
    for message_id in ids:
        delivery.deliver(db, message_id)
    acked = http.post("/api/v1/sandboxes/b/ack", json={"seq": 1})
    assert acked.status_code == 200 and acked.get_json()["message_id"] == ids[0]
    nacked = http.post("/api/v1/sandboxes/b/nack", json={"seq": 2, "reason": "no tool for that"})
    assert nacked.status_code == 200 and nacked.get_json()["state"] == "dead"
    nacked = http.get("/api/v1/dead-letters?reason=nacked").get_json()["dead_letters"]
    assert nacked[0]["last_error"] == "no tool for that"
    assert error_code(http.post("/api/v1/sandboxes/b/ack", json={"seq": 2}), 409) == "entry_dead_lettered"
    assert error_code(http.post("/api/v1/sandboxes/b/ack", json={"seq": 99}), 404) == "unknown_entry"
    assert error_code(http.post("/api/v1/sandboxes/b/ack", json={"seq": "1"}), 400) == "validation_error"
    assert error_code(http.post("/api/v1/sandboxes/b/nack", json={"seq": 1, "why": "x"}), 400) == "validation_error"
    assert error_code(http.post("/api/v1/sandboxes/b/nack", json={"seq": 1}), 409) == "entry_not_pending"
