"""`collab-bus sandboxes`: list sandboxes; create, start, stop, inspect, follow the logs of and remove managed ones.

The lifecycle commands ask the bus (202) and then follow the sandbox's state until it gets where it was asked to
go, printing each state it passes on stderr, so an operator sees `creating → created → starting → running` or the
engine's error, not a silent prompt. `--no-wait` returns at once.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from urllib.parse import quote

import click

from app.cli.client import Bus, OpsError, bus_command
from app.cli.confirm import YES_OPTION, confirm
from app.cli.output import json_out, table, when

NETWORK_MODES = ("host", "none", "bridge")
SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

WAIT_OPTIONS = [
    click.option("--wait/--no-wait", default=True, show_default=True,
                 help="Follow the sandbox's state until it gets there (or fails), printing each state on stderr."),
    click.option("--wait-timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True, metavar="S",
                 help="Seconds --wait follows it."),
]


def _with_wait(command):
    for option in reversed(WAIT_OPTIONS):
        command = option(command)
    return command


def _path(sandbox_id: str, suffix: str = "") -> str:
    return f"/api/v1/sandboxes/{quote(sandbox_id, safe='')}{suffix}"


def follow_state(bus: Bus, sandbox_id: str, target: str, timeout: float) -> dict | None:
    """Poll a managed sandbox until its state is `target` (`deleted`: until it is gone), printing each state it
    passes on stderr; return its last view (None once deleted). OpsError when it ends in `error`, when someone
    else asks for another state meanwhile, or after `timeout` seconds."""
    started = time.monotonic()
    last = None
    while True:
        response = bus.request("GET", _path(sandbox_id), allow=(404,))
        sandbox = None if response.status_code == 404 else response.json()
        state = "deleted" if sandbox is None else sandbox.get("state")
        elapsed = time.monotonic() - started
        if state != last:
            click.echo(f"{sandbox_id}: {state}  ({elapsed:.1f} s)", err=True)
            last = state
        if state == target:
            return sandbox
        if sandbox is None:
            raise OpsError(f"sandbox {sandbox_id} is gone (asked for {target})")
        if state == "error" and sandbox.get("state_reason"):  # without a reason: an earlier error, being retried
            raise OpsError(f"sandbox {sandbox_id} is in error: {sandbox['state_reason']}")
        if sandbox.get("desired_state") not in (target, None):
            raise OpsError(f"sandbox {sandbox_id} was asked for {sandbox['desired_state']} meanwhile; "
                           f"stopped following it (state {state})")
        if elapsed >= timeout:
            raise OpsError(f"sandbox {sandbox_id} is still {state} after {timeout:g} s (asked for {target}; "
                           "is a worker consuming the lifecycle queue?)")
        time.sleep(0.1 if elapsed < 5 else 0.5)  # most commands finish within a second or two


@click.group(epilog="""\b
Examples:
  collab-bus sandboxes list --workspace team-a
  collab-bus sandboxes create researcher --workspace team-a --image aintandem/collab-agent:1
  collab-bus sandboxes logs researcher -f
  collab-bus sandboxes stop researcher
  collab-bus sandboxes rm researcher
""")
def sandboxes() -> None:
    """Sandboxes: list them; create, start, stop, inspect, follow the logs of and remove managed ones (containers
    the bus runs, with MANAGED_SANDBOXES=true on the bus)."""


@bus_command("list", group=sandboxes, epilog="""\b
Examples:
  collab-bus sandboxes list
  collab-bus sandboxes list --workspace team-a --status online
  collab-bus sandboxes list --status unregistered --json
""")
@click.option("--workspace", help="Only this workspace.")
@click.option("--status", type=click.Choice(("online", "offline", "unregistered")), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print the bus's answer as JSON.")
def sandboxes_list(bus: Bus, workspace: str | None, status: str | None, as_json: bool) -> None:
    """List sandboxes: id, workspace, status, agents, head and settled seq, last heartbeat, and the container's
    state for a managed sandbox (`-` for a self-registered one)."""
    params = {key: value for key, value in (("workspace", workspace), ("status", status)) if value}
    answer = bus.get("/api/v1/sandboxes", params=params)
    if as_json:
        json_out(answer)
        return
    rows = [[s["sandbox_id"], s["workspace"], s["status"], ",".join(a["name"] for a in s.get("agents", [])) or "-",
             s.get("head_seq", "-"), s.get("settled_seq", "-"), when(s.get("last_heartbeat")),
             s.get("state") or "-" if s.get("managed") else "-"]
            for s in answer["sandboxes"]]
    table(["SANDBOX", "WORKSPACE", "STATUS", "AGENTS", "HEAD", "SETTLED", "LAST HEARTBEAT", "CONTAINER"], rows,
          "no sandboxes")


def _env_pair(ctx, param, values: tuple[str, ...]) -> dict:
    pairs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", ctx=ctx, param=param)
        pairs[name] = text
    return pairs


def _command_words(ctx, param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise click.BadParameter(f"cannot split {value!r} into words: {exc}", ctx=ctx, param=param) from None
    if not words:
        raise click.BadParameter("is empty", ctx=ctx, param=param)
    return words


@bus_command("create", group=sandboxes, epilog="""\b
Examples:
  collab-bus sandboxes create researcher --workspace team-a
  collab-bus sandboxes create scratch --image busybox:latest --command 'sh -c "echo hello; sleep 3600"' \\
      --memory 64 --cpus 0.5 --pids 64 --network none
  collab-bus sandboxes create writer --workspace team-a --env AGENT_NAME=writer --env AGENT_ASK=researcher \\
      --agent writer
  collab-bus sandboxes create later --no-start        # recorded (stopped); `sandboxes start` runs it
""")
@click.argument("sandbox_id", metavar="[SANDBOX]", required=False)
@click.option("--workspace", default="default", show_default=True, help="The workspace it belongs to.")
@click.option("--image", help="Image to run (default: the workspace's default image, else the bus's "
                              "DEFAULT_SANDBOX_IMAGE).")
@click.option("--command", "command", callback=_command_words, metavar="'CMD ARG...'",
              help="Command to run instead of the image's, as one shell-quoted string.")
@click.option("--env", "env", multiple=True, callback=_env_pair, metavar="NAME=VALUE",
              help="An environment variable of the container (repeatable). SANDBOX_ID, COLLABORATION_BUS_URL and "
                   "its token are set by the bus.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=8), metavar="MIB", help="Memory limit in MiB.")
@click.option("--cpus", type=click.FloatRange(min=0.01), help="CPU limit (fractions allowed).")
@click.option("--pids", type=click.IntRange(min=8), help="Process limit.")
@click.option("--network", "network_mode", type=click.Choice(NETWORK_MODES),
              help="Network mode (default: the bus's; `host` lets the agent reach a bus on 127.0.0.1).")
@click.option("--agent", "agents", multiple=True, metavar="NAME", help="An agent it runs (repeatable).")
@click.option("--start/--no-start", default=True, show_default=True, help="Start it once created.")
@_with_wait
@click.option("--json", "as_json", is_flag=True, help="Print the sandbox as JSON on stdout.")
def sandboxes_create(bus: Bus, sandbox_id: str | None, workspace: str, image: str | None, command: list | None,
                     env: dict, memory_mb: int | None, cpus: float | None, pids: int | None, network_mode: str | None,
                     agents: tuple[str, ...], start: bool, wait: bool, wait_timeout: float, as_json: bool) -> None:
    """Create a managed sandbox (SANDBOX, or an id the bus chooses): the bus creates its container and starts it.

    Prints the sandbox id on stdout; with --wait (the default) follows it to `running` (`stopped` with
    --no-start), each state on stderr, and exits 1 if it ends in `error` (the engine's message is printed).
    """
    limits = {key: value for key, value in (("memory_mb", memory_mb), ("cpus", cpus), ("pids", pids))
              if value is not None}
    body = {"workspace": workspace, "env": env, "limits": limits, "start": start,
            "agents": [{"name": name} for name in agents]}
    for key, value in (("sandbox_id", sandbox_id), ("image", image), ("command", command),
                       ("network_mode", network_mode)):
        if value is not None:
            body[key] = value
    sandbox = bus.request("POST", "/api/v1/sandboxes", json=body).json()
    if not as_json:
        click.echo(sandbox["sandbox_id"])
    if wait:
        sandbox = follow_state(bus, sandbox["sandbox_id"], "running" if start else "stopped", wait_timeout)
    if as_json:
        json_out(sandbox)


def _lifecycle_command(name: str, verb: str, target: str, method: str, suffix: str, help_text: str, examples: str,
                       asks: str | None = None):
    """`sandboxes start|stop|rm SANDBOX...`: ask the bus for each, then follow each to `target`. With `asks` (a
    verb: "remove"), the command confirms first (and takes --yes)."""

    def command(bus: Bus, sandbox_ids: tuple[str, ...], wait: bool, wait_timeout: float, yes: bool = True) -> None:
        if asks:
            confirm(f"{asks} sandbox{'es' if len(sandbox_ids) > 1 else ''} {', '.join(sandbox_ids)}", yes)
        failed = []
        for sandbox_id in sandbox_ids:
            try:
                bus.request(method, _path(sandbox_id, suffix))
                if wait:
                    follow_state(bus, sandbox_id, target, wait_timeout)
                click.echo(f"{verb} {sandbox_id}")
            except OpsError as exc:
                if len(sandbox_ids) == 1:
                    raise
                click.echo(f"collab-bus: {sandbox_id}: {exc.message}", err=True)
                failed.append(sandbox_id)
        if failed:
            raise OpsError(f"{len(failed)} of {len(sandbox_ids)} sandboxes failed: {', '.join(failed)}")

    if asks:
        command = YES_OPTION(command)
    command = click.argument("sandbox_ids", metavar="SANDBOX...", nargs=-1, required=True)(_with_wait(command))
    return bus_command(name, group=sandboxes, help=help_text, epilog=examples)(command)


sandboxes_start = _lifecycle_command(
    "start", "started", "running", "POST", "/start",
    "Start managed sandboxes (a stopped container runs again); follow each to `running`.",
    "\b\nExamples:\n  collab-bus sandboxes start researcher\n  collab-bus sandboxes start a b c --no-wait\n")
sandboxes_stop = _lifecycle_command(
    "stop", "stopped", "stopped", "POST", "/stop",
    "Stop managed sandboxes (their mailboxes keep what is sent to them meanwhile; a message to one wakes it); "
    "follow each to `stopped`.",
    "\b\nExamples:\n  collab-bus sandboxes stop researcher\n  collab-bus sandboxes stop a b --wait-timeout 30\n")
sandboxes_rm = _lifecycle_command(
    "rm", "removed", "deleted", "DELETE", "",
    "Remove sandboxes, after asking (unless --yes): a managed one's container is stopped and removed, then it is "
    "unregistered; a self-registered one is unregistered (its mailbox is kept for a later registration under the "
    "same id).",
    "\b\nExamples:\n  collab-bus sandboxes rm researcher\n  collab-bus sandboxes rm a b --yes --no-wait\n",
    asks="remove")


@bus_command("status", group=sandboxes, epilog="""\b
Examples:
  collab-bus sandboxes status researcher
  collab-bus sandboxes status researcher --json | jq .container
""")
@click.argument("sandbox_id", metavar="SANDBOX")
@click.option("--json", "as_json", is_flag=True, help="Print the bus's answer as JSON.")
def sandboxes_status(bus: Bus, sandbox_id: str, as_json: bool) -> None:
    """A managed sandbox: asked-for and recorded state, its container as the engine reports it, what it runs."""
    response = bus.request("GET", _path(sandbox_id, "/status"), allow=(404,))
    if response.status_code == 404:
        raise _not_managed(bus, sandbox_id) or OpsError(bus.describe_error(response))
    found = response.json()
    if as_json:
        json_out(found)
        return
    spec = found.get("spec") or {}
    container = found.get("container") or {}
    rows = [("sandbox", found["sandbox_id"]), ("workspace", found["workspace"]), ("bus status", found["status"]),
            ("state", found["state"] + (f" ({found['state_reason']})" if found.get("state_reason") else "")),
            ("asked for", found["desired_state"]), ("since", when(found.get("state_changed_at"))),
            ("image", spec.get("image", "-")), ("command", shlex.join(spec["command"]) if spec.get("command") else
                                                  "(the image's)"),
            ("limits", ", ".join(f"{k} {v}" for k, v in (spec.get("limits") or {}).items()) or "none"),
            ("network", spec.get("network_mode", "-")), ("container", found.get("container_id") or "-")]
    if container:
        rows.append(("engine", f"{container['status']}" + (f", exit code {container['exit_code']}"
                                                            if container["status"] == "exited" else "")
                     + (", OOM-killed" if container.get("oom_killed") else "")
                     + (f", {container['error']}" if container.get("error") else "")))
        rows.append(("started", when(container.get("started_at"))))
    elif found.get("engine_error"):
        rows.append(("engine", f"unknown: {found['engine_error']}"))
    for label, value in rows:
        click.echo(f"{label + ':':<12}{value}")


def _not_managed(bus: Bus, sandbox_id: str) -> OpsError | None:
    """The failure to report for a sandbox that is registered but not managed by the bus, or None when there is
    no such registration either."""
    registration = bus.request("GET", _path(sandbox_id), allow=(404,))
    if registration.status_code == 404:
        return None
    found = registration.json()
    return OpsError(f"sandbox {sandbox_id} is registered (workspace {found.get('workspace')}, status "
                    f"{found.get('status')}) but not managed by the bus: it registered itself, and the bus runs no "
                    "container for it (`collab-bus sandboxes list` shows it)")


def _since(ctx, param, value: str | None) -> int | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise click.BadParameter("give a duration such as 90s, 10m, 2h, 1d, or unix seconds", ctx=ctx, param=param)
    number, unit = int(match.group(1)), match.group(2)
    return int(time.time()) - number * SINCE_UNITS[unit] if unit else number


@bus_command("logs", group=sandboxes, epilog="""\b
Examples:
  collab-bus sandboxes logs researcher                 # what it printed so far
  collab-bus sandboxes logs researcher -f --tail 20    # the last 20 lines, then new ones until it stops
  collab-bus sandboxes logs researcher --since 10m
""")
@click.argument("sandbox_id", metavar="SANDBOX")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the container stops (Ctrl-C ends).")
@click.option("--tail", "tail_lines", type=click.IntRange(min=0), metavar="N", help="Only the last N lines.")
@click.option("--since", callback=_since, metavar="WHEN",
              help="Only lines since WHEN: a duration ago (90s, 10m, 2h, 1d) or unix seconds.")
def sandboxes_logs(bus: Bus, sandbox_id: str, follow: bool, tail_lines: int | None, since: int | None) -> None:
    """Print a managed sandbox's container output (stdout and stderr, as the engine keeps it)."""
    params = {"follow": "true" if follow else "false"}
    if tail_lines is not None:
        params["tail"] = tail_lines
    if since is not None:
        params["since"] = since
    try:
        bus.stream_lines(_path(sandbox_id, "/logs"), click.echo, params=params)
    except KeyboardInterrupt:
        sys.exit(0)
    if follow:
        click.echo(f"collab-bus: the log stream of {sandbox_id} ended (its container stopped)", err=True)
