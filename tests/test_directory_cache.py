"""Each API process caches credentials, registrations and policy rules (app.services.directory); a change made
through one node, or by the CLI straight on the database, takes effect on the very next request to another node.

Two `collab-bus api` nodes share one SQLite database and one Redis. Every check first warms node B's cache
with a request that succeeds, then changes the fact through node A (or the CLI) and asks node B at once.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.servers import BusProcess, RedisServer, bus_client

CLI = str(Path(sys.executable).parent / "collab-bus")


@pytest.fixture(scope="module")
def nodes():
    """(bus, node A client, node B client): two API processes and one worker on one database and Redis."""
    redis = RedisServer()
    bus = None
    try:
        bus = BusProcess("redis", redis_url=redis.url)
        bus.start_api("api2")
        with bus_client(bus.api_url("api")) as node_a, bus_client(bus.api_url("api2")) as node_b:
            yield bus, node_a, node_b
    finally:
        if bus is not None:
            bus.cleanup()
        redis.cleanup()


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def register(node, sandbox_id: str, workspace: str = "default") -> str:
    answer = node.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id, "workspace": workspace})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["token"]


def as_token(node, token: str, method: str, path: str, **kwargs):
    return node.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def send(node, token: str, sender: str, recipient: str):
    return as_token(node, token, "POST", "/api/v1/messages", json={
        "from_sandbox": sender, "to_sandbox": recipient, "from_agent": "a", "message_type": "notification",
        "content": {"text": "hi"}})


def test_unregistering_on_node_a_revokes_the_token_on_node_b_at_once(nodes):
    _, node_a, node_b = nodes
    sandbox = uid("gone")
    token = register(node_a, sandbox)
    assert as_token(node_b, token, "GET", f"/api/v1/sandboxes/{sandbox}").status_code == 200
    assert node_a.delete(f"/api/v1/sandboxes/{sandbox}").status_code == 200
    refused = as_token(node_b, token, "GET", f"/api/v1/sandboxes/{sandbox}")
    assert refused.status_code == 401
    assert refused.json()["error"]["details"]["reason"] == "revoked"


def test_a_rotation_on_node_a_revokes_earlier_tokens_on_node_b_and_the_new_one_works_there(nodes):
    _, node_a, node_b = nodes
    sandbox = uid("rotated")
    old = register(node_a, sandbox)
    assert as_token(node_b, old, "GET", f"/api/v1/sandboxes/{sandbox}").status_code == 200
    rotated = as_token(node_a, old, "POST", f"/api/v1/sandboxes/{sandbox}/token", json={"rotate": True})
    assert rotated.status_code == 200, rotated.text
    assert as_token(node_b, old, "GET", f"/api/v1/sandboxes/{sandbox}").status_code == 401
    assert as_token(node_b, rotated.json()["token"], "GET", f"/api/v1/sandboxes/{sandbox}").status_code == 200


def test_a_sandbox_registered_on_node_a_can_be_messaged_through_node_b_at_once(nodes):
    _, node_a, node_b = nodes
    sender, recipient = uid("sender"), uid("late")
    token = register(node_a, sender)
    assert send(node_b, token, sender, recipient).status_code == 404  # not registered yet (not a cached answer)
    register(node_a, recipient)
    assert send(node_b, token, sender, recipient).status_code == 202


def test_a_re_registration_in_another_workspace_is_seen_by_node_b_policies_at_once(nodes):
    _, node_a, node_b = nodes
    sender, recipient = uid("sender"), uid("mover")
    token = register(node_a, sender, workspace="ws-one")
    register(node_a, recipient, workspace="ws-one")
    assert send(node_b, token, sender, recipient).status_code == 202
    assert node_a.delete(f"/api/v1/sandboxes/{recipient}").status_code == 200
    register(node_a, recipient, workspace="ws-two")
    refused = send(node_b, token, sender, recipient)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["reason"] == "different workspaces"


def test_a_policy_made_or_removed_on_node_a_decides_the_next_send_on_node_b(nodes):
    _, node_a, node_b = nodes
    sender, recipient = uid("sender"), uid("guarded")
    token = register(node_a, sender)
    register(node_a, recipient)
    assert send(node_b, token, sender, recipient).status_code == 202
    rule = node_a.post("/api/v1/policies", json={"effect": "deny", "from_sandbox": sender, "to_sandbox": recipient})
    assert rule.status_code == 201, rule.text
    refused = send(node_b, token, sender, recipient)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["rule"]["id"] == rule.json()["id"]
    assert node_a.delete(f"/api/v1/policies/{rule.json()['id']}").status_code == 200
    assert send(node_b, token, sender, recipient).status_code == 202


def test_a_key_revoked_by_the_cli_on_the_database_is_refused_by_both_nodes_at_once(nodes):
    bus, node_a, node_b = nodes
    env = {**bus.env, "DATABASE_URL": bus.database_url}
    name = uid("operator")
    created = subprocess.run([CLI, "keys", "create", "--role", "operator", "--name", name], env=env,
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    for node in (node_a, node_b):
        assert as_token(node, key, "GET", "/api/v1/sandboxes").status_code == 200
    revoked = subprocess.run([CLI, "keys", "revoke", name, "--yes"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    for node in (node_a, node_b):
        refused = as_token(node, key, "GET", "/api/v1/sandboxes")
        assert refused.status_code == 401
        assert refused.json()["error"]["details"]["reason"] == "revoked"
