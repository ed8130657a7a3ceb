"""Workspaces, managed sandbox commands and the edition through an in-process app on a real SQLite database: success,
bad input (400/404/409/403 with the JSON error shape) and the community edition's limit. The lifecycle queue is a
recorder here (what the tasks then do to a real engine is tests/test_managed_sandboxes.py)."""

from __future__ import annotations

import pytest

from app.composition import create_app
from app.config import Settings
from app.migrate import upgrade
from app.services import registry
from tests.test_policies import error_of


class Recorder:
    """Stands in for the delivery and lifecycle queues and the notifier: it remembers what it was asked."""

    def __init__(self):
        self.converged: list[str] = []
        self.events: list[dict] = []

    def enqueue(self, *args, **kwargs):
        pass

    def converge(self, sandbox_id: str) -> None:
        self.converged.append(sandbox_id)

    def publish(self, notification: dict) -> None:
        self.events.append(notification)


def build_app(tmp_path, **env):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "memory", "AUTH_ENABLED": "false",
                                  "MANAGED_SANDBOXES": "true", **env})
    upgrade(settings)
    recorder = Recorder()
    return create_app(settings, start_listener=False, delivery=recorder, notifier=recorder, lifecycle=recorder)


@pytest.fixture
def app(tmp_path):
    application = build_app(tmp_path)
    yield application
    application.extensions["bus"].db.dispose()


@pytest.fixture
def http(app):
    return app.test_client()


# ------------------------------------------------------------------------------------------- workspaces

def test_workspace_crud(http):
    assert [w["id"] for w in http.get("/api/v1/workspaces").get_json()["workspaces"]] == ["default"]
    created = http.post("/api/v1/workspaces", json={"id": "research", "description": "the research team",
                                                    "settings": {"default_image": "busybox:1",
                                                                 "default_limits": {"memory_mb": 64, "pids": 64},
                                                                 "idle_stop_minutes": 30}})
    assert created.status_code == 201
    assert created.headers["Location"] == "/api/v1/workspaces/research"
    body = created.get_json()
    assert body["name"] == "research" and body["sandbox_count"] == 0
    assert body["settings"]["default_limits"] == {"memory_mb": 64, "pids": 64}
    changed = http.put("/api/v1/workspaces/research", json={"name": "Research", "description": ""}).get_json()
    assert changed["name"] == "Research" and changed["description"] == ""
    assert changed["settings"]["idle_stop_minutes"] == 30
    assert http.get("/api/v1/workspaces/research").get_json()["name"] == "Research"
    assert http.delete("/api/v1/workspaces/research").status_code == 200
    error_of(http.get("/api/v1/workspaces/research"), 404)


def test_a_self_registered_sandbox_names_its_workspace_into_existence(app, http):
    registry.register(app.extensions["bus"].db, "solo", "newcomers", [], {})
    workspace = http.get("/api/v1/workspaces/newcomers").get_json()
    assert workspace["sandbox_count"] == 1


@pytest.mark.parametrize("body, field", [
    ({}, "id"),
    ({"id": ""}, "id"),
    ({"id": "has space"}, "id"),
    ({"id": "ok", "unknown": 1}, "unknown"),
    ({"id": "ok", "settings": {"default_limits": {"memory_mb": 1}}}, "settings"),
    ({"id": "ok", "settings": {"default_limits": {"memory_mb": "64"}}}, "settings"),
    ({"id": "ok", "settings": {"default_image": "UPPER/case"}}, "settings"),
    ({"id": "ok", "settings": {"idle_stop_minutes": 0}}, "settings"),
    ({"id": "ok", "description": "x" * 2001}, "description"),
])
def test_workspace_bad_input(http, body, field):
    error = error_of(http.post("/api/v1/workspaces", json=body), 400)
    assert field in error["details"]


def test_workspace_conflicts_and_unknowns(app, http):
    assert http.post("/api/v1/workspaces", json={"id": "team"}).status_code == 201
    assert error_of(http.post("/api/v1/workspaces", json={"id": "team"}), 409)["code"] == "workspace_exists"
    assert error_of(http.put("/api/v1/workspaces/nope", json={"name": "x"}), 404)["code"] == "unknown_workspace"
    assert "_schema" in error_of(http.put("/api/v1/workspaces/team", json={}), 400)["details"]
    assert error_of(http.delete("/api/v1/workspaces/nope"), 404)["code"] == "unknown_workspace"
    error_of(http.delete("/api/v1/workspaces/team?force=maybe"), 400)
    error_of(http.post("/api/v1/workspaces", data=b"{", content_type="application/json"), 400)


def test_deleting_a_workspace_with_sandboxes_needs_force(app, http):
    ctx = app.extensions["bus"]
    http.post("/api/v1/workspaces", json={"id": "crew"})
    registry.register(ctx.db, "crew-self", "crew", [], {})
    managed = http.post("/api/v1/sandboxes", json={"sandbox_id": "crew-box", "workspace": "crew",
                                                   "image": "busybox:1"})
    assert managed.status_code == 202
    refused = error_of(http.delete("/api/v1/workspaces/crew"), 409)
    assert refused["code"] == "workspace_not_empty"
    assert sorted(refused["details"]["sandboxes"]) == ["crew-box", "crew-self"]
    forced = http.delete("/api/v1/workspaces/crew?force=true")
    assert forced.status_code == 202 and forced.get_json()["deleting_sandboxes"] == ["crew-box"]
    assert ctx.lifecycle.converged[-1] == "crew-box"
    error_of(http.get("/api/v1/sandboxes/crew-self"), 404)  # unregistered: its tokens stop working
    assert http.get("/api/v1/sandboxes/crew-box/status").get_json()["desired_state"] == "deleted"


# ------------------------------------------------------------------------------------------- managed sandboxes

def test_create_answers_202_and_enqueues_its_lifecycle_task(app, http):
    ctx = app.extensions["bus"]
    http.post("/api/v1/workspaces", json={"id": "lab", "settings": {"default_image": "busybox:1",
                                                                     "default_limits": {"memory_mb": 64}}})
    answer = http.post("/api/v1/sandboxes", json={"sandbox_id": "box-1", "workspace": "lab", "command": ["sh"],
                                                  "env": {"MODE": "test"}, "limits": {"cpus": 0.5}})
    assert answer.status_code == 202 and answer.headers["Location"] == "/api/v1/sandboxes/box-1"
    body = answer.get_json()
    assert body["state"] == "creating" and body["desired_state"] == "running" and body["managed"] is True
    assert body["spec"] == {"image": "busybox:1", "command": ["sh"], "env": {"MODE": "test"},
                            "limits": {"memory_mb": 64, "cpus": 0.5}, "network_mode": "host"}
    assert ctx.lifecycle.converged == ["box-1"]
    # the recorder the app was given, behind its LocalFirstNotifier
    assert [e["event"]["event"] for e in ctx.notifier.inner.events] == ["sandbox.state_changed"]
    listed = http.get("/api/v1/sandboxes?workspace=lab").get_json()["sandboxes"]
    assert [(s["sandbox_id"], s["state"]) for s in listed] == [("box-1", "creating")]
    assert http.post("/api/v1/sandboxes/box-1/stop").get_json()["desired_state"] == "stopped"
    assert http.post("/api/v1/sandboxes/box-1/start").get_json()["desired_state"] == "running"
    assert http.delete("/api/v1/sandboxes/box-1").status_code == 202
    assert error_of(http.post("/api/v1/sandboxes/box-1/start"), 409)["code"] == "sandbox_deleting"
    assert ctx.lifecycle.converged == ["box-1"] * 4


@pytest.mark.parametrize("body, field", [
    ({"image": "busybox:1", "sandbox_id": "broadcast"}, "sandbox_id"),
    ({"image": "busybox:1", "env": {"SANDBOX_ID": "x"}}, "env"),
    ({"image": "busybox:1", "env": {"1BAD": "x"}}, "env"),
    ({"image": "busybox:1", "env": {"OK": 1}}, "env"),
    ({"image": "busybox:1", "command": []}, "command"),
    ({"image": "busybox:1", "command": "echo hi"}, "command"),
    ({"image": "busybox:1", "limits": {"memory_mb": 0}}, "limits"),
    ({"image": "busybox:1", "limits": {"cpus": -1}}, "limits"),
    ({"image": "busybox:1", "limits": {"pids": 1.5}}, "limits"),
    ({"image": "busybox:1", "network_mode": "container:x"}, "network_mode"),
    ({"image": "busybox:1", "start": "yes"}, "start"),
    ({"image": "Not An Image"}, "image"),
    ({"image": "busybox:1", "extra": True}, "extra"),
])
def test_create_bad_input(http, body, field):
    assert field in error_of(http.post("/api/v1/sandboxes", json=body), 400)["details"]


def test_create_refusals(app, http):
    assert error_of(http.post("/api/v1/sandboxes", json={"workspace": "nowhere"}), 404)["code"] == "unknown_workspace"
    registry.register(app.extensions["bus"].db, "taken", "default", [], {})
    assert error_of(http.post("/api/v1/sandboxes", json={"sandbox_id": "taken"}), 409)["code"] == "sandbox_exists"
    assert error_of(http.post("/api/v1/sandboxes/taken/stop"), 409)["code"] == "not_managed"
    assert error_of(http.post("/api/v1/sandboxes/ghost/start"), 404)["code"] == "unknown_sandbox"
    assert error_of(http.get("/api/v1/sandboxes/taken/status"), 404)["code"] == "unknown_sandbox"
    assert error_of(http.get("/api/v1/sandboxes/ghost/logs"), 404)["code"] == "unknown_sandbox"
    http.post("/api/v1/sandboxes", json={"sandbox_id": "fresh"})
    assert error_of(http.get("/api/v1/sandboxes/fresh/logs"), 409)["code"] == "no_container"
    error_of(http.get("/api/v1/sandboxes/fresh/logs?tail=-1"), 400)
    error_of(http.get("/api/v1/sandboxes/fresh/logs?follow=1"), 400)


def test_community_edition_refuses_the_sixth_sandbox(http):
    assert http.get("/api/v1/edition").get_json() == {
        "edition": "community", "limits": {"managed_sandboxes": 5},
        "managed_sandboxes": {"enabled": True, "in_use": 0}}
    for n in range(5):
        assert http.post("/api/v1/sandboxes", json={"sandbox_id": f"s{n}"}).status_code == 202
    error = error_of(http.post("/api/v1/sandboxes", json={"sandbox_id": "s5"}), 403)
    assert error["code"] == "edition_limit" and error["details"] == {"edition": "community", "limit": 5, "in_use": 5}
    assert "5" in error["message"]


def test_enterprise_edition_lifts_the_limit(tmp_path):
    application = build_app(tmp_path, EDITION="enterprise", SANDBOX_LIMIT="1")
    http = application.test_client()
    for n in range(3):
        assert http.post("/api/v1/sandboxes", json={"sandbox_id": f"e{n}"}).status_code == 202
    assert http.get("/api/v1/edition").get_json()["limits"] == {"managed_sandboxes": None}
    application.extensions["bus"].db.dispose()


def test_managed_sandboxes_off_is_a_clear_refusal(tmp_path):
    application = build_app(tmp_path, MANAGED_SANDBOXES="false")
    error = error_of(application.test_client().post("/api/v1/sandboxes", json={}), 409)
    assert error["code"] == "managed_sandboxes_disabled" and "MANAGED_SANDBOXES=true" in error["message"]
    application.extensions["bus"].db.dispose()


def test_viewers_may_look_but_not_manage(tmp_path):
    from app.services import auth

    application = build_app(tmp_path, AUTH_ENABLED="true", ADMIN_API_KEY="cbk_admin-key-0123456789abcdefghij")
    ctx = application.extensions["bus"]
    _, viewer = auth.create_key(ctx.db, "viewer", "viewer")
    http = application.test_client()
    headers = {"Authorization": f"Bearer {viewer}"}
    assert http.get("/api/v1/workspaces", headers=headers).status_code == 200
    assert error_of(http.post("/api/v1/workspaces", json={"id": "x"}, headers=headers), 403)["code"] == "forbidden"
    assert error_of(http.post("/api/v1/sandboxes", json={}, headers=headers), 403)["code"] == "forbidden"
    error_of(http.get("/api/v1/workspaces"), 401)
    ctx.db.dispose()


def test_readyz_names_the_container_engine_when_managed_sandboxes_are_on(tmp_path):
    application = build_app(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    answer = application.test_client().get("/readyz")
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    error = answer.get_json()["error"]
    assert error["code"] == "not_ready" and "container_engine" in error["message"]
    assert f"docker engine at unix://{tmp_path}/no-engine.sock" in error["details"]["container_engine"]
    application.extensions["bus"].db.dispose()
