"""`collab-bus workspaces` and `collab-bus sandboxes create|start|stop|status|logs|rm`, run as subprocesses against
the bus running managed sandboxes on a real Docker engine (tests/docker_engine.py): the lifecycle commands follow
each sandbox to the state asked for, printing every state on stderr, and failures are one line."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.docker_engine import BUSYBOX_IMAGE
from tests.servers import BIN, REPO, TEST_ADMIN_KEY, bus_client, wait_for

LIFECYCLE = ["creating", "created", "starting", "running", "stopping", "stopped", "deleting", "deleted"]
SERVE = "sh -c 'echo hello from $SANDBOX_ID; trap \"echo bye; exit 0\" TERM; while true; do sleep 0.2; done'"


def cli_env(bus) -> dict:
    env = dict(bus.env)
    for name in ("BUS_TOKEN", "COLLAB_BUS_URL", "COLLABORATION_BUS_URL"):
        env.pop(name, None)
    return {**env, "COLLABORATION_BUS_URL": bus.url, "BUS_TOKEN": TEST_ADMIN_KEY, "DATA_DIR": str(bus.dir / "cli-data")}


def run(bus, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "collab-bus"), *args], env=cli_env(bus), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def states_printed(stderr: str, sandbox_id: str) -> list[str]:
    """The states a lifecycle command printed for `sandbox_id`, in order (`ID: STATE  (N.N s)` lines)."""
    prefix = f"{sandbox_id}: "
    return [line[len(prefix):].split()[0] for line in stderr.splitlines() if line.startswith(prefix)]


def assert_progress(stderr: str, sandbox_id: str, first: str, last: str) -> None:
    """The states printed run forward through the lifecycle from `first` to `last` (polling may skip some)."""
    seen = states_printed(stderr, sandbox_id)
    assert seen and seen[0] == first and seen[-1] == last, stderr
    positions = [LIFECYCLE.index(state) for state in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), stderr


def one_line_error(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("collab-bus: ")]
    assert done.returncode == 1, done
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    return errors[0]


@pytest.fixture
def http(managed_bus):
    with bus_client(managed_bus.url, timeout=30) as client:
        yield client


def test_create_logs_stop_start_status_rm_with_progress(managed_bus, http, docker_engine, unique):
    workspace, sandbox_id = unique("cliws"), unique("cli")
    assert run(managed_bus, "workspaces", "create", workspace, "--default-memory", "64").returncode == 0

    created = run(managed_bus, "sandboxes", "create", sandbox_id, "--workspace", workspace, "--image", BUSYBOX_IMAGE,
                  "--command", SERVE, "--env", "MODE=cli", "--cpus", "0.5", "--pids", "64", "--network", "none")
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"{sandbox_id}\n"
    assert_progress(created.stderr, sandbox_id, "creating", "running")
    container = http.get(f"/api/v1/sandboxes/{sandbox_id}/status").json()["container_id"]
    inspected = docker_engine.client().inspect_container(container)
    host = inspected["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"], host["NetworkMode"]) == \
        (64 << 20, 500_000_000, 64, "none")  # the workspace's default memory, the command line's others
    assert "MODE=cli" in inspected["Config"]["Env"]

    wait_for(lambda: "hello from" in run(managed_bus, "sandboxes", "logs", sandbox_id).stdout, 10, "the output")
    assert run(managed_bus, "sandboxes", "logs", sandbox_id, "--tail", "1").stdout == f"hello from {sandbox_id}\n"
    assert run(managed_bus, "sandboxes", "logs", sandbox_id, "--since", "1").stdout == f"hello from {sandbox_id}\n"

    status = run(managed_bus, "sandboxes", "status", sandbox_id)
    assert status.returncode == 0, status.stderr
    fields = dict(line.split(":", 1) for line in status.stdout.splitlines())
    assert fields["state"].strip() == "running" and fields["engine"].strip() == "running"
    assert fields["image"].strip() == BUSYBOX_IMAGE and "memory_mb 64" in fields["limits"]
    assert json.loads(run(managed_bus, "sandboxes", "status", sandbox_id, "--json").stdout)["container"]["status"] \
        == "running"

    stopped = run(managed_bus, "sandboxes", "stop", sandbox_id)
    assert stopped.returncode == 0 and stopped.stdout == f"stopped {sandbox_id}\n", stopped.stderr
    assert states_printed(stopped.stderr, sandbox_id)[-1] == "stopped"
    assert "bye" in run(managed_bus, "sandboxes", "logs", sandbox_id, "--tail", "1").stdout
    listed = run(managed_bus, "sandboxes", "list", "--workspace", workspace)
    assert listed.stdout.splitlines()[1].split()[-1] == "stopped"

    started = run(managed_bus, "sandboxes", "start", sandbox_id)
    assert started.returncode == 0, started.stderr
    assert states_printed(started.stderr, sandbox_id)[-1] == "running"

    removed = run(managed_bus, "sandboxes", "rm", sandbox_id, "--yes")
    assert removed.returncode == 0 and removed.stdout == f"removed {sandbox_id}\n", removed.stderr
    assert states_printed(removed.stderr, sandbox_id)[-1] == "deleted"
    assert http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 404
    assert docker_engine.client().containers(all=True, filters={"id": container}) == []
    assert run(managed_bus, "workspaces", "rm", workspace, "--yes").returncode == 0


def test_logs_follow_ends_when_the_container_stops(managed_bus, unique):
    sandbox_id = unique("clifollow")
    assert run(managed_bus, "sandboxes", "create", sandbox_id, "--image", BUSYBOX_IMAGE, "--command",
               "sh -c 'echo one; sleep 1; echo two; sleep 1'").returncode == 0
    started = time.monotonic()
    followed = run(managed_bus, "sandboxes", "logs", sandbox_id, "-f", timeout=30)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "one\ntwo\n" and time.monotonic() - started < 20
    assert "the log stream of" in followed.stderr
    run(managed_bus, "sandboxes", "rm", sandbox_id, "--yes", "--no-wait")


def test_logs_follow_stops_on_ctrl_c(managed_bus, unique):
    sandbox_id = unique("clictrlc")
    assert run(managed_bus, "sandboxes", "create", sandbox_id, "--image", BUSYBOX_IMAGE, "--command",
               SERVE).returncode == 0
    proc = subprocess.Popen([str(BIN / "collab-bus"), "sandboxes", "logs", sandbox_id, "-f"], env=cli_env(managed_bus),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == f"hello from {sandbox_id}\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    run(managed_bus, "sandboxes", "rm", sandbox_id, "--yes", "--no-wait")


def test_a_missing_image_fails_with_the_engines_message(managed_bus, unique):
    sandbox_id = unique("clinoimage")
    done = run(managed_bus, "sandboxes", "create", sandbox_id, "--image", "collab-test/no-such-image:1")
    line = one_line_error(done)
    assert line.startswith(f"collab-bus: sandbox {sandbox_id} is in error: ") and "no-such-image" in line, line
    assert done.stdout == f"{sandbox_id}\n"
    assert states_printed(done.stderr, sandbox_id)[-1] == "error"
    assert run(managed_bus, "sandboxes", "rm", sandbox_id, "--yes").returncode == 0


def test_no_wait_returns_at_once_and_a_bad_request_is_one_line(managed_bus, unique):
    sandbox_id = unique("clinowait")
    done = run(managed_bus, "sandboxes", "create", sandbox_id, "--image", BUSYBOX_IMAGE, "--command", SERVE,
               "--no-wait", "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout)["state"] == "creating"
    assert "409 sandbox_exists" in one_line_error(run(managed_bus, "sandboxes", "create", sandbox_id))
    assert "400 validation_error" in one_line_error(run(managed_bus, "sandboxes", "create", "--env", "SANDBOX_ID=x"))
    assert "404" in one_line_error(run(managed_bus, "sandboxes", "stop", unique("nobody")))
    bad = run(managed_bus, "sandboxes", "create", "--env", "NOEQUALS")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    assert run(managed_bus, "sandboxes", "rm", sandbox_id, "--yes").returncode == 0


def test_several_sandboxes_at_once_report_each(managed_bus, unique):
    a, b, missing = unique("clia"), unique("clib"), unique("climissing")
    for sandbox_id in (a, b):
        assert run(managed_bus, "sandboxes", "create", sandbox_id, "--image", BUSYBOX_IMAGE, "--command", SERVE,
                   "--no-wait").returncode == 0
    done = run(managed_bus, "sandboxes", "stop", a, missing, b)
    assert done.returncode == 1 and done.stdout == f"stopped {a}\nstopped {b}\n", done
    assert f"collab-bus: {missing}: the bus answered 404" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"collab-bus: 1 of 3 sandboxes failed: {missing}"
    assert run(managed_bus, "sandboxes", "rm", a, b, "--yes").returncode == 0


def test_workspace_rm_force_removes_its_sandboxes(managed_bus, http, unique):
    workspace, sandbox_id = unique("cliforce"), unique("cliforced")
    assert run(managed_bus, "workspaces", "create", workspace).returncode == 0
    assert run(managed_bus, "sandboxes", "create", sandbox_id, "--workspace", workspace, "--image", BUSYBOX_IMAGE,
               "--command", SERVE).returncode == 0
    refused = one_line_error(run(managed_bus, "workspaces", "rm", workspace, "--yes"))
    assert refused == f"collab-bus: workspace {workspace} still has 1 sandbox: remove it first, or pass --force to " \
                      "remove it with the workspace"
    done = run(managed_bus, "workspaces", "rm", workspace, "--force", "--yes")
    assert done.returncode == 0 and done.stdout == f"removed workspace {workspace}\n", done.stderr
    assert states_printed(done.stderr, sandbox_id)[-1] == "deleted"
    assert http.get(f"/api/v1/workspaces/{workspace}").status_code == 404


def test_managed_sandboxes_off_is_one_clear_line(unique):
    """On a bus without MANAGED_SANDBOXES the commands say how to turn them on."""
    from tests.servers import BusProcess

    bus = BusProcess("embedded")
    try:
        line = one_line_error(run(bus, "sandboxes", "create", unique("off")))
        assert "409 managed_sandboxes_disabled" in line and "MANAGED_SANDBOXES=true" in line
    finally:
        bus.cleanup()

