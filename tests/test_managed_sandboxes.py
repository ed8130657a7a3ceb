"""Managed sandboxes on a real Docker engine (Debian's dockerd, started by tests/docker_engine.py): the bus on Redis
with a worker and beat creates, starts, stops and deletes containers through lifecycle tasks, and the reconciler
keeps its records and the engine in agreement."""

from __future__ import annotations

import json
import time

import pytest

from tests.docker_engine import BUSYBOX_IMAGE, DockerEngine
from tests.servers import bus_client, wait_for, ws_connect

LABEL = "ai.aintandem.collab"
# Prints a line, then idles; exits at once on SIGTERM (the engine's stop), and says so.
SERVE = ["sh", "-c", "echo hello from $SANDBOX_ID in $WORKSPACE; trap 'echo bye; exit 0' TERM; "
                     "while true; do sleep 0.2; done"]


@pytest.fixture
def http(managed_bus):
    with bus_client(managed_bus.url, timeout=30) as client:
        yield client


def create(http, sandbox_id: str, **spec) -> dict:
    body = {"sandbox_id": sandbox_id, "image": BUSYBOX_IMAGE, "command": SERVE, **spec}
    answer = http.post("/api/v1/sandboxes", json={k: v for k, v in body.items() if v is not None})
    assert answer.status_code == 202, answer.text
    return answer.json()


def wait_state(http, sandbox_id: str, state: str, timeout: float = 20) -> dict:
    def reached():
        body = http.get(f"/api/v1/sandboxes/{sandbox_id}/status").json()
        return body if body.get("state") == state else None
    try:
        return wait_for(reached, timeout, f"sandbox {sandbox_id} to be {state}", interval=0.1)
    except TimeoutError:
        raise AssertionError(f"{sandbox_id} not {state}: {http.get(f'/api/v1/sandboxes/{sandbox_id}/status').json()}") \
            from None


def containers_of(engine: DockerEngine, sandbox_id: str) -> list[dict]:
    return engine.client().containers(all=True, filters={"label": f"{LABEL}.sandbox={sandbox_id}"})


def test_create_run_logs_stop_start_delete(http, managed_bus, docker_engine, unique):
    sandbox_id = unique("life")
    created = create(http, sandbox_id, limits={"memory_mb": 64, "cpus": 0.5, "pids": 64}, env={"MODE": "test"})
    assert created["state"] == "creating"
    running = wait_state(http, sandbox_id, "running")
    assert running["container"]["status"] == "running" and running["container"]["exit_code"] is None
    wait_for(lambda: f"hello from {sandbox_id} in default" in http.get(f"/api/v1/sandboxes/{sandbox_id}/logs").text,
             10, "the entrypoint's output in the logs")

    inspected = docker_engine.client().inspect_container(running["container_id"])
    env = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
    assert env["SANDBOX_ID"] == sandbox_id and env["MODE"] == "test" and env["BUS_TOKEN"]
    assert env["COLLABORATION_BUS_URL"] == managed_bus.url
    assert inspected["Config"]["Labels"][f"{LABEL}.sandbox"] == sandbox_id
    assert inspected["Config"]["Labels"][f"{LABEL}.workspace"] == "default"
    host = inspected["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"], host["NetworkMode"]) == \
        (64 << 20, 500_000_000, 64, "host")
    token = env["BUS_TOKEN"]  # the container's credential works on the bus, for its own sandbox
    with bus_client(managed_bus.url, token=token) as agent:
        assert agent.post(f"/api/v1/sandboxes/{sandbox_id}/heartbeat").status_code == 200

    assert http.post(f"/api/v1/sandboxes/{sandbox_id}/stop").status_code == 202
    stopped = wait_state(http, sandbox_id, "stopped")
    assert stopped["container"]["status"] == "exited" and stopped["state_reason"] is None
    assert stopped["container"]["exit_code"] == 0  # its TERM trap exits 0
    assert "bye" in http.get(f"/api/v1/sandboxes/{sandbox_id}/logs?tail=1").text

    assert http.post(f"/api/v1/sandboxes/{sandbox_id}/start").status_code == 202
    assert wait_state(http, sandbox_id, "running")["container_id"] == running["container_id"]

    assert http.delete(f"/api/v1/sandboxes/{sandbox_id}").status_code == 202
    wait_for(lambda: http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 404, 20, "the sandbox to be deleted")
    assert containers_of(docker_engine, sandbox_id) == []
    with bus_client(managed_bus.url, token=token) as agent:  # deleted: its token no longer works
        assert agent.post(f"/api/v1/sandboxes/{sandbox_id}/heartbeat").status_code in (401, 404)
    trail = http.get("/api/v1/audit", params={"target": f"sandbox:{sandbox_id}", "limit": 100}).json()["events"]
    assert [e["action"] for e in trail][:1] == ["sandbox.created"]  # in state `creating`
    states = [e["details"]["state"] for e in trail if e["action"] == "sandbox.state_changed"]
    assert states == ["created", "starting", "running", "stopping", "stopped", "starting", "running", "deleting",
                      "deleted"]


def test_followed_logs_end_when_the_container_stops(http, unique):
    sandbox_id = unique("follow")
    create(http, sandbox_id, command=["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done"])
    wait_for(lambda: http.get(f"/api/v1/sandboxes/{sandbox_id}/status").json()["container_id"], 20, "a container")
    started = time.monotonic()
    with http.stream("GET", f"/api/v1/sandboxes/{sandbox_id}/logs", params={"follow": "true"}) as answer:
        lines = [line for line in answer.iter_lines()]
    assert lines[:3] == ["line 1", "line 2", "line 3"] and time.monotonic() - started < 15
    exited = wait_state(http, sandbox_id, "stopped")
    assert exited["state_reason"] == "exited with code 0"
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_the_logs_socket_streams_until_the_container_stops(http, managed_bus, unique):
    sandbox_id = unique("wslogs")
    create(http, sandbox_id, command=["sh", "-c", "echo first; sleep 1; echo second; sleep 0.5"])
    wait_for(lambda: http.get(f"/api/v1/sandboxes/{sandbox_id}/status").json()["container_id"], 20, "a container")
    with ws_connect(f"{managed_bus.ws_url}/ws/sandboxes/{sandbox_id}/logs?tail=10", open_timeout=10) as ws:
        frames = [json.loads(ws.recv(timeout=20))]
        while frames[-1]["type"] != "end":
            frames.append(json.loads(ws.recv(timeout=20)))
    assert frames[0]["type"] == "welcome" and frames[-1]["reason"] == "the container stopped"
    assert [f["line"] for f in frames if f["type"] == "log"] == ["first", "second"]
    with ws_connect(f"{managed_bus.ws_url}/ws/sandboxes/nobody/logs", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["code"] == "unknown_sandbox"
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_an_idle_sandbox_stops_and_a_message_wakes_it(http, unique):
    workspace, sandbox_id, poker = unique("sleepy"), unique("napper"), unique("poker")
    workspace_body = {"id": workspace, "settings": {"idle_stop_minutes": 0.05}}
    assert http.post("/api/v1/workspaces", json=workspace_body).status_code == 201
    http.post("/api/v1/sandboxes/register", json={"sandbox_id": poker, "workspace": workspace})
    create(http, sandbox_id, workspace=workspace)
    wait_state(http, sandbox_id, "running")
    stopped = wait_state(http, sandbox_id, "stopped", timeout=20)  # 3 s without traffic
    assert stopped["desired_state"] == "stopped"
    trail = http.get("/api/v1/audit", params={"target": f"sandbox:{sandbox_id}", "action": "sandbox.stop_requested"})
    assert [e["actor"] for e in trail.json()["events"]] == ["system:idle-policy"]
    sent = http.post("/api/v1/messages", json={"from_sandbox": poker, "from_agent": "a", "to_sandbox": sandbox_id,
                                               "message_type": "notification", "content": {}})
    assert sent.status_code == 202
    assert wait_state(http, sandbox_id, "running")["desired_state"] == "running"
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")
    wait_for(lambda: http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 404, 20, "the deletion")
    assert http.delete(f"/api/v1/workspaces/{workspace}?force=true").status_code in (200, 202)


def test_a_missing_image_ends_in_error_with_the_engines_message(http, unique):
    sandbox_id = unique("noimage")
    create(http, sandbox_id, image="collab-test/no-such-image:1")
    failed = wait_state(http, sandbox_id, "error")
    assert "no such image" in failed["state_reason"].lower() and "no-such-image" in failed["state_reason"]
    assert http.delete(f"/api/v1/sandboxes/{sandbox_id}").status_code == 202
    wait_for(lambda: http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 404, 20, "the deletion")


def test_a_container_killed_behind_the_bus_is_marked_stopped(http, docker_engine, unique):
    sandbox_id = unique("killed")
    create(http, sandbox_id)
    container_id = wait_state(http, sandbox_id, "running")["container_id"]
    docker_engine.cli("kill", container_id)
    started = time.monotonic()
    stopped = wait_state(http, sandbox_id, "stopped", timeout=10)
    assert time.monotonic() - started < 3, "reconciled too slowly"
    assert stopped["state_reason"] == "exited with code 137" and stopped["desired_state"] == "running"
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_a_container_removed_by_hand_is_reported(http, docker_engine, unique):
    sandbox_id = unique("removed")
    create(http, sandbox_id)
    container_id = wait_state(http, sandbox_id, "running")["container_id"]
    docker_engine.cli("rm", "-f", container_id)
    failed = wait_state(http, sandbox_id, "error", timeout=10)
    assert "removed outside the bus" in failed["state_reason"] and failed["container_id"] is None
    assert http.post(f"/api/v1/sandboxes/{sandbox_id}/start").status_code == 202  # a start brings it back
    assert wait_state(http, sandbox_id, "running")["container_id"] not in (None, container_id)
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_an_orphan_with_our_label_is_removed(managed_bus, docker_engine):
    instance = managed_bus.env["BUS_INSTANCE"]
    orphan = docker_engine.client().create_container(
        BUSYBOX_IMAGE, command=["sleep", "60"], labels={f"{LABEL}.instance": instance, f"{LABEL}.sandbox": "ghost"})
    stranger = docker_engine.client().create_container(
        BUSYBOX_IMAGE, command=["sleep", "60"], labels={f"{LABEL}.instance": "another-bus", f"{LABEL}.sandbox": "x"})
    wait_for(lambda: not containers_of(docker_engine, "ghost"), 15, "the orphan to be removed")
    assert docker_engine.client().inspect_container(stranger["Id"])  # another bus's container is not ours to remove
    docker_engine.client().remove_container(stranger["Id"], force=True)
    assert orphan["Id"]


def test_a_worker_killed_mid_task_leaves_no_stuck_state(http, managed_bus, unique):
    sandbox_id = unique("stubborn")
    # Ignores SIGTERM: a stop waits CONTAINER_STOP_TIMEOUT (2 s) before the kill, long enough to kill the worker.
    create(http, sandbox_id, command=["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"])
    wait_state(http, sandbox_id, "running")
    http.post(f"/api/v1/sandboxes/{sandbox_id}/stop")
    wait_state(http, sandbox_id, "stopping", timeout=10)
    managed_bus.kill_worker()
    managed_bus.start_worker()
    stopped = wait_state(http, sandbox_id, "stopped", timeout=30)  # the lease lapses, the reconciler converges it
    assert stopped["container"]["status"] == "exited"
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def logs_of(http, sandbox_id: str) -> str:
    answer = http.get(f"/api/v1/sandboxes/{sandbox_id}/logs")
    return answer.text if answer.status_code == 200 else ""


def test_two_agents_collaborate_and_a_message_wakes_a_stopped_one(http, agent_image, unique):
    responder, asker = unique("responder"), unique("asker")
    create(http, responder, image=agent_image, command=None, env={"AGENT_NAME": "echoer"})
    wait_for(lambda: f"agent echoer of sandbox {responder} connected" in logs_of(http, responder), 60,
             "the responder's agent to connect")
    ask = json.dumps({"target": responder, "task": "ping", "timeout": 30})
    create(http, asker, image=agent_image, command=None, env={"AGENT_NAME": "asker", "AGENT_ASK": ask})
    wait_for(lambda: f"answer from {responder}: " in logs_of(http, asker), 60, "the asker's answer")
    answer = json.loads(logs_of(http, asker).split(f"answer from {responder}: ", 1)[1].splitlines()[0])
    assert answer == {"agent": "echoer", "echo": {"task": "ping"}, "sandbox": responder}
    assert f'request from {asker}: {{"task": "ping"}}' in logs_of(http, responder)

    http.post(f"/api/v1/sandboxes/{responder}/stop")
    wait_state(http, responder, "stopped")
    sent = http.post("/api/v1/messages", json={"from_sandbox": asker, "from_agent": "tester", "to_sandbox": responder,
                                               "message_type": "notification", "content": {"wake": "up"}})
    assert sent.status_code == 202, sent.text
    assert wait_state(http, responder, "running")["desired_state"] == "running"
    wait_for(lambda: f'notification from {asker}: {{"wake": "up"}}' in logs_of(http, responder), 60,
             "the woken agent to handle the message from its mailbox")
    for sandbox_id in (asker, responder):
        http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def test_the_engines_view_keeps_a_failed_starts_error(docker_engine, unique):
    """The adapter's inspect carries the engine's own error for a container that could not start (it was lost once:
    the keyword arguments after a trailing comment never reached ContainerInfo). The container is made without an
    init process, so the engine itself fails to run the missing program."""
    from app.runtime.docker_engine import DockerRuntime

    client = docker_engine.client()
    container_id = client.create_container(BUSYBOX_IMAGE, command=["/no/such/program"],
                                           labels={f"{LABEL}.test": unique("noexec")})["Id"]
    try:
        with pytest.raises(Exception, match="no/such/program"):
            client.start(container_id)
        info = DockerRuntime(docker_engine.url).inspect(container_id)
        assert "/no/such/program" in info.error and info.oom_killed is False
    finally:
        client.remove_container(container_id, force=True)
