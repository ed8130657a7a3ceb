"""The operator commands of `collab-bus` (send, tail, sandboxes, dlq, status), run as subprocesses against a real
bus: an embedded one (`collab-bus up`) and, for broker status, queue depths and `celery inspect ping`, one on Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import uuid

import pytest
from click.testing import CliRunner

from app.cli import main
from tests.servers import BIN, REPO, TEST_ADMIN_KEY, BusProcess, bus_client, free_port, wait_for

CLI = BIN / "collab-bus"
BAD_KEY = "cbk_not-a-key-of-this-bus-0123456789abcdef"


@pytest.fixture(scope="module")
def embedded():
    """One embedded bus (collab-bus up) for this module."""
    bus = BusProcess("embedded")
    yield bus
    bus.cleanup()


@pytest.fixture(scope="module")
def redis_bus(redis_server):
    """collab-bus api on Redis, started without a worker so tasks wait in the queues (tests start it)."""
    bus = BusProcess("redis", redis_url=redis_server.url, worker=False)
    yield bus
    bus.cleanup()


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def cli_env(bus: BusProcess | None, token: str | None = TEST_ADMIN_KEY, **extra) -> dict:
    """The environment of a CLI run: the bus's (broker settings) with its URL and a token, and a DATA_DIR
    without an admin-api-key file unless a test says otherwise."""
    env = dict(bus.env if bus else os.environ)
    for name in ("BUS_TOKEN", "COLLAB_BUS_URL", "COLLABORATION_BUS_URL"):
        env.pop(name, None)
    if bus:
        env["COLLABORATION_BUS_URL"] = bus.url
    if token:
        env["BUS_TOKEN"] = token
    env["DATA_DIR"] = str(bus.dir / "cli-data") if bus else "/nonexistent-collab-bus-data"
    env.update(extra)
    return env


def run(bus: BusProcess | None, *args: str, token: str | None = TEST_ADMIN_KEY, input: str | None = None,
        program: str = "collab-bus", env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / program), *args], env=env or cli_env(bus, token), cwd=REPO, input=input,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("collab-bus: "), lines
    return lines[0]


def register(bus: BusProcess, *sandboxes: str, workspace: str = "default") -> None:
    with bus_client(bus.url) as http:
        for sandbox in sandboxes:
            http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox, "workspace": workspace,
                                                           "agents": [{"name": "worker"}]}).raise_for_status()


def dead_letter(bus: BusProcess, sender: str, recipient: str, content: dict) -> int:
    """Send a request to `recipient`, wait until it is in the mailbox, NACK it: return the dead letter's id."""
    with bus_client(bus.url) as http:
        message_id = http.post("/api/v1/messages", json={
            "from_sandbox": sender, "to_sandbox": recipient, "from_agent": "cli-test", "message_type": "request",
            "content": content}).json()["message_id"]
        report = wait_for(lambda: (r := http.get(f"/api/v1/messages/{message_id}").json())["status"] == "delivered"
                          and r, 20, "the message to be delivered")
        seq = report["deliveries"][0]["seq"]
        http.post(f"/api/v1/sandboxes/{recipient}/nack", json={"seq": seq, "reason": "cannot handle it"}
                  ).raise_for_status()
        letters = http.get("/api/v1/dead-letters", params={"message_id": message_id}).json()["dead_letters"]
        return letters[0]["id"]


class Lines:
    """Reads a subprocess's stdout and stderr lines in background threads."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _read(stream, sink) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def wait_for(self, text: str, stream: str = "out", timeout: float = 20) -> None:
        lines = self.out if stream == "out" else self.err
        try:
            wait_for(lambda: any(text in line for line in lines), timeout, f"{text!r} on {stream}")
        except TimeoutError:
            raise AssertionError(f"{text!r} not seen; stdout={self.out} stderr={self.err}") from None


@contextlib.contextmanager
def tailing(embedded, *args: str):
    """`collab-bus tail ARGS` running against `embedded`, its output lines read as they come; killed if the test
    leaves it running."""
    proc = subprocess.Popen([str(CLI), "tail", *args], env=cli_env(embedded), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield Lines(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def interrupted(lines: Lines) -> int:
    """Ctrl-C the tail behind `lines`; its exit status."""
    lines.proc.send_signal(signal.SIGINT)
    return lines.proc.wait(10)


# --- help -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["send"], ["tail"], ["sandboxes"], ["sandboxes", "list"], ["dlq"], ["dlq", "list"], ["dlq", "show"],
    ["dlq", "replay"], ["dlq", "purge"], ["status"], ["sandboxes", "create"], ["sandboxes", "start"],
    ["sandboxes", "stop"], ["sandboxes", "status"], ["sandboxes", "logs"], ["sandboxes", "rm"], ["workspaces"],
    ["workspaces", "list"], ["workspaces", "create"], ["workspaces", "show"], ["workspaces", "update"],
    ["workspaces", "rm"],
])
def test_every_command_has_help_with_examples(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert f"collab-bus {' '.join(command)}" in result.output
    if command not in (["sandboxes"], ["dlq"], ["workspaces"]):
        assert "--url" in result.output and "--token" in result.output and "DATA_DIR" in result.output


# --- send -----------------------------------------------------------------------------------------------------------

def test_send_prints_the_id_and_wait_prints_the_delivery_report(embedded):
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b)
    done = run(embedded, "send", "--from", a, "--to", b, "--agent", "planner", "--type", "request",
               "--priority", "8", "--correlation-id", "job-1", "--wait", '{"task": "write tests"}')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{32}", lines[0])
    assert f"message {lines[0]}: delivered" in lines[1]
    assert f"{a}/planner → {b}" in lines[1]
    assert f"{b}: seq 1, delivered" in done.stdout

    with bus_client(embedded.url) as http:
        message = http.get(f"/api/v1/messages/{lines[0]}").json()["message"]
    assert message["content"] == {"task": "write tests"}
    assert (message["priority"], message["message_type"], message["correlation_id"]) == (8, "request", "job-1")

    # Without --wait: only the id. CONTENT from stdin with `-`.
    done = run(embedded, "send", "--from", a, "--to", b, "-", input='{"from": "stdin"}')
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[0-9a-f]{32}\n", done.stdout)

    # --json --wait: the report as JSON
    done = run(embedded, "send", "--from", a, "--to", "broadcast", "--json", "--wait", '{"all": true}')
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "delivered"
    assert b in [d["sandbox_id"] for d in report["deliveries"]]


def test_send_refusals_are_one_line(embedded):
    a = uid("ops-a")
    register(embedded, a)
    assert "CONTENT is not valid JSON" in one_line_error(run(embedded, "send", "--from", a, "--to", a, "{nope"))
    assert "must be a JSON object" in one_line_error(run(embedded, "send", "--from", a, "--to", a, "[1, 2]"))
    line = one_line_error(run(embedded, "send", "--from", a, "--to", "nobody-here", "{}"))
    assert "404 unknown_sandbox" in line and "nobody-here" in line


# --- tail -----------------------------------------------------------------------------------------------------------

def test_tail_follows_a_mailbox_live_and_ctrl_c_exits_0(embedded):
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b)
    assert run(embedded, "send", "--from", a, "--to", b, '{"before": "tail"}').returncode == 0
    with tailing(embedded, b) as lines:
        lines.wait_for(f"tailing mailbox {b}", stream="err")
        lines.wait_for('{"before": "tail"}')  # the replay
        sent = run(embedded, "send", "--from", a, "--to", b, "--agent", "planner", "--type", "request",
                   '{"task": "live one"}')
        assert sent.returncode == 0, sent.stderr
        lines.wait_for('{"task": "live one"}')
        block = lines.out[-2:]
        assert block[0].startswith("#2  ")
        assert f"{a}/planner → {b}" in block[0] and "request" in block[0] and sent.stdout.strip() in block[0]
        assert block[1] == '    {"task": "live one"}'
        assert interrupted(lines) == 0
        assert not any("Traceback" in line for line in lines.err)


def test_tail_json_ack_and_since(embedded):
    """`--since 1` replays from seq 2 on; `--ack` acknowledges what it prints. (Seq 1, never pushed to a connected
    client, may follow as a redelivery: the bus pushes unacknowledged entries before `since` again, by design.)"""
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b)
    for n in (1, 2):
        run(embedded, "send", "--from", a, "--to", b, "--type", "request", json.dumps({"n": n})).check_returncode()
    with bus_client(embedded.url) as http:
        # Two sends may be delivered in either order (concurrent worker threads): read which one is seq 2.
        def both_delivered():
            entries = http.get(f"/api/v1/sandboxes/{b}/messages").json()["entries"]
            return entries if len(entries) == 2 else None

        entries = wait_for(both_delivered, 10, "both messages in the mailbox")
        at_seq_2 = next(e["message"]["message_id"] for e in entries if e["seq"] == 2)
        with tailing(embedded, b, "--since", "1", "--json", "--ack") as lines:
            lines.wait_for(at_seq_2)
            frames = [json.loads(line) for line in lines.out]
            assert frames[0]["type"] == "welcome" and frames[0]["resumed_from"] == 1
            replayed = [f for f in frames if f["type"] == "message" and not f.get("redelivered")]
            assert [(f["seq"], f["message"]["message_id"]) for f in replayed] == [(2, at_seq_2)]
            wait_for(lambda: http.get(f"/api/v1/messages/{at_seq_2}").json()["deliveries"][0]["state"] == "acked",
                     10, "tail --ack to acknowledge seq 2")
            assert interrupted(lines) == 0


def test_tail_with_a_cursor_beyond_the_head_says_so_and_resumes_from_the_bus(embedded):
    """A --since past the mailbox's head (a cursor kept across a data reset) is named on stderr, and tail goes on
    from where the bus resumed it: the next entry is printed."""
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b)
    with tailing(embedded, b, "--since", "50") as lines:
        lines.wait_for("is beyond the mailbox's head seq 0", stream="err")
        assert run(embedded, "send", "--from", a, "--to", b, '{"after": "reset"}').returncode == 0
        lines.wait_for('{"after": "reset"}')
        assert interrupted(lines) == 0


def test_tail_refusals_are_one_line(embedded):
    line = one_line_error(run(embedded, "tail", "nobody-here"))
    assert "unknown_sandbox" in line and "nobody-here" in line
    line = one_line_error(run(embedded, "tail", "nobody-here", token=BAD_KEY))
    assert "401 unauthorized" in line and "--token" in line


# --- sandboxes ------------------------------------------------------------------------------------------------------

def test_sandboxes_list(embedded):
    workspace = uid("ws")
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b, workspace=workspace)
    done = run(embedded, "sandboxes", "list", "--workspace", workspace)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["SANDBOX", "WORKSPACE", "STATUS", "AGENTS", "HEAD", "SETTLED", "LAST", "HEARTBEAT",
                              "CONTAINER"]
    assert [row.split()[:4] for row in rows] == [[a, workspace, "offline", "worker"],
                                                  [b, workspace, "offline", "worker"]]

    listed = json.loads(run(embedded, "sandboxes", "list", "--workspace", workspace, "--json").stdout)
    assert [s["sandbox_id"] for s in listed["sandboxes"]] == [a, b]
    assert run(embedded, "sandboxes", "list", "--workspace", workspace, "--status", "online").stdout == \
        "no sandboxes\n"


# --- workspaces -----------------------------------------------------------------------------------------------------

def test_workspaces_create_list_show_update_rm(embedded):
    workspace = uid("cliws")
    created = run(embedded, "workspaces", "create", workspace, "--name", "Team A", "--description", "research",
                  "--default-image", "aintandem/collab-agent:1", "--default-memory", "256", "--idle-stop-minutes", "30")
    assert created.returncode == 0 and created.stdout == f"created workspace {workspace}\n", created.stderr
    listed = run(embedded, "workspaces", "list")
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["WORKSPACE", "NAME", "SANDBOXES", "DEFAULT", "IMAGE", "IDLE", "STOP", "CREATED"]
    assert [row.split()[:6] for row in rows if row.startswith(workspace)] == \
        [[workspace, "Team", "A", "0", "aintandem/collab-agent:1", "30"]]

    updated = run(embedded, "workspaces", "update", workspace, "--default-cpus", "1.5", "--no-idle-stop")
    assert updated.returncode == 0, updated.stderr
    shown = json.loads(run(embedded, "workspaces", "show", workspace, "--json").stdout)
    assert shown["name"] == "Team A" and shown["description"] == "research"
    assert shown["settings"] == {"default_image": "aintandem/collab-agent:1", "idle_stop_minutes": None,
                                 "default_limits": {"memory_mb": 256, "cpus": 1.5}}  # the others kept
    text = run(embedded, "workspaces", "show", workspace).stdout
    assert "idle stop:     never" in text and "limits:        memory_mb 256, cpus 1.5" in text

    register(embedded, uid("in-ws"), workspace=workspace)
    line = one_line_error(run(embedded, "workspaces", "rm", workspace, "--yes"))
    assert "still has 1 sandbox" in line and "--force" in line and "?force" not in line
    unconfirmed = run(embedded, "workspaces", "rm", workspace, "--force", input="y\n")  # stdin is no terminal
    assert unconfirmed.returncode == 2 and "pass --yes" in one_line_error(unconfirmed)
    removed = run(embedded, "workspaces", "rm", workspace, "--force", "--yes")
    assert removed.returncode == 0 and removed.stdout.endswith(f"removed workspace {workspace}\n"), removed.stderr
    assert "404 unknown_workspace" in one_line_error(run(embedded, "workspaces", "show", workspace))


def test_workspaces_bad_input_is_one_line(embedded):
    workspace = uid("cliws")
    assert "400 validation_error" in one_line_error(run(embedded, "workspaces", "create", "Not An Id!"))
    assert "400 validation_error" in one_line_error(
        run(embedded, "workspaces", "create", workspace, "--default-image", "UPPER/Case"))
    assert run(embedded, "workspaces", "create", workspace).returncode == 0
    assert "409 workspace_exists" in one_line_error(run(embedded, "workspaces", "create", workspace))
    nothing = run(embedded, "workspaces", "update", workspace)
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    both = run(embedded, "workspaces", "update", workspace, "--idle-stop-minutes", "5", "--no-idle-stop")
    assert both.returncode == 2 and "contradict" in both.stderr
    assert run(embedded, "workspaces", "rm", workspace, "-y").stdout == f"removed workspace {workspace}\n"


# --- dead letters ---------------------------------------------------------------------------------------------------

def test_dlq_list_show_replay_purge(embedded):
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b)
    first = dead_letter(embedded, a, b, {"job": 1})

    done = run(embedded, "dlq", "list", "--sandbox", b)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split()[:4] == ["ID", "DEAD-LETTERED", "REASON", "SANDBOX"]
    assert row.split()[0] == str(first) and "nacked" in row and b in row and "cannot handle it" in row
    listed = json.loads(run(embedded, "dlq", "list", "--reason", "nacked", "--sandbox", b, "--json").stdout)
    assert [d["id"] for d in listed["dead_letters"]] == [first] and listed["total"] == 1

    done = run(embedded, "dlq", "show", str(first))
    assert done.returncode == 0, done.stderr
    assert "reason:        nacked" in done.stdout and '{"job": 1}' in done.stdout
    assert json.loads(run(embedded, "dlq", "show", str(first), "--json").stdout)["message"]["content"] == {"job": 1}
    line = one_line_error(run(embedded, "dlq", "show", "999999"))
    assert "404 unknown_dead_letter" in line

    # Replay by id: it leaves the dead letters and is delivered again.
    done = run(embedded, "dlq", "replay", str(first))
    assert done.returncode == 0, done.stderr
    assert f"replayed dead letter {first}" in done.stdout
    assert "no dead letters" in run(embedded, "dlq", "list", "--sandbox", b).stdout

    # Bulk replay by sandbox: asks first (refused on "n"), --yes does it.
    dead_letter(embedded, a, b, {"job": 2})
    refused = run(embedded, "dlq", "replay", "--sandbox", b, input="y\n")  # stdin is no terminal: --yes needed
    assert refused.returncode == 2 and "not going to replay 1 dead letter" in one_line_error(refused)
    assert json.loads(run(embedded, "dlq", "list", "--sandbox", b, "--json").stdout)["total"] == 1
    done = run(embedded, "dlq", "replay", "--sandbox", b, "--yes")
    assert done.returncode == 0, done.stderr
    assert "replayed 1 dead letter" in done.stdout
    assert json.loads(run(embedded, "dlq", "list", "--sandbox", b, "--json").stdout)["total"] == 0

    # Purge: confirmation, then --yes; another sandbox's dead letters stay.
    c = uid("ops-c")
    register(embedded, c)
    dead_letter(embedded, a, b, {"job": 3})
    dead_letter(embedded, a, b, {"job": 4})
    other = dead_letter(embedded, a, c, {"job": 5})
    refused = run(embedded, "dlq", "purge", "--sandbox", b, input="")
    assert refused.returncode == 2 and "not going to purge 2 dead letters" in one_line_error(refused)
    done = run(embedded, "dlq", "purge", "--sandbox", b, "--yes")
    assert done.returncode == 0, done.stderr
    assert "purged 2 dead letters" in done.stdout
    assert json.loads(run(embedded, "dlq", "list", "--sandbox", b, "--json").stdout)["total"] == 0
    assert [d["id"] for d in json.loads(run(embedded, "dlq", "list", "--sandbox", c, "--json").stdout)
            ["dead_letters"]] == [other]
    assert run(embedded, "dlq", "purge").returncode == 2  # no selection: a usage error


# --- errors ---------------------------------------------------------------------------------------------------------

def test_a_bad_or_missing_token_is_one_line_with_the_servers_code(embedded):
    line = one_line_error(run(embedded, "sandboxes", "list", token=BAD_KEY))
    assert "401 unauthorized" in line and "--token" in line
    line = one_line_error(run(embedded, "dlq", "list", token=None))
    assert "401 unauthorized" in line and "no token" in line and "admin-api-key" in line


def test_a_role_without_the_permission_gets_403_with_a_hint(embedded):
    env = {**embedded.env, "DATABASE_URL": embedded.database_url}
    created = subprocess.run([str(CLI), "keys", "create", "--role", "viewer", "--name", uid("viewer")], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    viewer = created.stdout.strip().splitlines()[-1]
    line = one_line_error(run(embedded, "dlq", "replay", "999999", token=viewer))  # refused before any lookup
    assert "403 forbidden" in line and "operator or admin" in line
    assert run(embedded, "sandboxes", "list", token=viewer).returncode == 0


def test_the_token_defaults_to_the_admin_key_in_data_dir(embedded, tmp_path):
    (tmp_path / "admin-api-key").write_text(TEST_ADMIN_KEY + "\n")
    done = run(embedded, "sandboxes", "list", env=cli_env(embedded, token=None, DATA_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", [
    ["send", "--from", "a", "--to", "b", "{}"], ["sandboxes", "list"], ["dlq", "list"], ["dlq", "replay", "--all"],
    ["tail", "b"],
])
def test_a_bus_that_is_down_is_one_line(command):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(run(None, *command, "--url", url))
    assert line.startswith(f"collab-bus: cannot reach the bus at {url}: ")
    assert "refused" in line.lower()


# --- status ---------------------------------------------------------------------------------------------------------

def test_status_of_an_embedded_bus(embedded):
    done = run(embedded, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"^bus: +{re.escape(embedded.url)} up", done.stdout, re.M)
    assert re.search(r"^sandboxes: +\d+ registered, \d+ online", done.stdout, re.M)
    assert re.search(r"^dead letters: +\d+", done.stdout, re.M)
    assert "embedded worker (in the API process)" in done.stdout
    report = json.loads(run(embedded, "status", "--json").stdout)
    assert report["up"] is True and report["broker"]["kind"] == "memory" and report["problems"] == []


def test_status_of_a_bus_that_is_down_exits_1():
    url = f"http://127.0.0.1:{free_port()}"
    done = run(None, "status", "--url", url)
    assert done.returncode == 1
    assert "bus DOWN: cannot reach the bus" in one_line_error(done)


def test_status_with_a_bad_token_reports_the_refusal(embedded):
    done = run(embedded, "status", token=BAD_KEY)
    assert done.returncode == 3, done.stdout
    assert re.search(r"^sandboxes: +unknown: .*401 unauthorized", done.stdout, re.M)
    assert "DEGRADED: sandboxes, dead letters" in done.stdout


def test_status_on_redis_shows_queue_depths_and_workers(redis_bus):
    a, b = uid("ops-a"), uid("ops-b")
    register(redis_bus, a, b)
    # No worker yet: the tasks wait, one per priority step (protocol 9 → Redis step 0 `delivery`,
    # 2 → `delivery\x06\x167`).
    for priority in ("9", "2"):
        assert run(redis_bus, "send", "--from", a, "--to", b, "--priority", priority, "{}").returncode == 0
    done = run(redis_bus, "status", "--inspect-timeout", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.search(r"^broker: +redis redis://127\.0\.0\.1:\d+/\d+ reachable", done.stdout, re.M)
    assert re.search(r"^workers: +NONE answered ping", done.stdout, re.M)
    assert re.search(r"^queue delivery: +2 waiting \(by priority step: 0 1, 7 1\)", done.stdout, re.M)
    assert re.search(r"^queue lifecycle: +0 waiting", done.stdout, re.M)
    assert re.search(r"^queue maintenance: +0 waiting", done.stdout, re.M)
    assert "DEGRADED: workers" in done.stdout

    redis_bus.start_worker()

    def healthy():
        report = run(redis_bus, "status", "--json")
        data = json.loads(report.stdout)
        return report.returncode == 0 and data["queue_depths"]["queues"]["delivery"]["messages"] == 0 and data

    report = wait_for(healthy, 30, "the worker to drain the delivery queue", interval=0.5)
    (name, queues), = report["workers"].items()
    assert name.startswith("worker-") and "delivery" in queues
    done = run(redis_bus, "status")
    assert re.search(r"^workers: +1 answered ping", done.stdout, re.M)
    assert re.search(rf"^ +{re.escape(name)}: consumes .*delivery", done.stdout, re.M)


def test_celery_inspect_ping_answers_pong(redis_bus):
    if "worker" not in redis_bus.workers:
        redis_bus.start_worker()
    env = {name: value for name, value in redis_bus.env.items()}
    done = subprocess.run([str(BIN / "celery"), "-A", "workers.celery_app", "inspect", "ping", "--timeout", "3"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pong" in done.stdout
    assert f"worker-{redis_bus.port}@" in done.stdout


# --- reconnect (last: it restarts the module's embedded bus) --------------------------------------------------------

def test_tail_reconnects_when_the_bus_restarts(embedded):
    a, b = uid("ops-a"), uid("ops-b")
    register(embedded, a, b)
    with tailing(embedded, b) as lines:
        lines.wait_for(f"tailing mailbox {b}", stream="err")
        assert run(embedded, "send", "--from", a, "--to", b, '{"n": 1}').returncode == 0
        lines.wait_for('{"n": 1}')
        embedded.stop()
        lines.wait_for("reconnecting after seq 1", stream="err")
        embedded.start()
        wait_for(lambda: sum("tailing mailbox" in line for line in lines.err) == 2, 30, "tail to reconnect")
        assert run(embedded, "send", "--from", a, "--to", b, '{"n": 2}').returncode == 0
        lines.wait_for('{"n": 2}')
        assert [line.split()[0] for line in lines.out if line.startswith("#")] == ["#1", "#2"]  # no replay twice
        assert interrupted(lines) == 0
