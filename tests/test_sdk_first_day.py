"""An agent's first day with the SDK, against a real bus (embedded): the quick start of sdk/README.md runs as written,
a refused credential says how to give the agent one, an oversize send is refused at once without costing the
mailbox socket, a request to an agent without a REQUEST handler fails at once, refusals show their details, and a
socket resuming beyond its mailbox's head is told so (the agent resumes from what the bus knows was settled)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from aintandem_agent_sdk import (
    AuthenticationError,
    BaseAgent,
    BusRejected,
    CollaborationFailed,
    ConnectionStatus,
    ContainerAgent,
    ContainerAgentConfig,
    MessageType,
)
from tests.servers import ADMIN_HEADERS, BIN, REPO, ws_connect
from tests.test_sdk import agent_for, eventually, run, sdk_bus  # noqa: F401  (sdk_bus is a fixture)
from tests.test_sdk_sends import rest_posts

DEFAULT_MAX_CONTENT_BYTES = 256 * 1024  # the bus's MAX_CONTENT_BYTES unless configured
DEFAULT_MAX_FRAME_BYTES = DEFAULT_MAX_CONTENT_BYTES + 64 * 1024  # its largest socket frame unless configured
README_URL = "http://127.0.0.1:8000"  # what the quick start says `make run` listens on


def quick_start() -> str:
    """The "Quick start" section of sdk/README.md."""
    text = (REPO / "sdk" / "README.md").read_text()
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def shell_block_running(section: str, script: str) -> str:
    """The quick start's shell block that runs `script`."""
    [block] = [b for b in code_blocks(section, "sh") if f"python {script}" in b]
    return block


def start_shell(block: str, cwd: Path, bus_url: str) -> subprocess.Popen:
    """Run a shell block of the quick start as written, in `cwd` (a checkout: `.venv` and `data` there), with the
    bus's URL in place of the one `make run` listens on."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATA_DIR", "DATABASE_URL", "BUS_TOKEN", "COLLABORATION_BUS_URL", "SANDBOX_ID")}
    return subprocess.Popen(["bash", "-ec", block.replace(README_URL, bus_url)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def test_the_quick_start_runs_as_written_against_a_fresh_bus(sdk_bus, tmp_path):
    """Save the agents, set the variables the quick start sets (a registrar key from `collab-bus keys create`), run
    the researcher, then the planner: it prints the researcher's answer."""
    section = quick_start()
    for block in code_blocks(section, "python"):
        name = re.match(r"# (\w+\.py)\n", block)
        assert name, f"a quick start agent must begin with its file name as a comment:\n{block}"
        (tmp_path / name.group(1)).write_text(block)
    (tmp_path / ".venv").symlink_to(BIN.parent)
    (tmp_path / "data").symlink_to(sdk_bus.dir)  # `make run`'s DATA_DIR, where `collab-bus keys create` looks
    researcher = start_shell(shell_block_running(section, "researcher.py"), tmp_path, sdk_bus.url)
    try:
        said = [researcher.stdout.readline()]
        while said[-1] and "connected" not in said[-1]:
            said.append(researcher.stdout.readline())
        assert "connected" in said[-1], "".join(said)
        planner = start_shell(shell_block_running(section, "planner.py"), tmp_path, sdk_bus.url)
        said_by_planner = planner.communicate(timeout=60)[0]
        assert planner.returncode == 0, said_by_planner
        assert "notes on vector databases" in said_by_planner
    finally:
        os.killpg(researcher.pid, signal.SIGTERM)
        output = researcher.communicate(timeout=30)[0]
    assert researcher.returncode == 0, output


def test_a_refused_credential_says_how_to_give_the_agent_one(sdk_bus, unique, monkeypatch):
    monkeypatch.delenv("BUS_TOKEN", raising=False)

    async def scenario():
        agent = ContainerAgent(unique("no-token"), sdk_bus.url, BaseAgent("anonymous"),
                               ContainerAgentConfig(connect_timeout=10))
        with pytest.raises(AuthenticationError) as refused:
            await agent.start()
        text = str(refused.value)
        assert "BUS_TOKEN" in text and "ContainerAgentConfig(token=" in text, text
        assert "Authorization: Bearer" not in text, text  # a hint for REST callers, not for an agent
        with pytest.raises(AuthenticationError) as refused:
            await ContainerAgent(unique("bad-token"), sdk_bus.url, BaseAgent("stranger"),
                                 ContainerAgentConfig(token="cbk_not-a-key", connect_timeout=10)).start()
        assert "BUS_TOKEN" in str(refused.value) and "unknown API key" in str(refused.value)

    run(scenario())


def test_an_oversize_send_is_refused_at_once_naming_the_limit_and_keeps_the_socket(sdk_bus, unique):
    """~5 MB of content: refused before anything is sent (413, the limit in bytes), with the socket still up; a
    message whose frame would be over the socket's frame limit goes over REST instead of costing the socket."""
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, alice) as a, agent_for(sdk_bus, bob) as b:
            statuses: list[ConnectionStatus] = []
            a.add_status_listener(lambda status, detail: statuses.append(status))
            posts = rest_posts(a)
            for send in (lambda: a.send_message(bob, {"blob": "x" * 5_000_000}),
                         lambda: a.collaborate_with(bob, {"blob": "x" * 5_000_000}, timeout=20),
                         lambda: a.publish("big.news", {"blob": "x" * 5_000_000})):
                started = time.monotonic()
                with pytest.raises(BusRejected) as refused:
                    await send()
                assert time.monotonic() - started < 1.0
                assert (refused.value.status, refused.value.code) == (413, "payload_too_large")
                assert str(DEFAULT_MAX_CONTENT_BYTES) in str(refused.value)
                assert refused.value.details["limit"] == DEFAULT_MAX_CONTENT_BYTES
            assert posts == [] and not a.pending_requests()
            metadata = {"notes": "m" * DEFAULT_MAX_FRAME_BYTES}  # content within the limit, the frame over it
            with pytest.raises(BusRejected) as refused:
                await a.send_message(bob, {"small": True}, metadata=metadata)
            assert refused.value.status == 413 and posts == ["/api/v1/messages"]
            del posts[:]
            message_id = await a.send_message(bob, {"after": "refusals"}, MessageType.NOTIFICATION)
            await eventually(lambda: [m.message_id for m in b.agent.received] == [message_id], "the next message")
            assert posts == [], "the next send did not go over the socket"
            assert statuses == [] and a.status is ConnectionStatus.CONNECTED, statuses

    run(scenario())


def test_a_request_to_an_agent_without_a_request_handler_fails_at_once(sdk_bus, unique, caplog):
    async def scenario():
        asker, mute = unique("asker"), unique("mute")
        listener = BaseAgent("listener")
        heard: list[dict] = []
        listener.on(MessageType.NOTIFICATION)(lambda message: heard.append(message.content))
        async with agent_for(sdk_bus, asker) as a, agent_for(sdk_bus, mute, listener) as m:
            started = time.monotonic()
            with pytest.raises(CollaborationFailed) as failed:
                await a.collaborate_with(mute, "anyone there?", timeout=20)
            assert time.monotonic() - started < 5
            assert "no handler for request" in str(failed.value), str(failed.value)
            await a.send_message(mute, {"still": "listening"}, MessageType.NOTIFICATION)
            await eventually(lambda: heard == [{"still": "listening"}], "the notification to be handled")
            await eventually(lambda: m.last_seq == 2, "both entries to be settled")

    with caplog.at_level(logging.WARNING, logger="aintandem_agent_sdk"):
        run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no handler for request" in w for w in warnings), warnings


def test_a_refusal_shows_its_details(sdk_bus, unique):
    async def scenario():
        async with agent_for(sdk_bus, unique("precise")) as a:
            with pytest.raises(BusRejected) as refused:
                await a.send_message(a.sandbox_id, {"x": 1}, priority=42)
            assert refused.value.code == "validation_error"
            assert "priority" in str(refused.value) and json.dumps(refused.value.details["priority"],
                                                                  separators=(",", ":")) in str(refused.value)

    run(scenario())
    assert '"limit":5' in str(BusRejected(413, "payload_too_large", "too big", {"limit": 5}))


def test_a_socket_resuming_beyond_its_mailbox_head_is_told_so(sdk_bus, unique):
    """The welcome says `cursor_ahead` and resumes from the mailbox's settled seq instead of `since`; a normal
    welcome also says the limits a client's sends must keep (content, frame)."""
    sandbox = unique("stale")
    with httpx.Client(base_url=sdk_bus.url, headers=ADMIN_HEADERS) as http:
        assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox, "agents": [
            {"name": "a", "capabilities": []}]}).status_code in (200, 201)
    with ws_connect(f"{sdk_bus.ws_url}/ws/sandboxes/{sandbox}?since=0", open_timeout=10) as ws:
        welcome = json.loads(ws.recv(timeout=10))
    assert welcome["max_content_bytes"] == DEFAULT_MAX_CONTENT_BYTES and welcome["max_frame_bytes"] > 0
    assert "cursor_ahead" not in welcome
    with ws_connect(f"{sdk_bus.ws_url}/ws/sandboxes/{sandbox}?since=50", open_timeout=10) as ws:
        welcome = json.loads(ws.recv(timeout=10))
    assert (welcome["cursor_ahead"], welcome["head_seq"], welcome["resumed_from"]) == (True, 0, 0), welcome


def test_an_agent_with_a_cursor_beyond_the_head_resumes_from_what_was_settled(sdk_bus, unique, tmp_path, caplog):
    """A cursor file ahead of the bus's mailbox (a data reset, a file from elsewhere): the agent warns and resumes
    where the bus says everything was settled, on the same socket: it handles what was not, nothing twice."""
    async def scenario():
        sender, receiver = unique("sender"), unique("receiver")
        cursor_file = tmp_path / "cursor.json"
        async with agent_for(sdk_bus, sender) as s:
            async with agent_for(sdk_bus, receiver, cursor_file=str(cursor_file)) as first:
                for n in range(2):
                    await s.send_message(receiver, {"n": n}, MessageType.NOTIFICATION)
                await eventually(lambda: first.last_seq == 2, "the first run to settle two entries")
            await s.send_message(receiver, {"n": 2}, MessageType.NOTIFICATION)
            cursor_file.write_text(json.dumps({"sandbox_id": receiver, "seq": 100, "processed_above": []}))
            statuses: list[ConnectionStatus] = []
            second = agent_for(sdk_bus, receiver, cursor_file=str(cursor_file))
            second.add_status_listener(lambda status, detail: statuses.append(status))
            async with second:
                await eventually(lambda: second.last_seq == 3, "the second run to handle the third entry")
                await asyncio.sleep(0.3)
        assert [m.content["n"] for m in second.agent.received] == [2]
        assert statuses == [ConnectionStatus.CONNECTED, ConnectionStatus.DISCONNECTED], statuses

    with caplog.at_level(logging.WARNING, logger="aintandem_agent_sdk"):
        run(scenario())
    assert any("seq 100" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

