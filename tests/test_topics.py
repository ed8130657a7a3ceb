"""Topics: pattern matching as AMQP topic exchanges do it, and topic messages through the real bus (embedded, Redis,
RabbitMQ, PostgreSQL): subscribers of the sender's workspace get matching messages in their mailboxes, in order
with their other entries, also while offline; deny rules may name topics; bad input is a 4xx with the error shape."""

from __future__ import annotations

import json

import pytest

from app.services.topics import is_pattern, is_topic, matches
from tests.servers import wait_for, ws_connect


@pytest.mark.parametrize("pattern, topic, expected", [
    ("a.b", "a.b", True), ("a.b", "a.c", False), ("a.b", "a.b.c", False),
    ("a.*", "a.b", True), ("a.*", "a", False), ("a.*", "a.b.c", False),
    ("a.#", "a", True), ("a.#", "a.b", True), ("a.#", "a.b.c", True), ("a.#", "b.a", False),
    ("#", "a", True), ("#", "a.b.c", True),
    ("*", "a", True), ("*", "a.b", False),
    ("#.c", "c", True), ("#.c", "a.b.c", True), ("#.c", "a.c.d", False),
    ("a.#.c", "a.c", True), ("a.#.c", "a.x.y.c", True), ("a.#.c", "a.x.y", False),
    ("*.#", "a", True), ("#.*", "a.b", True), ("*.*", "a", False),
    ("a.#.#", "a", True), ("#.#", "x.y", True), ("a.*.#", "a", False), ("a.*.#", "a.b", True),
    ("A.b", "a.b", False),  # words are case-sensitive
])
def test_pattern_matching(pattern, topic, expected):
    assert is_pattern(pattern) and is_topic(topic)
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize("text", ["", ".", "a.", ".a", "a..b", "a b", "a/b", "ä", "a." + "b" * 255])
def test_empty_words_and_other_characters_are_neither_topics_nor_patterns(text):
    assert not is_topic(text) and not is_pattern(text)


def test_wildcards_are_patterns_only_as_whole_words():
    assert is_pattern("a.*.#") and not is_topic("a.*") and not is_topic("#")
    assert not is_pattern("a*") and not is_pattern("a.b#") and not is_pattern("**")


# --- through the bus --------------------------------------------------------------------------------------------

def register(client, sandbox: str, workspace: str) -> None:
    answer = client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox, "workspace": workspace,
                                                              "agents": [{"name": "agent"}]})
    assert answer.status_code in (200, 201), answer.text


def subscribe(client, sandbox: str, pattern: str) -> dict:
    answer = client.post(f"/api/v1/sandboxes/{sandbox}/subscriptions", json={"pattern": pattern})
    assert answer.status_code == 201, answer.text
    return answer.json()


def publish(client, sender: str, topic: str, content: dict, **fields) -> str:
    answer = client.post(f"/api/v1/topics/{topic}/messages",
                         json={"from_sandbox": sender, "from_agent": "agent", "content": content, **fields})
    assert answer.status_code == 202, answer.text
    return answer.json()["message_id"]


def routed(client, message_id: str) -> dict:
    return wait_for(lambda: (r := client.get(f"/api/v1/messages/{message_id}").json())["status"] != "accepted"
                    and r, 20, f"message {message_id} routed")


def mailbox(client, sandbox: str) -> list[dict]:
    return client.get(f"/api/v1/sandboxes/{sandbox}/messages", params={"since": 0}).json()["entries"]


def contents(client, sandbox: str) -> list[dict]:
    return [entry["message"]["content"] for entry in mailbox(client, sandbox)]


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def test_subscribers_get_what_matches_in_order(client, unique):
    workspace = unique("topics")
    publisher, papers, everything, nobody = (unique(n) for n in ("pub", "papers", "all", "nobody"))
    other_workspace = unique("other")
    for sandbox in (publisher, papers, everything, nobody):
        register(client, sandbox, workspace)
    register(client, other_workspace, unique("elsewhere"))
    subscribe(client, papers, "research.papers.*")
    subscribe(client, papers, "alerts.#")
    subscribe(client, everything, "#")
    subscribe(client, other_workspace, "#")  # another workspace: never reached

    # Each routed before the next is sent: separate sends carry no order among themselves (a batch does).
    reports = [routed(client, publish(client, publisher, topic, {"n": n})) for n, topic in enumerate(
        ["research.papers.crdt", "research.code", "alerts", "research.papers.crdt.v2", "alerts.disk.full"])]
    assert all(r["status"] == "delivered" for r in reports)
    assert reports[0]["message"]["topic"] == "research.papers.crdt"
    assert reports[0]["message"]["to_sandbox"] == "broadcast"
    assert contents(client, papers) == [{"n": 0}, {"n": 2}, {"n": 4}]
    assert contents(client, everything) == [{"n": n} for n in range(5)]
    assert [e["seq"] for e in mailbox(client, everything)] == [1, 2, 3, 4, 5]
    assert contents(client, nobody) == [] and contents(client, other_workspace) == []
    assert contents(client, publisher) == []  # not to itself, as a broadcast
    assert {e["message"]["topic"] for e in mailbox(client, papers)} == {"research.papers.crdt", "alerts",
                                                                        "alerts.disk.full"}

    listed = client.get(f"/api/v1/sandboxes/{papers}/subscriptions").json()
    assert [s["pattern"] for s in listed["subscriptions"]] == ["research.papers.*", "alerts.#"]
    again = client.post(f"/api/v1/sandboxes/{papers}/subscriptions", json={"pattern": "alerts.#"})
    assert again.status_code == 200  # already subscribed: nothing changes
    assert client.delete(f"/api/v1/sandboxes/{papers}/subscriptions", params={"pattern": "alerts.#"}).status_code == 200
    routed(client, publish(client, publisher, "alerts", {"n": 5}))
    assert contents(client, papers) == [{"n": 0}, {"n": 2}, {"n": 4}]  # unsubscribed: not this one
    trail = client.get("/api/v1/audit", params={"target": f"sandbox:{papers}"}).json()["events"]
    assert {"subscription.created", "subscription.deleted"} <= {e["action"] for e in trail}


def test_an_offline_subscriber_finds_topic_messages_in_order_after_reconnecting(bus, client, unique):
    workspace = unique("durable")
    publisher, subscriber = unique("pub"), unique("sub")
    register(client, publisher, workspace)
    register(client, subscriber, workspace)
    subscribe(client, subscriber, "news.*")
    with ws_connect(f"{bus.ws_url}/ws/sandboxes/{subscriber}?since=0", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        publish(client, publisher, "news.first", {"n": 1})
        frame = json.loads(ws.recv(timeout=15))
        assert frame["type"] == "message" and frame["message"]["topic"] == "news.first"
        ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
    # Offline now: a topic message, a direct message and another topic message wait in the mailbox, in order.
    routed(client, publish(client, publisher, "news.second", {"n": 2}))
    direct = client.post("/api/v1/messages", json={"from_sandbox": publisher, "from_agent": "agent",
                                                   "to_sandbox": subscriber, "message_type": "notification",
                                                   "content": {"n": 3}})
    routed(client, direct.json()["message_id"])
    routed(client, publish(client, publisher, "news.third", {"n": 4}))
    with ws_connect(f"{bus.ws_url}/ws/sandboxes/{subscriber}?since=1", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        frames = [json.loads(ws.recv(timeout=15)) for _ in range(3)]
    assert [(f["seq"], f["message"]["content"]["n"], f["message"]["topic"]) for f in frames] == \
        [(2, 2, "news.second"), (3, 3, None), (4, 4, "news.third")]


def test_a_deny_rule_naming_topics_skips_only_those(client, unique):
    workspace = unique("ruled")
    publisher, subscriber = unique("pub"), unique("sub")
    register(client, publisher, workspace)
    register(client, subscriber, workspace)
    subscribe(client, subscriber, "#")
    rule = client.post("/api/v1/policies", json={"effect": "deny", "from_sandbox": publisher,
                                                 "topics": ["secret.#"], "description": "no secrets"})
    assert rule.status_code == 201, rule.text
    assert rule.json()["topics"] == ["secret.#"]
    try:
        routed(client, publish(client, publisher, "secret.plans", {"n": 1}))
        routed(client, publish(client, publisher, "public.plans", {"n": 2}))
        direct = client.post("/api/v1/messages", json={"from_sandbox": publisher, "from_agent": "agent",
                                                       "to_sandbox": subscriber, "message_type": "notification",
                                                       "content": {"n": 3}})
        assert direct.status_code == 202  # a rule naming topics says nothing about direct messages
        routed(client, direct.json()["message_id"])
        assert contents(client, subscriber) == [{"n": 2}, {"n": 3}]
    finally:
        client.delete(f"/api/v1/policies/{rule.json()['id']}")


def test_bad_topic_input_is_refused_with_the_error_shape(client, unique):
    workspace = unique("bad")
    sandbox = unique("sb")
    register(client, sandbox, workspace)
    body = {"from_sandbox": sandbox, "from_agent": "agent", "content": {}}
    for topic in ("a..b", "a.", "%23", "a.%2A", "a%20b"):
        error = error_of(client.post(f"/api/v1/topics/{topic}/messages", json=body), 400)
        assert error["code"] == "validation_error" and "topic" in error["details"], topic
    error = error_of(client.post("/api/v1/topics/a.b/messages", json={**body, "to_sandbox": sandbox}), 400)
    assert "to_sandbox" in error["details"]
    error_of(client.post("/api/v1/topics/a.b/messages", json={**body, "message_type": "response"}), 400)
    error_of(client.post("/api/v1/topics/a.b/messages", json={**body, "content": []}), 400)
    for pattern in ("", "a..b", "a.b#", "**", 7, None):
        error = error_of(client.post(f"/api/v1/sandboxes/{sandbox}/subscriptions", json={"pattern": pattern}), 400)
        assert "pattern" in error["details"], pattern
    error_of(client.post(f"/api/v1/sandboxes/{sandbox}/subscriptions", json={"pattern": "a", "x": 1}), 400)
    assert error_of(client.post(f"/api/v1/sandboxes/{unique('ghost')}/subscriptions", json={"pattern": "a"}),
                    404)["code"] == "unknown_sandbox"
    assert error_of(client.delete(f"/api/v1/sandboxes/{sandbox}/subscriptions", params={"pattern": "never"}),
                    404)["code"] == "unknown_subscription"
    error_of(client.delete(f"/api/v1/sandboxes/{sandbox}/subscriptions"), 400)
    error_of(client.post("/api/v1/policies", json={"effect": "deny", "topics": ["a..b"]}), 400)


def test_subscribe_and_unsubscribe_frames(bus, client, unique):
    workspace = unique("frames")
    publisher, subscriber = unique("pub"), unique("sub")
    register(client, publisher, workspace)
    register(client, subscriber, workspace)
    with ws_connect(f"{bus.ws_url}/ws/sandboxes/{subscriber}?since=0", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "pattern": "jobs.*", "ref": "s1"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "subscribed", "ref": "s1", "pattern": "jobs.*"}
        publish(client, publisher, "jobs.new", {"n": 1})
        frame = json.loads(ws.recv(timeout=15))
        assert frame["type"] == "message" and frame["message"]["topic"] == "jobs.new"

        ws.send(json.dumps({"type": "subscribe", "pattern": "jobs..x", "ref": 7}))
        refused = json.loads(ws.recv(timeout=10))
        assert refused["type"] == "error" and refused["ref"] == 7 and refused["status"] == 400
        assert refused["code"] == "validation_error" and "pattern" in refused["details"]
        ws.send(json.dumps({"type": "unsubscribe", "pattern": "never.*", "ref": "u0"}))
        missing = json.loads(ws.recv(timeout=10))
        assert (missing["type"], missing["ref"], missing["status"], missing["code"]) == \
            ("error", "u0", 404, "unknown_subscription")
        ws.send(json.dumps({"type": "unsubscribe", "pattern": "jobs.*", "ref": "u1"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "unsubscribed", "ref": "u1", "pattern": "jobs.*"}
    assert client.get(f"/api/v1/sandboxes/{subscriber}/subscriptions").json()["count"] == 0


def test_publish_frames_reach_subscribers_and_bad_ones_are_refused(bus, client, unique):
    workspace = unique("pubframes")
    publisher, subscriber = unique("pub"), unique("sub")
    register(client, publisher, workspace)
    register(client, subscriber, workspace)
    subscribe(client, subscriber, "alerts.#")
    message = {"from_sandbox": publisher, "from_agent": "agent", "content": {"level": "high"}}
    with ws_connect(f"{bus.ws_url}/ws/sandboxes/{publisher}?since=0", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "publish", "topic": "alerts.disk", "message": message, "ref": "p1",
                            "idempotency_key": unique("key")}))
        accepted = json.loads(ws.recv(timeout=10))
        assert accepted["type"] == "accepted" and accepted["ref"] == "p1"
        for frame, field in (({"type": "publish", "topic": "alerts..disk", "message": message}, "topic"),
                             ({"type": "publish", "topic": "alerts.disk", "message": {**message, "to_sandbox": "x"}},
                              "to_sandbox"),
                             ({"type": "publish", "message": message}, "topic")):
            ws.send(json.dumps({**frame, "ref": "bad"}))
            refused = json.loads(ws.recv(timeout=10))
            assert (refused["type"], refused["status"], refused["code"]) == ("error", 400, "validation_error"), refused
            assert field in json.dumps(refused["details"]), refused
    stored = routed(client, accepted["message_id"])
    assert stored["message"]["topic"] == "alerts.disk" and stored["message"]["to_sandbox"] == "broadcast"
    assert contents(client, subscriber) == [{"level": "high"}]
