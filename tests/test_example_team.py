"""The three-agent example team (examples/team/) as the README runs it, against an embedded bus: two researchers
and a writer declare skills; the planner, knowing none of their sandbox ids, routes each step to "any agent with
the skill", publishes its progress on a topic the writer follows, and prints one report per topic."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from tests.servers import REPO, TEST_ADMIN_KEY, BusProcess, wait_for

TEAM = REPO / "examples" / "team"


@pytest.fixture(scope="module")
def embedded():
    bus = BusProcess("embedded")
    yield bus
    bus.cleanup()


class Script:
    """One example script run as a process, its output lines collected."""

    def __init__(self, bus: BusProcess, script: str, sandbox_id: str, workspace: str, *args: str):
        env = {**bus.env, "SANDBOX_ID": sandbox_id, "COLLABORATION_BUS_URL": bus.url, "BUS_TOKEN": TEST_ADMIN_KEY,
               "WORKSPACE": workspace}
        self.proc = subprocess.Popen([sys.executable, str(TEAM / script), *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def test_the_planner_routes_by_skill_to_the_team(embedded):
    suffix = uuid.uuid4().hex[:6]
    workspace = f"team-{suffix}"
    workers = [Script(embedded, "researcher.py", f"sb-researcher-{n}-{suffix}", workspace) for n in (1, 2)]
    workers.append(Script(embedded, "writer.py", f"sb-writer-{suffix}", workspace))
    try:
        for worker in workers:
            worker.wait_for_line(("researcher" if "researcher" in worker.proc.args[1] else "writer") + ": ready")
        cards = httpx.get(f"{embedded.url}/api/v1/agents", params={"workspace": workspace, "online": "true"},
                          headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"}).json()["agents"]
        assert sorted(skill["id"] for card in cards for skill in card["skills"]) == ["research", "research", "write"]

        planner = Script(embedded, "planner.py", f"sb-planner-{suffix}", workspace,
                         "vector databases", "agent protocols", "--timeout", "20")
        assert planner.proc.wait(timeout=60) == 0, planner.lines
        output = "\n".join(planner.lines)
        assert "Report on vector databases" in output and "Report on agent protocols" in output, output
        assert "  * 'agent protocols' has 2 word(s)" in output
        researched_by = {line.split()[1] for line in planner.lines if line.startswith("planner: sb-researcher")}
        assert researched_by == {f"sb-researcher-1-{suffix}", f"sb-researcher-2-{suffix}"}, planner.lines
        writer = workers[2]
        writer.wait_for_line("writer: [team.progress] done with 'agent protocols'")
        assert any(line.startswith("writer: writing about 'vector databases'") for line in writer.lines)
    finally:
        assert all(worker.stop() == 0 for worker in workers), [w.lines for w in workers]
