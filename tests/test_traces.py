"""Conversation traces and the runaway guards, against a real bus (embedded, Redis, RabbitMQ): the bus stamps
metadata.trace on every message, a three-hop conversation comes back from GET /api/v1/traces/{id} as a tree with
timings and in GET /api/v1/traces, and a two-agent loop is stopped by MAX_TRACE_HOPS (409 hop_limit), by
PAIR_RATE_PER_MINUTE (429 pair_rate) and by TRACE_MESSAGE_BUDGET (409 trace_budget), each audited; with two API
nodes the worker dead-letters what got past each node's own pair count (reason pair_rate)."""

from __future__ import annotations

import json

import pytest

from tests.servers import BROKER_KINDS, BusProcess, bus_client, bus_on, wait_for, ws_connect

GUARDS = {"MAX_TRACE_HOPS": "3", "PAIR_RATE_PER_MINUTE": "2", "TRACE_MESSAGE_BUDGET": "6"}


@pytest.fixture(scope="module", params=BROKER_KINDS)
def traced_bus(request):
    bus = bus_on(request, request.param, extra_env=GUARDS)
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


def test_a_three_hop_conversation_is_a_tree_with_timings(traced_bus, http, unique):
    a, b, c = unique("a"), unique("b"), unique("c")
    register(http, a, b, c)
    with ws_connect(f"{traced_bus.ws_url}/ws/events") as events:
        assert json.loads(events.recv(timeout=10))["type"] == "welcome"
        root = send(http, a, b).json()["message_id"]
        onward = send(http, b, c, parent=root).json()["message_id"]
        answer = send(http, c, None, "response", correlation_id=onward).json()["message_id"]
        reply = send(http, b, None, "response", correlation_id=root).json()["message_id"]
        accepted: dict[str, dict] = {}

        def note_accepted() -> bool:
            frame = json.loads(events.recv(timeout=10))
            if frame.get("event") == "message.accepted":
                accepted[frame["data"]["message_id"]] = frame["data"]
            return len(accepted) == 4

        wait_for(note_accepted, 15, "the four message.accepted events")
    # the events say where each message sits in the conversation, for a live view to draw it
    assert {m: (e["trace_id"], e["parent_id"], e["correlation_id"]) for m, e in accepted.items()} == {
        root: (root, None, None), onward: (root, root, None), answer: (root, onward, onward),
        reply: (root, root, root)}
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

    listed = http.get("/api/v1/traces", params={"sandbox": c}).json()
    assert [t["trace_id"] for t in listed["traces"]] == [root]
    summary = listed["traces"][0]
    assert (summary["message_count"], summary["max_hops"], summary["root_from_sandbox"]) == (4, 2, a)
    assert {a, b, c} <= set(summary["sandboxes"]) and summary["dead_messages"] == 0
    assert http.get("/api/v1/traces", params={"sandbox": c, "since": "2999-01-01T00:00:00Z"}).json()["count"] == 0


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


def test_a_loop_is_stopped_by_the_pair_rate(http, unique):
    """Two agents answering each other with fresh messages (no trace to follow): the third message from one to the
    other within a minute is refused (PAIR_RATE_PER_MINUTE=2)."""
    a, b, other = unique("ping"), unique("pong"), unique("other")
    register(http, a, b, other)
    for sender, recipient in ((a, b), (b, a), (a, b), (b, a)):
        assert send(http, sender, recipient, "notification").status_code == 202
    refused = send(http, a, b, "notification")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "pair_rate" and error["details"]["guard"] == "pair_rate"
    assert (error["details"]["from_sandbox"], error["details"]["to_sandbox"], error["details"]["limit"]) == (a, b, 2)
    assert send(http, a, other, "notification").status_code == 202  # another pair has its own allowance
    trail = http.get("/api/v1/audit", params={"action": "message.refused"}).json()["events"]
    assert any(e["details"].get("code") == "pair_rate" and e["details"].get("from_sandbox") == a for e in trail)
    assert 'collab_bus_guard_refusals_total{guard="pair_rate"}' in http.get("/metrics").text


def test_a_trace_over_its_budget_is_refused_with_409(http, unique):
    root_sender, helpers = unique("root"), [unique(f"h{n}") for n in range(7)]
    register(http, root_sender, *helpers)
    root = send(http, root_sender, helpers[0]).json()["message_id"]
    for helper in helpers[:5]:  # the root and five answers: TRACE_MESSAGE_BUDGET=6
        assert send(http, helper, root_sender, "notification", parent=root).status_code == 202
    refused = send(http, helpers[5], root_sender, "notification", parent=root)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "trace_budget" and (error["details"]["messages"], error["details"]["limit"]) == (6, 6)
    assert error["details"]["trace_id"] == root


def test_a_bad_trace_claim_is_a_400(http, unique):
    a, b = unique("x"), unique("y")
    register(http, a, b)
    unknown = send(http, a, b, parent=unique("no-such-message"))
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "validation_error"
    bad = http.post("/api/v1/messages", json={"from_sandbox": a, "from_agent": "a", "to_sandbox": b,
                                              "message_type": "notification", "content": {},
                                              "metadata": {"trace": "yes"}})
    assert bad.status_code == 400 and "metadata" in bad.json()["error"]["details"]


def test_bad_trace_list_queries_are_400(http):
    for params in ({"limit": "0"}, {"limit": "x"}, {"since": "yesterday"}, {"sandbox": " "}, {"other": "1"}):
        answer = http.get("/api/v1/traces", params=params)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "validation_error", params


def test_the_worker_dead_letters_what_two_nodes_let_past_the_pair_rate(redis_server, unique):
    """Each API node counts the pairs it sees; the worker counts every node's messages in the database and
    dead-letters (reason pair_rate) the ones over PAIR_RATE_PER_MINUTE that follow from another message."""
    bus = BusProcess("redis", redis_url=redis_server.url, extra_env=GUARDS)
    try:
        second = bus.start_api("api2")
        a, b, c = unique("a"), unique("b"), unique("c")
        with bus_client(bus.url) as one, bus_client(second) as two:
            register(one, a, b, c)
            roots = [send(one, c, a, "notification").json()["message_id"] for _ in range(2)]
            roots += [send(two, c, a, "notification").json()["message_id"] for _ in range(2)]
            accepted = []
            for n, root in enumerate(roots):  # 2 through each node: within each node's 2, 4 in all
                answer = send(one if n % 2 else two, a, b, "notification", parent=root)
                assert answer.status_code == 202, answer.text
                accepted.append(answer.json()["message_id"])
            states = [stored(one, message_id)["status"] for message_id in accepted]
            dead = one.get("/api/v1/dead-letters", params={"reason": "pair_rate", "sandbox_id": b}).json()
        assert states == ["delivered", "delivered", "dead", "dead"], states
        assert {d["message_id"] for d in dead["dead_letters"]} == set(accepted[2:])
    finally:
        bus.cleanup()
