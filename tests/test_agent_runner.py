"""The SDK's generic runner (`python -m aintandem_agent_sdk.runner`) with the example agent team's AGENT_CONFIG files
(docker/config/), as docker/compose.yaml runs them, here as processes against an embedded bus: the asker started
first gets no answer, asks again `every` seconds, and then gets the researcher's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from tests.servers import REPO, TEST_ADMIN_KEY, BusProcess, wait_for

CONFIG = REPO / "docker" / "config"


@pytest.fixture(scope="module")
def embedded():
    bus = BusProcess("embedded")
    yield bus
    bus.cleanup()


class Agent:
    """One runner process, its output lines collected."""

    def __init__(self, bus: BusProcess, sandbox_id: str, config_file, **env: str):
        environment = {**bus.env, "SANDBOX_ID": sandbox_id, "COLLABORATION_BUS_URL": bus.url,
                       "BUS_TOKEN": TEST_ADMIN_KEY, "AGENT_CONFIG": str(config_file), **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "aintandem_agent_sdk.runner"], cwd=REPO,
                                     env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(line.rstrip("\n") for line in self.proc.stdout),
                         daemon=True).start()

    def wait_for_line(self, start: str, timeout: float = 30) -> str:
        try:
            return wait_for(lambda: next((line for line in self.lines if line.startswith(start)), None), timeout,
                            f"a line starting {start!r}")
        except TimeoutError:
            raise AssertionError(f"no {start!r} line in {self.lines}") from None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.proc.kill()


def test_the_compose_agent_team_converses(embedded, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    researcher_id, planner_id = f"team-a-{suffix}", f"team-b-{suffix}"
    planner_config = json.loads((CONFIG / "team-b.json").read_text())
    assert planner_config["ask"]["target"] == "team-a" and planner_config["ask"]["every"] > 0
    planner_config["ask"].update(target=researcher_id, every=0.5, timeout=5)  # the same file, a shorter period
    (tmp_path / "team-b.json").write_text(json.dumps(planner_config))

    planner = Agent(embedded, planner_id, tmp_path / "team-b.json")
    researcher = None
    try:
        planner.wait_for_line(f"agent planner of sandbox {planner_id} connected")
        assert planner.wait_for_line(f"no answer from {researcher_id}")  # not registered yet: asked again later
        researcher = Agent(embedded, researcher_id, CONFIG / "team-a.json")
        researcher.wait_for_line(f"agent researcher of sandbox {researcher_id} connected")
        answer = planner.wait_for_line(f"answer from {researcher_id}: ")
        assert json.loads(answer.split(": ", 1)[1]) == {
            "topic": "agent protocols", "findings": ["'agent protocols' has 2 word(s)", "its longest word is "
                                                                                      "'protocols'"]}
        researcher.wait_for_line(f"researcher: {planner_id}/planner asks about 'agent protocols'")
        count = sum(line.startswith(f"answer from {researcher_id}") for line in planner.lines)
        wait_for(lambda: sum(line.startswith(f"answer from {researcher_id}") for line in planner.lines) > count, 15,
                 "the next round's answer")
    finally:
        assert planner.stop() == 0, planner.lines
        if researcher:
            assert researcher.stop() == 0, researcher.lines
    assert planner.lines[-1] == f"agent planner of sandbox {planner_id} stopped"


@pytest.mark.parametrize("ask, message", [
    ('{"task": "x"}', 'with a "target" sandbox id'),
    ('{"target": "a", "every": 0}', '"every" must be a number of seconds above 0'),
    ('{"target": "a", "timeout": "soon"}', '"timeout" must be a number of seconds above 0'),
    ("not json", "AGENT_ASK must be a JSON object"),
])
def test_a_bad_ask_is_a_configuration_error(embedded, ask, message):
    agent = Agent(embedded, f"bad-{uuid.uuid4().hex[:6]}", CONFIG / "team-b.json", AGENT_ASK=ask)
    assert agent.proc.wait(timeout=30) == 2
    wait_for(lambda: agent.lines, 5, "the error line")
    assert agent.lines[-1].startswith("aintandem agent runner: configuration error:") and message in agent.lines[-1]
