"""Agent cards and capability routing through the real bus (embedded, Redis, RabbitMQ; beat running with short
sweeps): agents declare skills at registration and are found by skill and tag; a message to sandbox "any" with
metadata.skill goes to one online capable agent (the least loaded, round-robin among equals), skips offline ones,
waits for one up to its ttl (then `no_capable_agent`), is refused with 422 when its content fails the skill's
input schema, and is routed again when the chosen agent goes offline before its ACK."""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest

from tests.servers import BROKER_KINDS, BusProcess, bus_client, bus_on, wait_for, ws_connect

SUMMARIZE = {"id": "summarize", "name": "Summarize", "description": "Summarizes a text", "tags": ["text", "nlp"],
             "input_schema": {"type": "object", "required": ["text"],
                              "properties": {"text": {"type": "string", "minLength": 1},
                                             "options": {"type": "object",
                                                         "properties": {"words": {"type": "integer"}}}}},
             "output_schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}
TRANSLATE = {"id": "translate", "tags": ["text"]}
FAST_SWEEPS = {"OUTBOX_SWEEP_AFTER": "0.5", "OUTBOX_SWEEP_INTERVAL": "0.5", "REDELIVERY_SWEEP_INTERVAL": "0.5",
               "HEARTBEAT_TIMEOUT": "5", "ACK_TIMEOUT": "30"}


@pytest.fixture(scope="module", params=BROKER_KINDS)
def routing_bus(request):
    """A bus with its beat running every half second, so waiting and rerouting happen within a test."""
    process = bus_on(request, request.param, with_beat=True, extra_env=FAST_SWEEPS)
    yield process
    process.cleanup()


@pytest.fixture
def http(routing_bus):
    with bus_client(routing_bus.url, timeout=10) as client:
        yield client


@pytest.fixture
def unique():
    import uuid
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


def register(http, sandbox: str, workspace: str, skills: list[dict] | None = None):
    answer = http.post("/api/v1/sandboxes/register", json={
        "sandbox_id": sandbox, "workspace": workspace,
        "agents": [{"name": "worker", "capabilities": ["text"], "skills": skills or []}]})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def connect(stack: ExitStack, bus: BusProcess, sandbox: str):
    ws = stack.enter_context(ws_connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}?since=0", open_timeout=10))
    assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
    return ws


def ask(http, sender: str, skill: str, content: dict, **fields) -> str:
    answer = http.post("/api/v1/messages", json={
        "from_sandbox": sender, "from_agent": "planner", "to_sandbox": "any", "message_type": "request",
        "content": content, "metadata": {"skill": skill}, **fields})
    assert answer.status_code == 202, answer.text
    return answer.json()["message_id"]


def holder(http, message_id: str, timeout: float = 20) -> str:
    """The sandbox whose mailbox holds `message_id` undelivered-elsewhere (its one live delivery)."""
    def live():
        deliveries = http.get(f"/api/v1/messages/{message_id}").json()["deliveries"]
        current = [d["sandbox_id"] for d in deliveries if d["state"] != "rerouted"]
        return current[0] if current else None
    return wait_for(live, timeout, f"message {message_id} routed to a capable agent")


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def test_agent_cards_are_found_by_skill_tag_and_liveness(routing_bus, http, unique):
    workspace = unique("cards")
    online, offline, plain = unique("online"), unique("offline"), unique("plain")
    register(http, online, workspace, [SUMMARIZE])
    register(http, offline, workspace, [SUMMARIZE, TRANSLATE])
    register(http, plain, workspace)
    with ExitStack() as stack:
        connect(stack, routing_bus, online)
        cards = http.get("/api/v1/agents", params={"skill": "summarize", "workspace": workspace}).json()
        assert {(c["sandbox_id"], c["online"]) for c in cards["agents"]} == {(online, True), (offline, False)}
        card = next(c for c in cards["agents"] if c["sandbox_id"] == online)
        assert card["skills"][0]["input_schema"] == SUMMARIZE["input_schema"] and card["name"] == "worker"
        tagged = http.get("/api/v1/agents", params={"tag": "text", "workspace": workspace}).json()["agents"]
        assert {c["sandbox_id"] for c in tagged} == {online, offline}
        live = http.get("/api/v1/agents", params={"workspace": workspace, "online": "true"}).json()["agents"]
        assert [c["sandbox_id"] for c in live] == [online]
        assert http.get("/api/v1/agents", params={"skill": "translate", "workspace": workspace}
                        ).json()["count"] == 1


def test_any_goes_to_an_online_capable_agent_and_alternates_between_equals(routing_bus, http, unique):
    workspace = unique("route")
    planner, first, second, sleeping, unskilled = (unique(n) for n in ("planner", "a", "b", "sleeping", "plain"))
    register(http, planner, workspace)
    for sandbox in (first, second, sleeping):
        register(http, sandbox, workspace, [SUMMARIZE])
    register(http, unskilled, workspace)
    with ExitStack() as stack:
        for sandbox in (first, second, unskilled):
            connect(stack, routing_bus, sandbox)
        holders = [holder(http, ask(http, planner, "summarize", {"text": f"doc {n}"})) for n in range(4)]
    # Each unacknowledged request adds to its holder's load, so the next goes to the other: never the offline
    # one, never the one without the skill.
    assert sorted(holders) == sorted([first, second] * 2)
    assert holders[0] != holders[1] and holders[2] != holders[3]
    listed = http.get("/api/v1/traces", params={"sandbox": first}).json()["traces"]  # found by where it went
    assert len(listed) == 2 and all(set(t["sandboxes"]) == {planner, first} for t in listed), listed


def test_content_failing_the_input_schema_is_refused_with_422_naming_the_path(routing_bus, http, unique):
    workspace = unique("schema")
    planner, capable = unique("planner"), unique("capable")
    register(http, planner, workspace)
    register(http, capable, workspace, [SUMMARIZE])
    body = {"from_sandbox": planner, "from_agent": "planner", "to_sandbox": "any", "message_type": "request",
            "metadata": {"skill": "summarize"}}
    error = error_of(http.post("/api/v1/messages", json={**body, "content": {"text": 5}}), 422)
    assert error["code"] == "content_invalid" and error["details"]["path"] == "content.text"
    content = {"text": "x", "options": {"words": "many"}}
    error = error_of(http.post("/api/v1/messages", json={**body, "content": content}),
                     422)
    assert error["details"]["path"] == "content.options.words" and error["details"]["skill"] == "summarize"
    error = error_of(http.post("/api/v1/messages", json={**body, "content": {}}), 422)
    assert "'text' is a required property" in error["message"]


def test_a_message_waits_for_a_capable_agent_then_is_dead_lettered_no_capable_agent(routing_bus, http, unique):
    workspace = unique("wait")
    planner, late = unique("planner"), unique("late")
    register(http, planner, workspace)
    waiting = ask(http, planner, "translate", {"text": "hallo"}, ttl=60)
    register(http, late, workspace, [TRANSLATE])
    assert http.get(f"/api/v1/messages/{waiting}").json()["status"] == "accepted"  # nobody online yet
    with ExitStack() as stack:
        ws = connect(stack, routing_bus, late)
        frame = json.loads(ws.recv(timeout=20))
        assert frame["type"] == "message" and frame["message"]["message_id"] == waiting
    lost = ask(http, planner, "nobody-has-this", {"text": "x"}, ttl=1)
    dead = wait_for(lambda: http.get("/api/v1/dead-letters", params={"message_id": lost}).json()["dead_letters"],
                    20, "the no_capable_agent dead letter")
    assert dead[0]["reason"] == "no_capable_agent" and dead[0]["sandbox_id"] is None
    assert "nobody-has-this" in dead[0]["last_error"]


def test_a_request_is_rerouted_when_its_agent_goes_offline_before_the_ack(routing_bus, http, unique):
    workspace = unique("reroute")
    planner, first, second = unique("planner"), unique("a"), unique("b")
    register(http, planner, workspace)
    register(http, first, workspace, [SUMMARIZE])
    register(http, second, workspace, [SUMMARIZE])
    with ExitStack() as outer:
        sockets = {first: connect(outer, routing_bus, first)}
        message_id = ask(http, planner, "summarize", {"text": "long"})
        assert holder(http, message_id) == first  # the only capable agent online
        assert json.loads(sockets[first].recv(timeout=10))["message"]["message_id"] == message_id
        sockets[second] = connect(outer, routing_bus, second)
        sockets.pop(first).close()  # dies before its ACK
        frame = json.loads(sockets[second].recv(timeout=20))
        assert frame["type"] == "message" and frame["message"]["message_id"] == message_id
        sockets[second].send(json.dumps({"type": "ack", "seq": frame["seq"]}))
    def states() -> dict:
        return {d["sandbox_id"]: d["state"] for d in http.get(f"/api/v1/messages/{message_id}").json()["deliveries"]}

    wait_for(lambda: states() == {first: "rerouted", second: "acked"}, 10, "the rerouted entry and the new one acked")
    # The first agent, back, is told its entry went elsewhere: a `rerouted` frame keeps its place in seq order.
    with ExitStack() as stack:
        ws = connect(stack, routing_bus, first)
        assert json.loads(ws.recv(timeout=10)) == {"type": "rerouted", "seq": 1, "message_id": message_id}


def test_bad_capability_input_is_refused_with_the_error_shape(routing_bus, http, unique):
    workspace = unique("bad")
    sender = unique("sender")
    register(http, sender, workspace)
    body = {"from_sandbox": sender, "from_agent": "planner", "to_sandbox": "any", "message_type": "request",
            "content": {}}
    assert "metadata" in error_of(http.post("/api/v1/messages", json=body), 400)["details"]
    error = error_of(http.post("/api/v1/messages", json={**body, "metadata": {"skill": 7}}), 400)
    assert error["details"]["metadata"]["skill"]
    error = error_of(http.post("/api/v1/messages", json={**body, "message_type": "response", "correlation_id": "c",
                                                           "metadata": {"skill": "x"}}), 400)
    assert "to_sandbox" in error["details"]
    registration = {"sandbox_id": unique("broken"), "workspace": workspace}
    for agents, where in (
        ([{"name": "a", "skills": [{"id": "s", "input_schema": {"type": "no-such-type"}}]}], "input_schema"),
        ([{"name": "a", "skills": [{"id": "s"}, {"id": "s"}]}], "skills"),
        ([{"name": "a", "skills": [{"name": "no id"}]}], "id"),
        ([{"name": "a", "skills": [{"id": "s", "tags": "text"}]}], "tags"),
    ):
        error = error_of(http.post("/api/v1/sandboxes/register", json={**registration, "agents": agents}), 400)
        assert where in json.dumps(error["details"]), error
    error = error_of(http.post("/api/v1/sandboxes/register", json={"sandbox_id": "any"}), 400)
    assert "sandbox_id" in error["details"]
    for params in ({"online": "maybe"}, {"skill": ""}, {"skills": "x"}):
        error_of(http.get("/api/v1/agents", params=params), 400)
