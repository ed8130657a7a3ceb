"""What a person meets on the first day with `collab-bus` (issue 24), against real buses and databases:

- a bus started with its own DATA_DIR (what `make run DATA_DIR=…` does) prints the line that lets another shell's
  CLI, SDK and examples reach it, its GUI's URL and where its admin key is; `--version` answers;
- the commands that open the database never create one: without the bus's DATA_DIR they refuse, naming the file
  they looked for; when they write, they say which database they wrote to;
- every command fails in one line `collab-bus: …` (exit status 2 for usage and configuration errors), never a
  traceback, including an address the bus cannot listen on and a PORT that is no number;
- the destructive commands ask at a terminal, take --yes, and refuse without a terminal and without --yes;
- `keys create` refuses an empty or taken name; `sandboxes status` of a self-registered sandbox says so.
"""

from __future__ import annotations

import importlib.metadata
import os
import pty
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main as collab_bus
from tests.servers import BIN, REPO, TEST_ADMIN_KEY, BusProcess, bus_client, end_process_group, free_port, wait_for
from tests.test_cli_ops import BAD_KEY, cli_env, dead_letter, one_line_error, register, run, uid

CLI = str(BIN / "collab-bus")
CLIENT_VARIABLES = ("DATA_DIR", "DATABASE_URL", "COLLABORATION_BUS_URL", "COLLAB_BUS_URL", "BUS_TOKEN", "HOST",
                    "PORT", "ADMIN_API_KEY", "MESSAGE_BACKEND")


@pytest.fixture(scope="module")
def bus():
    """One embedded bus (collab-bus up) with its own DATA_DIR, for this module."""
    process = BusProcess("embedded")
    yield process
    process.cleanup()


def clean_env(**extra: str) -> dict:
    """This environment without any variable that points at a bus or a database, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}, **extra}


def cli(*args: str, env: dict, cwd: Path | str = REPO, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, stdin=stdin)


# --------------------------------------------------------------------------------------- the bus's own DATA_DIR


@pytest.mark.parametrize("args", [
    ["keys", "create", "--role", "viewer", "--name", "ci"], ["keys", "list"], ["keys", "revoke", "ci", "--yes"],
    ["db", "current"], ["db", "downgrade", "base"],
])
def test_commands_opening_the_database_never_create_one(args, tmp_path):
    """Issue 24: `keys create` without the bus's DATA_DIR made ./data/collab-bus.db, and the bus answered 401."""
    done = cli(*args, env=clean_env(), cwd=tmp_path)
    line = one_line_error(done)
    assert done.returncode == 2
    assert line.startswith(f"collab-bus: no database at {tmp_path.resolve() / 'data' / 'collab-bus.db'} "), line
    assert "DATA_DIR=" in line and "DATABASE_URL=" in line
    assert list(tmp_path.iterdir()) == []  # nothing created, not even ./data


def test_keys_made_with_the_buss_data_dir_say_where_and_work_on_the_bus(bus, tmp_path):
    name = uid("first-day")
    made = cli("keys", "create", "--role", "viewer", "--name", name, env=clean_env(DATA_DIR=str(bus.dir)),
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    head, secret = made.stdout.splitlines()
    assert head.startswith("created key ") and head.endswith(
        f" (viewer) for {name} in sqlite:///{bus.dir.resolve() / 'collab-bus.db'}:"), head
    with bus_client(bus.url, token=secret) as viewer:
        assert viewer.get("/api/v1/sandboxes").status_code == 200
    revoked = cli("keys", "revoke", name, "--yes", env=clean_env(DATA_DIR=str(bus.dir)))
    assert revoked.stdout.endswith(f"of {name} in sqlite:///{bus.dir.resolve() / 'collab-bus.db'}\n"), revoked
    with bus_client(bus.url, token=secret) as viewer:
        assert viewer.get("/api/v1/sandboxes").status_code == 401


def test_db_upgrade_creates_the_database_and_says_which(tmp_path):
    done = cli("db", "upgrade", env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    database = tmp_path.resolve() / "data" / "collab-bus.db"
    assert done.stdout == f"database sqlite:///{database} at head\n" and database.exists()


# --------------------------------------------------------------------------------------- the start banner


def start_up(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """`collab-bus up` as `make run HOST=… PORT=… DATA_DIR=…` runs it: the settings in the environment."""
    env = clean_env(HOST="127.0.0.1", PORT=str(port), DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([CLI, "up"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or "    export " in log.read_text(), 30, "the start banner")
        assert proc.poll() is None, log.read_text()
    except BaseException:
        end_process_group(proc)
        raise
    return proc


def exported(banner: str) -> dict:
    """The variables of the banner's `export …` line."""
    line = next(line for line in banner.splitlines() if line.startswith("    export "))
    return dict(pair.split("=", 1) for pair in line.split()[1:])


def test_a_bus_off_the_defaults_tells_another_shell_how_to_reach_it(tmp_path):
    data_dir, port = tmp_path / "bus", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_up(data_dir, port, tmp_path / "up.log")
    try:
        banner = (tmp_path / "up.log").read_text()
        assert "created the first admin API key" in banner
        assert f"  web GUI:    {url}/ui/\n" in banner and f"  admin key:  {data_dir}/admin-api-key\n" in banner
        assert exported(banner) == {"DATA_DIR": str(data_dir), "COLLABORATION_BUS_URL": url}
        elsewhere = clean_env(**exported(banner))  # another shell, in another directory, after the export
        assert cli("sandboxes", "list", env=elsewhere, cwd=tmp_path).returncode == 0  # the URL and the admin key
        made = cli("keys", "create", "--role", "viewer", "--name", "day-one", env=elsewhere, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        with bus_client(url, token=made.stdout.splitlines()[-1]) as viewer:
            assert viewer.get("/api/v1/sandboxes").status_code == 200
            assert viewer.get("/ui/").status_code == 200
    finally:
        end_process_group(proc)
    proc = start_up(data_dir, port, tmp_path / "again.log")  # a restart: the key exists; where is it?
    try:
        banner = (tmp_path / "again.log").read_text()
        assert "created the first admin API key" not in banner
        assert f"  admin key:  {data_dir}/admin-api-key\n" in banner and f"  web GUI:    {url}/ui/\n" in banner
    finally:
        end_process_group(proc)


def test_the_api_banner_names_its_database_url_too(redis_server, tmp_path):
    database_url = f"sqlite:///{tmp_path.resolve() / 'own.db'}"
    api = BusProcess("redis", redis_url=redis_server.url, worker=False, extra_env={"DATABASE_URL": database_url})
    try:
        banner = (api.dir / "api.log").read_text()
        assert f"  web GUI:    {api.url}/ui/\n" in banner
        assert "  admin key:  ADMIN_API_KEY, as set in the environment\n" in banner
        assert exported(banner) == {"DATA_DIR": str(api.dir), "DATABASE_URL": database_url,
                                    "COLLABORATION_BUS_URL": api.url}
    finally:
        api.cleanup()


def test_version():
    expected = f"collab-bus {importlib.metadata.version('aintandem-collab-bus')}\n"
    for program in ([CLI], [sys.executable, "-m", "app.cli"]):
        done = subprocess.run([*program, "--version"], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, expected), done.stderr


def test_the_cli_reads_the_url_the_sdk_and_the_examples_read(bus):
    """COLLABORATION_BUS_URL wins over COLLAB_BUS_URL (still read, for earlier setups)."""
    down = f"http://127.0.0.1:{free_port()}"
    env = clean_env(COLLABORATION_BUS_URL=bus.url, COLLAB_BUS_URL=down, BUS_TOKEN=TEST_ADMIN_KEY)
    assert cli("sandboxes", "list", env=env).returncode == 0
    alias = clean_env(COLLAB_BUS_URL=bus.url, BUS_TOKEN=TEST_ADMIN_KEY)
    assert cli("sandboxes", "list", env=alias).returncode == 0


# --------------------------------------------------------------------------------------- where it listens


@pytest.mark.parametrize("command", ["up", "api"])
def test_an_address_or_port_the_bus_cannot_listen_on_is_one_line(command, tmp_path):
    """HOST and PORT come from the environment (the Makefile passes them so): the lines name them, not --port."""
    port = free_port()
    env = clean_env(DATA_DIR=str(tmp_path), MESSAGE_BACKEND="redis" if command == "api" else "memory",
                    REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    bad_host = cli(command, env={**env, "HOST": "256.1.1.1", "PORT": str(port)})
    assert one_line_error(bad_host).startswith(f"collab-bus: cannot listen on 256.1.1.1:{port} (HOST): ")
    assert bad_host.returncode == 2
    bad_port = cli(command, env={**env, "PORT": "eighty"})
    assert one_line_error(bad_port) == "collab-bus: configuration error: PORT must be an integer, got 'eighty'"
    assert bad_port.returncode == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = cli(command, env={**env, "PORT": str(port)})
    assert one_line_error(busy) == f"collab-bus: cannot listen on 127.0.0.1:{port} (PORT): Address already in use"


# --------------------------------------------------------------------------------------- one line, every command


def leaf_commands(group=collab_bus, path=()) -> set[tuple[str, ...]]:
    found = set()
    for name, command in group.commands.items():
        found |= leaf_commands(command, (*path, name)) if hasattr(command, "commands") else {(*path, name)}
    return found


BROKEN = "broken"  # a DATA_DIR whose collab-bus.db is no database
BAD_CONFIG = {"MESSAGE_BACKEND": "kafka"}
# Each command with an input that gets past click to what the command calls (Settings, the database, Alembic,
# the bus's services over its API): (arguments, environment, exit status, what the line says).
FAILURES = {
    ("up",): ([], BAD_CONFIG, 2, "configuration error: MESSAGE_BACKEND"),
    ("api",): ([], BAD_CONFIG, 2, "configuration error: MESSAGE_BACKEND"),
    ("worker",): ([], BAD_CONFIG, 2, "configuration error: MESSAGE_BACKEND"),
    ("beat",): ([], BAD_CONFIG, 2, "configuration error: MESSAGE_BACKEND"),
    ("db", "upgrade"): (["no-such-revision"], {}, 2, "database migration: Can't locate revision"),
    ("db", "downgrade"): (["no-such-revision"], {}, 2, "database migration: Can't locate revision"),
    ("db", "current"): ([], {"DATA_DIR": BROKEN}, 1, "database error: file is not a database"),
    ("keys", "create"): (["--role", "registrar", "--name", "x"], {}, 2, "a registrar key needs a workspace"),
    ("keys", "list"): ([], {"DATA_DIR": BROKEN}, 1, "database error: file is not a database"),
    ("keys", "revoke"): (["no-such-key", "--yes"], {}, 1, "no active key with id, name or prefix 'no-such-key'"),
    ("send",): (["--from", "nobody-a", "--to", "nobody-b", "{}"], {}, 1, "404 unknown_sandbox"),
    ("tail",): (["nobody-here"], {}, 1, "unknown_sandbox"),
    ("status",): ([], {"COLLABORATION_BUS_URL": "http://127.0.0.1:9"}, 1, "bus DOWN: cannot reach the bus"),
    ("sandboxes", "list"): ([], {"BUS_TOKEN": BAD_KEY}, 1, "401 unauthorized"),
    ("sandboxes", "create"): (["x"], {}, 1, "409 managed_sandboxes_disabled"),
    ("sandboxes", "start"): (["nobody"], {}, 1, "409 managed_sandboxes_disabled"),
    ("sandboxes", "stop"): (["nobody"], {}, 1, "409 managed_sandboxes_disabled"),
    ("sandboxes", "rm"): (["nobody", "--yes"], {}, 1, "404 unknown_sandbox"),
    ("sandboxes", "status"): (["nobody"], {}, 1, "404 unknown_sandbox"),
    ("sandboxes", "logs"): (["nobody"], {}, 1, "unknown_sandbox"),
    ("workspaces", "list"): ([], {"BUS_TOKEN": BAD_KEY}, 1, "401 unauthorized"),
    ("workspaces", "create"): (["Not An Id!"], {}, 1, "400 validation_error"),
    ("workspaces", "show"): (["nobody"], {}, 1, "404 unknown_workspace"),
    ("workspaces", "update"): (["nobody", "--name", "x"], {}, 1, "404 unknown_workspace"),
    ("workspaces", "rm"): (["nobody", "--yes"], {}, 1, "404 unknown_workspace"),
    ("dlq", "list"): ([], {"BUS_TOKEN": BAD_KEY}, 1, "401 unauthorized"),
    ("dlq", "show"): (["999999"], {}, 1, "404 unknown_dead_letter"),
    ("dlq", "replay"): (["999999"], {}, 1, "404 unknown_dead_letter"),
    ("dlq", "purge"): (["--all", "--yes"], {"BUS_TOKEN": BAD_KEY}, 1, "401 unauthorized"),
}


def test_the_failures_below_cover_every_command():
    assert leaf_commands() == set(FAILURES)


@pytest.mark.parametrize("command", sorted(FAILURES), ids=" ".join)
def test_every_command_fails_in_one_line(bus, command, tmp_path):
    args, extra, status, says = FAILURES[command]
    if extra.get("DATA_DIR") == BROKEN:
        (tmp_path / "collab-bus.db").write_text("not a database\n" * 100)
        (tmp_path / "collab-bus.db").chmod(0o600)
        extra = {**extra, "DATA_DIR": str(tmp_path)}
    done = run(bus, *command, *args, env=cli_env(bus, **{"DATA_DIR": str(bus.dir), **extra}))
    line = one_line_error(done)
    assert done.returncode == status and says in line, (done.returncode, line)


# --------------------------------------------------------------------------------------- asking first


def http_exists(bus: BusProcess, path: str) -> bool:
    with bus_client(bus.url) as http:
        return http.get(path).status_code == 200


def dead_letters_of(bus: BusProcess, sandbox: str) -> int:
    with bus_client(bus.url) as http:
        return http.get("/api/v1/dead-letters", params={"sandbox_id": sandbox}).json()["total"]


def target(bus: BusProcess, command: str) -> tuple[list[str], Callable[[], bool]]:
    """Something fresh for destructive `command` to act on: (the command line, whether it is still there)."""
    if command == "workspaces rm":
        workspace = uid("ws")
        with bus_client(bus.url) as http:
            http.post("/api/v1/workspaces", json={"id": workspace}).raise_for_status()
        return ["workspaces", "rm", workspace], lambda: http_exists(bus, f"/api/v1/workspaces/{workspace}")
    if command == "sandboxes rm":
        sandbox = uid("sb")
        register(bus, sandbox)
        return ["sandboxes", "rm", sandbox], lambda: http_exists(bus, f"/api/v1/sandboxes/{sandbox}")
    if command == "keys revoke":
        key, env = uid("key"), cli_env(bus, DATA_DIR=str(bus.dir))
        assert cli("keys", "create", "--role", "viewer", "--name", key, env=env).returncode == 0
        return ["keys", "revoke", key], lambda: f"  {key}\n" in cli("keys", "list", "--active", env=env).stdout
    sender, recipient = uid("from"), uid("to")
    register(bus, sender, recipient)
    dead_letter(bus, sender, recipient, {"job": command})
    return [*command.split(), "--sandbox", recipient], lambda: dead_letters_of(bus, recipient) > 0


def at_terminal(args: list[str], env: dict, answer: str) -> subprocess.CompletedProcess:
    """Run collab-bus with a terminal (a pseudo-terminal) as stdin, typing `answer`."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([CLI, *args], env=env, cwd=REPO, stdin=follower, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.write(leader, answer.encode())  # the terminal keeps it until the prompt reads it
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


DESTRUCTIVE = ["workspaces rm", "sandboxes rm", "keys revoke", "dlq purge", "dlq replay"]


@pytest.mark.parametrize("command", DESTRUCTIVE)
def test_a_destructive_command_without_a_terminal_needs_yes(bus, command):
    args, still_there = target(bus, command)
    env = cli_env(bus, DATA_DIR=str(bus.dir))
    refused = cli(*args, env=env, stdin=subprocess.DEVNULL)
    line = one_line_error(refused)
    assert refused.returncode == 2 and line.startswith("collab-bus: not going to ") and "pass --yes" in line
    assert still_there()
    done = cli(*args, "--yes", env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and not still_there(), done.stderr


@pytest.mark.parametrize("command", DESTRUCTIVE)
def test_a_destructive_command_asks_at_a_terminal(bus, command):
    args, still_there = target(bus, command)
    env = cli_env(bus, DATA_DIR=str(bus.dir))
    declined = at_terminal(args, env, "n\n")
    assert declined.returncode == 1 and "? [y/N]" in declined.stdout, declined
    assert one_line_error(declined) == "collab-bus: aborted: nothing was changed"
    assert still_there()
    accepted = at_terminal(args, env, "y\n")
    assert accepted.returncode == 0 and not still_there(), accepted


def test_workspaces_rm_names_the_cli_flag_and_keeps_force_apart_from_yes(bus):
    workspace = uid("ws")
    with bus_client(bus.url) as http:
        http.post("/api/v1/workspaces", json={"id": workspace}).raise_for_status()
    register(bus, uid("in"), uid("in"), workspace=workspace)
    env = cli_env(bus)
    refused = cli("workspaces", "rm", workspace, "--yes", env=env)  # confirmed, but it has sandboxes
    assert one_line_error(refused) == (f"collab-bus: workspace {workspace} still has 2 sandboxes: remove them first, "
                                       "or pass --force to remove them with the workspace")
    unconfirmed = cli("workspaces", "rm", workspace, "--force", env=env, stdin=subprocess.DEVNULL)
    assert unconfirmed.returncode == 2 and "remove workspace " + workspace + " and its 2 sandboxes" in \
        one_line_error(unconfirmed)
    assert cli("workspaces", "rm", workspace, "--force", "--yes", env=env).returncode == 0
    assert not http_exists(bus, f"/api/v1/workspaces/{workspace}")


# --------------------------------------------------------------------------------------- keys and sandboxes


def test_keys_create_refuses_an_empty_or_taken_name(bus):
    env = cli_env(bus, DATA_DIR=str(bus.dir))
    name = uid("taken")
    assert cli("keys", "create", "--role", "viewer", "--name", name, env=env).returncode == 0
    for bad, says in (("", "'--name': must not be empty"), ("  ", "'--name': must not be empty"),
                      (name, f"an active key is named {name!r} already")):
        done = cli("keys", "create", "--role", "operator", "--name", bad, env=env)
        assert done.returncode == 2 and says in one_line_error(done), done.stderr
    assert cli("keys", "revoke", name, "--yes", env=env).returncode == 0
    assert cli("keys", "create", "--role", "viewer", "--name", name, env=env).returncode == 0  # revoked: free again


@pytest.mark.parametrize("args", [["--role", "registrar", "--name", "x"],
                                  ["--role", "operator", "--workspace", "default", "--name", "y"]])
def test_keys_create_with_a_workspace_for_the_wrong_role_is_one_line(bus, args):
    done = cli("keys", "create", *args, env=cli_env(bus, DATA_DIR=str(bus.dir)))
    assert done.returncode == 2
    assert one_line_error(done) == "collab-bus: a registrar key needs a workspace, and only a registrar key takes one"


def test_sandboxes_status_of_a_self_registered_sandbox_says_so(bus):
    sandbox = uid("self")
    register(bus, sandbox)
    line = one_line_error(cli("sandboxes", "status", sandbox, env=cli_env(bus)))
    assert line.startswith(f"collab-bus: sandbox {sandbox} is registered (workspace default, status offline) but "
                           "not managed by the bus"), line
    assert "404 unknown_sandbox" in one_line_error(cli("sandboxes", "status", uid("nobody"), env=cli_env(bus)))
