"""Admission control against the real bus (collab-bus api on Redis, its worker started late): with the delivery
backlog full, every send path answers 503 `overloaded` with Retry-After and stores nothing; once a worker drains
the backlog, sends are accepted again and everything accepted before is delivered."""

from __future__ import annotations

import json

import pytest

from tests.servers import BusProcess, bus_client, wait_for, ws_connect
from tests.test_end_to_end import recv_json, register

LIMIT = 20


@pytest.fixture
def workerless_bus(redis_server):
    process = BusProcess("redis", redis_url=redis_server.url, worker=False,
                         extra_env={"MAX_DELIVERY_BACKLOG": str(LIMIT)})
    yield process
    process.cleanup()


def body(sender: str, recipient: str, n: int) -> dict:
    return {"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "agent", "message_type": "notification",
            "content": {"n": n}}


def test_a_full_backlog_refuses_sends_with_retry_after_until_a_worker_drains_it(workerless_bus, unique):
    alice, bob = unique("alice"), unique("bob")
    with bus_client(workerless_bus.url) as http:
        token = register(http, alice)["token"]
        register(http, bob)
        accepted = []
        for n in range(LIMIT):
            response = http.post("/api/v1/messages", json=body(alice, bob, n))
            assert response.status_code == 202, response.text
            accepted.append(response.json()["message_id"])
        refused = http.post("/api/v1/messages", json=body(alice, bob, 100))
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        error = refused.json()["error"]
        assert (error["code"], error["details"]) == ("overloaded", {"backlog": LIMIT, "limit": LIMIT})
        batch = http.post("/api/v1/messages/batch", json={"messages": [body(alice, bob, 101)]})
        assert batch.status_code == 503 and batch.json()["error"]["code"] == "overloaded"
        with ws_connect(f"{workerless_bus.ws_url}/ws/sandboxes/{alice}", token=token, open_timeout=10) as ws:
            assert recv_json(ws)["type"] == "welcome"
            ws.send(json.dumps({"type": "send", "ref": "r", "message": body(alice, bob, 102)}))
            answer = recv_json(ws)
            assert (answer["type"], answer["ref"], answer["status"], answer["code"]) == \
                ("error", "r", 503, "overloaded")
        assert http.get(f"/api/v1/sandboxes/{bob}").json()["head_seq"] == 0

        workerless_bus.start_worker()
        wait_for(lambda: http.get(f"/api/v1/sandboxes/{bob}").json()["head_seq"] == LIMIT, 30,
                 "the worker to deliver the backlog")
        again = http.post("/api/v1/messages", json=body(alice, bob, 103))
        assert again.status_code == 202, again.text
        wait_for(lambda: http.get(f"/api/v1/sandboxes/{bob}").json()["head_seq"] == LIMIT + 1, 30,
                 "the new message to be delivered")
        page = http.get(f"/api/v1/sandboxes/{bob}/messages", params={"since": 0, "limit": 100}).json()
        assert {e["message"]["message_id"] for e in page["entries"]} >= set(accepted)  # nothing accepted was lost

