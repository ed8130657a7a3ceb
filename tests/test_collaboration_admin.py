"""Collaboration admin: GET /api/v1/collaboration/status and /sandboxes, POST /disconnect. The answers' shapes and
bad input through an in-process app; the real thing on two API nodes, a worker and Redis: a sandbox with a mailbox
socket on each node is disconnected from both by one call on one node."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.servers import BusProcess, bus_client, wait_for, ws_connect
from tests.test_policies import error_of
from tests.test_workspaces_api import build_app


@pytest.fixture
def http(tmp_path):
    application = build_app(tmp_path)
    yield application.test_client()
    application.extensions["bus"].db.dispose()


def test_status_on_the_in_memory_broker_says_what_it_cannot_tell(http):
    body = http.get("/api/v1/collaboration/status").get_json()
    assert body["sandboxes"] == {"online": 0, "offline": 0, "unregistered": 0} and body["connected"] == 0
    assert body["message_rates"]["last_60s"] == {"accepted": 0, "delivered": 0, "dead_lettered": 0}
    assert body["workers"] is None and "in-memory broker" in body["unavailable"]["workers"]


@pytest.mark.parametrize("body, field", [
    ({}, "sandbox_id"),
    ({"sandbox_id": "a b"}, "sandbox_id"),
    ({"sandbox_id": "a", "reason": ""}, "reason"),
    ({"sandbox_id": "a", "reason": "é" * 10}, "reason"),
    ({"sandbox_id": "a", "reason": "x" * 121}, "reason"),
    ({"sandbox_id": "a", "extra": 1}, "extra"),
])
def test_disconnect_bad_input(http, body, field):
    assert field in error_of(http.post("/api/v1/collaboration/disconnect", json=body), 400)["details"]


def test_disconnect_unknown_and_listing_filters(http):
    assert error_of(http.post("/api/v1/collaboration/disconnect", json={"sandbox_id": "ghost"}), 404)["code"] == \
        "unknown_sandbox"
    assert http.get("/api/v1/collaboration/sandboxes").get_json() == {"sandboxes": [], "count": 0}
    error_of(http.get("/api/v1/collaboration/sandboxes?workspace=%20"), 400)
    error_of(http.get("/api/v1/collaboration/sandboxes?unknown=1"), 400)


@pytest.fixture(scope="module")
def two_nodes(redis_server):
    bus = BusProcess("redis", redis_url=redis_server.url)
    try:
        bus.start_api("api2")
        yield bus
    finally:
        bus.cleanup()


def test_disconnect_closes_the_sandboxs_sockets_on_every_node(two_nodes, unique):
    sandbox_id = unique("kicked")
    with bus_client(two_nodes.url) as admin:
        token = admin.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id}).json()["token"]
        events = ws_connect(f"{two_nodes.ws_url}/ws/events", open_timeout=10)
        assert json.loads(events.recv(timeout=10))["type"] == "welcome"
        sockets = [ws_connect(f"{url}/ws/sandboxes/{sandbox_id}", token=token, open_timeout=10)
                   for url in (two_nodes.api_ws_url("api"), two_nodes.api_ws_url("api2"))]
        for ws in sockets:
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        listed = wait_for(lambda: [s for s in admin.get("/api/v1/collaboration/sandboxes").json()["sandboxes"]
                                   if s["sandbox_id"] == sandbox_id and s["connected"]], 10, "the connection")[0]
        assert listed["node"] and listed["since"] and listed["address"] == "127.0.0.1"

        status = admin.get("/api/v1/collaboration/status").json()
        assert status["connected"] >= 1 and status["unavailable"] == {}
        assert any("delivery" in queues for queues in status["workers"].values()), status["workers"]
        assert set(status["queues"]) == {"delivery", "lifecycle", "maintenance"}

        answer = admin.post("/api/v1/collaboration/disconnect",
                            json={"sandbox_id": sandbox_id, "reason": "maintenance"})
        assert answer.status_code == 200 and answer.json()["status"] == "offline"
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    ws.recv(timeout=deadline - time.monotonic())
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "maintenance")
        seen = []
        wait_for(lambda: seen.append(json.loads(events.recv(timeout=5))) or any(
            e.get("event") == "sandbox.disconnected" and e["data"]["sandbox_id"] == sandbox_id and
            e["data"].get("reason") == "maintenance" and e["data"]["by"].startswith("key:") for e in seen),
            10, "the sandbox.disconnected event")
        events.close()
        assert admin.get(f"/api/v1/sandboxes/{sandbox_id}").json()["status"] == "offline"
        trail = admin.get("/api/v1/audit", params={"action": "sandbox.disconnected",
                                                   "target": f"sandbox:{sandbox_id}"}).json()["events"]
        assert len(trail) == 1 and trail[0]["details"]["reason"] == "maintenance"
