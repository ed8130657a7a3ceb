"""The agent SDK as a package: its pure logic, its distribution's dependencies, and the examples as documented."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from aintandem_agent_sdk import (
    AgentMessage,
    AuthenticationError,
    Backoff,
    BaseAgent,
    BusConnectionError,
    BusError,
    BusRejected,
    BusServerError,
    ConfigurationError,
    ContainerAgent,
    ContainerAgentConfig,
    MessageType,
    PermissionDenied,
    RetryPolicy,
)
from aintandem_agent_sdk.cursor import Cursor
from aintandem_agent_sdk.http import BusHttp
from tests.servers import REPO, BusProcess, wait_for

SERVER_DISTRIBUTIONS = {"flask", "flask-sock", "celery", "kombu", "sqlalchemy", "alembic", "marshmallow", "gunicorn",
                        "redis", "psycopg", "psycopg-binary", "werkzeug", "aintandem-collab-bus"}
SERVER_MODULES = ["flask", "celery", "kombu", "sqlalchemy", "alembic", "marshmallow", "app", "workers"]


# ----------------------------------------------------------------- pure logic

@pytest.mark.parametrize("attempt, low, high", [(1, 0.4, 0.6), (2, 0.8, 1.2), (3, 1.6, 2.4), (10, 24.0, 36.0)])
def test_backoff_grows_exponentially_with_jitter_and_is_capped(attempt, low, high):
    backoff = Backoff(initial=0.5, maximum=30.0, multiplier=2.0, jitter=0.2)
    delays = [backoff.delay(attempt) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 1  # jittered


@pytest.mark.parametrize("kwargs", [dict(initial=0), dict(initial=5, maximum=1), dict(multiplier=0.5),
                                    dict(jitter=1.5)])
def test_backoff_refuses_nonsense(kwargs):
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(heartbeat_interval=0), dict(connect_timeout=-1), dict(request_timeout=0),
                                    dict(max_concurrent_handlers=0)])
def test_config_refuses_nonsense(kwargs):
    with pytest.raises(ConfigurationError):
        ContainerAgentConfig(**kwargs)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)


def test_config_and_agent_defaults_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_ID", "sb-env")
    monkeypatch.setenv("COLLABORATION_BUS_URL", "https://bus.example:8443/prefix/")
    monkeypatch.setenv("BUS_TOKEN", "secret")
    monkeypatch.setenv("BUS_CURSOR_FILE", str(tmp_path / "cursor.json"))
    agent = ContainerAgent()
    assert (agent.sandbox_id, agent.bus_url) == ("sb-env", "https://bus.example:8443/prefix")
    assert agent.config.token == "secret" and agent.config.cursor_file == str(tmp_path / "cursor.json")
    assert agent._socket_url() == "wss://bus.example:8443/prefix/ws/sandboxes/sb-env?since=0"


@pytest.mark.parametrize("sandbox, url, problem", [(None, "http://bus:8000", "SANDBOX_ID"),
                                                   ("sb", None, "COLLABORATION_BUS_URL"),
                                                   ("sb", "bus:8000", "http://host:port")])
def test_a_missing_or_bad_setting_is_a_configuration_error(monkeypatch, sandbox, url, problem):
    monkeypatch.delenv("SANDBOX_ID", raising=False)
    monkeypatch.delenv("COLLABORATION_BUS_URL", raising=False)
    with pytest.raises(ConfigurationError, match=problem) as caught:
        ContainerAgent(sandbox, url)
    assert isinstance(caught.value, BusError)


def test_cursor_moves_only_over_gap_free_runs_and_persists(tmp_path):
    path = tmp_path / "cursor.json"
    cursor = Cursor("sb", path)
    for seq in (2, 3, 5):
        cursor.mark(seq)
    assert cursor.position == 0 and cursor.seen(3) and not cursor.seen(1) and not cursor.seen(4)
    cursor.mark(1)
    assert cursor.position == 3 and not cursor.seen(4) and cursor.seen(5)
    reloaded = Cursor("sb", path)
    assert reloaded.position == 3 and reloaded.seen(5) and not reloaded.seen(4)
    reloaded.advance_to(4)
    assert reloaded.position == 5
    assert json.loads(path.read_text()) == {"sandbox_id": "sb", "seq": 5, "processed_above": []}


def test_a_cursor_file_of_another_sandbox_or_garbage_is_refused(tmp_path):
    path = tmp_path / "cursor.json"
    Cursor("sb-a", path).mark(1)
    with pytest.raises(ConfigurationError, match="belongs to sandbox 'sb-a'"):
        Cursor("sb-b", path)
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="unreadable"):
        Cursor("sb-a", path)


def test_handlers_are_chosen_by_message_type_with_a_catch_all():
    agent = BaseAgent("a")
    seen = []

    @agent.on(MessageType.REQUEST, "command")
    async def on_work(message):
        return {"done": message.content["n"]}

    @agent.on()
    def on_anything(message):
        seen.append(message.message_type)

    def message(kind):
        return AgentMessage.from_dict({"message_id": "m", "from_sandbox": "x", "to_sandbox": "y", "from_agent": "p",
                                       "message_type": kind, "content": {"n": 1}})

    assert asyncio.run(agent.handle(message("request"))) == {"done": 1}
    assert asyncio.run(agent.handle(message("command"))) == {"done": 1}
    assert asyncio.run(agent.handle(message("notification"))) is None
    assert seen == [MessageType.NOTIFICATION]
    assert agent.describe() == {"name": "a", "capabilities": []}
    assert MessageType.REQUEST.requires_ack and not MessageType.RESPONSE.requires_ack


# ----------------------------------------------------------------- the distribution

def test_the_sdk_installs_alone_without_any_server_dependency(tmp_path):
    """`pip install ./sdk` into a fresh virtualenv: its requirements are httpx and websockets, nothing of the server
    gets installed, and importing it loads no server module."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO / "sdk")],
                   check=True, timeout=600)
    probe = f"""
import importlib.metadata as md, json, sys
import aintandem_agent_sdk
print(json.dumps({{
    "requires": md.requires("aintandem-agent-sdk"),
    "installed": sorted(d.metadata["Name"].lower() for d in md.distributions()),
    "loaded": [m for m in {SERVER_MODULES!r} if m in sys.modules],
    "location": aintandem_agent_sdk.__file__,
}}))
"""
    facts = json.loads(subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True,
                                      cwd=tmp_path, timeout=60).stdout)
    assert sorted(r.split(">")[0].split("<")[0].split("=")[0].strip() for r in facts["requires"]) == [
        "httpx", "websockets"]
    assert "aintandem-agent-sdk" in facts["installed"]
    assert not SERVER_DISTRIBUTIONS & set(facts["installed"]), facts["installed"]
    assert facts["loaded"] == []
    assert facts["location"].startswith(str(env_dir))  # the installed copy, not the source tree


def test_the_sdk_sources_import_nothing_of_the_server():
    for path in (REPO / "sdk" / "aintandem_agent_sdk").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert words[1].split(".")[0] not in SERVER_MODULES, f"{path.name}: {line}"


# ----------------------------------------------------------------- the examples, as the README runs them

@pytest.fixture(scope="module")
def example_bus():
    process = BusProcess("embedded")
    yield process
    process.cleanup()


@pytest.fixture(scope="module")
def registrar_key(example_bus):
    """A registrar key for workspace "default", made as the README says (`collab-bus keys create`)."""
    made = subprocess.run([str(Path(sys.executable).parent / "collab-bus"), "keys", "create", "--role", "registrar",
                           "--workspace", "default", "--name", "examples"], env=example_bus.env, capture_output=True,
                          text=True, timeout=60, check=True)
    return made.stdout.strip().splitlines()[-1]


def test_the_planner_and_researcher_examples_collaborate(example_bus, registrar_key, tmp_path):
    env = {**os.environ, "COLLABORATION_BUS_URL": example_bus.url, "PYTHONUNBUFFERED": "1", "BUS_TOKEN": registrar_key}
    researcher_log = tmp_path / "researcher.log"
    with open(researcher_log, "wb") as log:
        researcher = subprocess.Popen([sys.executable, "examples/researcher.py"], cwd=REPO, env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"ready" in researcher_log.read_bytes() or researcher.poll() is not None, 60,
                 "the researcher to be ready")
        assert researcher.poll() is None, researcher_log.read_text()
        planner = subprocess.run([sys.executable, "examples/planner.py", "vector databases", "agent protocols"],
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert planner.returncode == 0, planner.stdout + planner.stderr
        assert "planner: answer about 'vector databases':" in planner.stdout
        assert "  - its longest word is 'protocols'" in planner.stdout
        failing = subprocess.run([sys.executable, "examples/planner.py", " "], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert failing.returncode == 1 and "ValueError: a research request needs a non-empty task" in failing.stderr
    finally:
        researcher.send_signal(signal.SIGTERM)
        assert researcher.wait(30) == 0, researcher_log.read_text()
    output = researcher_log.read_text()
    assert "sb-planner/planner asks about 'vector databases'" in output and "disconnected (stopped)" in output


def test_the_planner_explains_a_missing_researcher(example_bus, registrar_key):
    env = {**os.environ, "COLLABORATION_BUS_URL": example_bus.url, "RESEARCHER": "sb-nobody-here",
           "BUS_TOKEN": registrar_key}
    planner = subprocess.run([sys.executable, "examples/planner.py", "anything"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert planner.returncode == 1
    assert "sb-nobody-here is not registered; start examples/researcher.py first" in planner.stderr


# ----------------------------------------------------------------- retries (pure client logic, scripted answers)

def scripted_http(answers: list, seen: list, max_attempts: int = 4):
    """A BusHttp whose server answers with `answers` in turn (an exception stands for a connection error)."""
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return httpx.Response(status, json=body)

    return BusHttp("http://bus.test", "tok", 5, RetryPolicy(max_attempts, Backoff(initial=0.01, maximum=0.02)),
                   transport=httpx.MockTransport(respond))


def test_sends_are_retried_on_connection_errors_and_5xx_with_one_idempotency_key():
    seen: list = []
    unavailable = (503, {"error": {"code": "database_unavailable", "message": "retry", "details": {}}})
    http = scripted_http([httpx.ConnectError("refused"), unavailable, (202, {"message_id": "m1"})], seen)
    answer = asyncio.run(http.request("POST", "/api/v1/messages", json={"x": 1}, idempotency_key="k-1"))
    assert answer == {"message_id": "m1"} and len(seen) == 3
    assert {r.headers["Idempotency-Key"] for r in seen} == {"k-1"}
    assert {r.headers["Authorization"] for r in seen} == {"Bearer tok"}


def test_retries_give_up_with_the_last_failure_and_4xx_is_never_retried():
    for answers, expected, attempts in (
        ([httpx.ConnectError("refused")], BusConnectionError, 4),
        ([(500, {"error": {"code": "internal_error", "message": "boom", "details": {}}})], BusServerError, 4),
        ([(404, {"error": {"code": "unknown_sandbox", "message": "no", "details": {"sandbox_id": "x"}}})],
         BusRejected, 1),
        ([(401, {"error": {"code": "unauthorized", "message": "token", "details": {}}})], AuthenticationError, 1),
        ([(403, {"error": {"code": "policy_denied", "message": "no", "details": {}}})], PermissionDenied, 1),
    ):
        seen: list = []
        with pytest.raises(expected) as caught:
            asyncio.run(scripted_http(answers, seen).request("POST", "/api/v1/messages", json={}))
        assert len(seen) == attempts, expected
        if isinstance(caught.value, BusRejected):
            assert caught.value.code == answers[0][1]["error"]["code"]
