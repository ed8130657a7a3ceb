"""`collab-bus workspaces`: list, create, show, change and remove workspaces (the scope of sandboxes, policies,
broadcasts and registrar keys, and the defaults of their managed sandboxes)."""

from __future__ import annotations

from urllib.parse import quote

import click

from app.cli.client import Bus, OpsError, bus_command
from app.cli.confirm import YES_OPTION, confirm
from app.cli.output import json_out, table, when
from app.cli.sandboxes import follow_state

SETTING_OPTIONS = [
    click.option("--default-image", metavar="IMAGE", help="Image of its managed sandboxes when they name none."),
    click.option("--default-memory", "memory_mb", type=click.IntRange(min=8), metavar="MIB",
                 help="Default memory limit of its managed sandboxes, in MiB."),
    click.option("--default-cpus", "cpus", type=click.FloatRange(min=0.01), help="Default CPU limit."),
    click.option("--default-pids", "pids", type=click.IntRange(min=8), help="Default process limit."),
    click.option("--idle-stop-minutes", type=click.FloatRange(min=0.05), metavar="MIN",
                 help="Stop a managed sandbox after this many minutes without traffic (a message wakes it)."),
    click.option("--no-idle-stop", is_flag=True, help="Never stop idle sandboxes (clears --idle-stop-minutes)."),
]


def _with_settings(command):
    for option in reversed(SETTING_OPTIONS):
        command = option(command)
    return command


def _path(workspace_id: str) -> str:
    return f"/api/v1/workspaces/{quote(workspace_id, safe='')}"


def _settings(current: dict, default_image, memory_mb, cpus, pids, idle_stop_minutes, no_idle_stop) -> dict:
    """`current` settings with the options given on the command line applied."""
    if idle_stop_minutes is not None and no_idle_stop:
        raise click.UsageError("--idle-stop-minutes and --no-idle-stop contradict each other")
    settings = {**current, "default_limits": dict(current.get("default_limits") or {})}
    if default_image is not None:
        settings["default_image"] = default_image
    for key, value in (("memory_mb", memory_mb), ("cpus", cpus), ("pids", pids)):
        if value is not None:
            settings["default_limits"][key] = value
    if idle_stop_minutes is not None:
        settings["idle_stop_minutes"] = idle_stop_minutes
    if no_idle_stop:
        settings["idle_stop_minutes"] = None
    if not settings["default_limits"]:
        del settings["default_limits"]
    return settings


@click.group(epilog="""\b
Examples:
  collab-bus workspaces list
  collab-bus workspaces create team-a --name "Team A" --default-memory 512 --idle-stop-minutes 30
  collab-bus workspaces update team-a --default-image aintandem/collab-agent:2
  collab-bus workspaces rm team-a --force
""")
def workspaces() -> None:
    """Workspaces: the scope of sandboxes, policies, broadcasts and registrar keys, and the defaults (image,
    limits, idle stop) of their managed sandboxes."""


@bus_command("list", group=workspaces, epilog="""\b
Examples:
  collab-bus workspaces list
  collab-bus workspaces list --json
""")
@click.option("--json", "as_json", is_flag=True, help="Print the bus's answer as JSON.")
def workspaces_list(bus: Bus, as_json: bool) -> None:
    """List workspaces: id, name, sandboxes, default image, idle stop, created."""
    answer = bus.get("/api/v1/workspaces")
    if as_json:
        json_out(answer)
        return
    rows = [[w["id"], w["name"], w["sandbox_count"], w["settings"].get("default_image") or "-",
             _idle(w["settings"]), when(w["created_at"])] for w in answer["workspaces"]]
    table(["WORKSPACE", "NAME", "SANDBOXES", "DEFAULT IMAGE", "IDLE STOP", "CREATED"], rows, "no workspaces")


def _idle(settings: dict) -> str:
    minutes = settings.get("idle_stop_minutes")
    return f"{minutes:g} min" if minutes else "never"


@bus_command("create", group=workspaces, epilog="""\b
Examples:
  collab-bus workspaces create team-a
  collab-bus workspaces create team-a --name "Team A" --description "the research team"
  collab-bus workspaces create team-b --default-image aintandem/collab-agent:1 --default-memory 512 \\
      --default-cpus 1 --idle-stop-minutes 30
""")
@click.argument("workspace_id", metavar="WORKSPACE")
@click.option("--name", help="Display name (default: the id).")
@click.option("--description", default="", help="What it is for.")
@_with_settings
@click.option("--json", "as_json", is_flag=True, help="Print the workspace as JSON.")
def workspaces_create(bus: Bus, workspace_id: str, name: str | None, description: str, as_json: bool,
                      **setting_options) -> None:
    """Create workspace WORKSPACE with its settings."""
    body = {"id": workspace_id, "description": description, "settings": _settings({}, **setting_options)}
    if name is not None:
        body["name"] = name
    workspace = bus.request("POST", "/api/v1/workspaces", json=body).json()
    if as_json:
        json_out(workspace)
    else:
        click.echo(f"created workspace {workspace['id']}")


@bus_command("show", group=workspaces, epilog="""\b
Examples:
  collab-bus workspaces show team-a
  collab-bus workspaces show team-a --json
""")
@click.argument("workspace_id", metavar="WORKSPACE")
@click.option("--json", "as_json", is_flag=True, help="Print the bus's answer as JSON.")
def workspaces_show(bus: Bus, workspace_id: str, as_json: bool) -> None:
    """Show a workspace and its settings."""
    workspace = bus.get(_path(workspace_id))
    if as_json:
        json_out(workspace)
        return
    settings = workspace["settings"]
    limits = settings.get("default_limits") or {}
    for label, value in (("workspace", workspace["id"]), ("name", workspace["name"]),
                         ("description", workspace["description"] or "-"), ("sandboxes", workspace["sandbox_count"]),
                         ("default image", settings.get("default_image") or "(the bus's DEFAULT_SANDBOX_IMAGE)"),
                         ("limits", ", ".join(f"{k} {v}" for k, v in limits.items()) or "none"),
                         ("idle stop", _idle(settings)), ("created", when(workspace["created_at"])),
                         ("updated", when(workspace["updated_at"]))):
        click.echo(f"{label + ':':<15}{value}")


@bus_command("update", group=workspaces, epilog="""\b
Examples:
  collab-bus workspaces update team-a --name "Team A (research)"
  collab-bus workspaces update team-a --default-memory 1024 --idle-stop-minutes 10
  collab-bus workspaces update team-a --no-idle-stop
""")
@click.argument("workspace_id", metavar="WORKSPACE")
@click.option("--name", help="New display name.")
@click.option("--description", help="New description.")
@_with_settings
@click.option("--json", "as_json", is_flag=True, help="Print the workspace as JSON.")
def workspaces_update(bus: Bus, workspace_id: str, name: str | None, description: str | None, as_json: bool,
                      **setting_options) -> None:
    """Change a workspace: the settings given are changed, the others kept."""
    changes = {key: value for key, value in (("name", name), ("description", description)) if value is not None}
    if any(value not in (None, False) for value in setting_options.values()):
        current = bus.get(_path(workspace_id))["settings"]
        changes["settings"] = _settings(current, **setting_options)
    if not changes:
        raise click.UsageError("nothing to change: give --name, --description or a setting")
    workspace = bus.request("PUT", _path(workspace_id), json=changes).json()
    if as_json:
        json_out(workspace)
    else:
        click.echo(f"updated workspace {workspace['id']}")


@bus_command("rm", group=workspaces, epilog="""\b
Examples:
  collab-bus workspaces rm team-a                  # asks first; refused while it has sandboxes
  collab-bus workspaces rm team-a --force          # asks first, then removes its sandboxes too
  collab-bus workspaces rm team-a --force --yes --no-wait
""")
@click.argument("workspace_id", metavar="WORKSPACE")
@click.option("--force", is_flag=True,
              help="Remove it even though it still has sandboxes: unregister them, and stop and remove the "
                   "managed ones. Without it a workspace with sandboxes is refused.")
@YES_OPTION
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="With --force: follow its managed sandboxes until they are removed.")
@click.option("--wait-timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True, metavar="S",
              help="Seconds --wait follows each.")
def workspaces_rm(bus: Bus, workspace_id: str, force: bool, yes: bool, wait: bool, wait_timeout: float) -> None:
    """Remove a workspace, after asking (unless --yes). One with sandboxes is refused unless --force, which
    removes them with it."""
    count = bus.get(_path(workspace_id))["sandbox_count"]
    if count and not force:
        raise _still_has_sandboxes(workspace_id, count)
    confirm(f"remove workspace {workspace_id}" + (f" and its {_sandboxes(count)}" if count else ""), yes)
    removing = _delete(bus, workspace_id, force)
    if wait:
        for sandbox_id in removing:
            follow_state(bus, sandbox_id, "deleted", wait_timeout)
    elif removing:
        click.echo(f"removing {len(removing)} managed sandbox(es) in the background: {', '.join(removing)}", err=True)
    click.echo(f"removed workspace {workspace_id}")


def _delete(bus: Bus, workspace_id: str, force: bool) -> list[str]:
    """Delete the workspace; the managed sandboxes now being removed with it."""
    response = bus.request("DELETE", _path(workspace_id), params={"force": "true"} if force else {}, allow=(409,))
    if response.status_code == 409:
        details = response.json().get("error", {}).get("details") or {}
        if "sandboxes" in details:  # a sandbox registered since it was counted
            raise _still_has_sandboxes(workspace_id, len(details["sandboxes"]))
        raise OpsError(bus.describe_error(response))
    return response.json().get("deleting_sandboxes") or []


def _sandboxes(count: int) -> str:
    return f"{count} sandbox{'es' if count != 1 else ''}"


def _still_has_sandboxes(workspace_id: str, count: int) -> OpsError:
    them = "them" if count != 1 else "it"
    return OpsError(f"workspace {workspace_id} still has {_sandboxes(count)}: remove {them} first, or pass --force "
                    f"to remove {them} with the workspace")
