"""Conversation traces and the hop limit, against a real bus: the bus stamps metadata.trace on every message, a
three-hop conversation comes back from GET /api/v1/traces/{id} as a tree with timings, and a two-agent loop is
stopped by MAX_TRACE_HOPS (409 hop_limit, audited, an event)."""

from __future__ import annotations

import pytest

from tests.servers import BusProcess, bus_client, wait_for


@pytest.fixture(scope="module")
def traced_bus():
    bus = BusProcess("embedded", extra_env={"MAX_TRACE_HOPS": "3"})
    yield bus
    bus.cleanup()


@pytest.fixture
def http(traced_bus):
    with bus_client(traced_bus.url, timeout=15) as client:
        yield client


def register(http, *sandboxes):
    for sandbox in sandboxes:
        assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code in (200, 201)


def send(http, sender, recipient, message_type="request", parent=None, **fields):
    metadata = {"trace": {"parent_id": parent}} if parent else {}
    return http.post("/api/v1/messages", json={"from_sandbox": sender, "from_agent": "a", "to_sandbox": recipient,
                                                "message_type": message_type, "content": {}, "metadata": metadata,
                                                **fields})


def stored(http, message_id):
    return wait_for(lambda: (r := http.get(f"/api/v1/messages/{message_id}").json())["status"] != "accepted"
                    and r, 15, "routing")


def test_a_three_hop_conversation_is_a_tree_with_timings(http, unique):
    a, b, c = unique("a"), unique("b"), unique("c")
    register(http, a, b, c)
    root = send(http, a, b).json()["message_id"]
    onward = send(http, b, c, parent=root).json()["message_id"]
    answer = send(http, c, None, "response", correlation_id=onward).json()["message_id"]
    reply = send(http, b, None, "response", correlation_id=root).json()["message_id"]
    for message_id in (root, onward, answer, reply):
        stored(http, message_id)
    trace = stored(http, answer)["message"]["metadata"]["trace"]
    assert trace == {"trace_id": root, "parent_id": onward, "hops": 2}
    assert stored(http, root)["message"]["metadata"]["trace"] == {"trace_id": root, "parent_id": None, "hops": 0}

    tree = http.get(f"/api/v1/traces/{root}").json()
    assert tree["message_count"] == 4 and not tree["truncated"]
    [node] = tree["roots"]
    assert node["message"]["message_id"] == root and node["hops"] == 0
    assert [child["message"]["message_id"] for child in node["children"]] == [onward, reply]
    assert [g["message"]["message_id"] for g in node["children"][0]["children"]] == [answer]
    assert node["deliveries"][0]["sandbox_id"] == b and node["deliveries"][0]["delivered_at"]
    assert node["accepted_at"] and node["routed_at"]
    assert http.get(f"/api/v1/traces/{unique('none')}").status_code == 404


def test_a_loop_is_stopped_by_the_hop_limit(http, unique):
    a, b = unique("ping"), unique("pong")
    register(http, a, b)
    parent, sender, recipient = None, a, b
    for hop in range(4):  # hops 0..3: within MAX_TRACE_HOPS=3
        answer = send(http, sender, recipient, "notification", parent=parent)
        assert answer.status_code == 202, (hop, answer.text)
        parent, sender, recipient = answer.json()["message_id"], recipient, sender
    refused = send(http, sender, recipient, "notification", parent=parent)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "hop_limit" and error["details"]["guard"] == "hop_limit"
    assert (error["details"]["hops"], error["details"]["limit"]) == (4, 3)
    trail = http.get("/api/v1/audit", params={"action": "message.refused"}).json()["events"]
    assert any(e["details"].get("code") == "hop_limit" and e["details"].get("from_sandbox") == sender for e in trail)


def test_a_bad_trace_claim_is_a_400(http, unique):
    a, b = unique("x"), unique("y")
    register(http, a, b)
    unknown = send(http, a, b, parent=unique("no-such-message"))
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "validation_error"
    bad = http.post("/api/v1/messages", json={"from_sandbox": a, "from_agent": "a", "to_sandbox": b,
                                              "message_type": "notification", "content": {},
                                              "metadata": {"trace": "yes"}})
    assert bad.status_code == 400 and "metadata" in bad.json()["error"]["details"]
