"""The container runtime managed sandboxes run on: one small interface, and its errors.

`ContainerRuntime` is what lifecycle tasks, the reconciler and the logs endpoint need from an engine; the Docker
adapter (`app.runtime.docker_engine.DockerRuntime`) is the one implementation. Containers are always found by their
labels (`labels_for`), never by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

LABEL_PREFIX = "ai.aintandem.collab"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"  # which bus manages the container
LABEL_SANDBOX = f"{LABEL_PREFIX}.sandbox"
LABEL_WORKSPACE = f"{LABEL_PREFIX}.workspace"


def labels_for(instance: str, sandbox_id: str | None = None, workspace: str | None = None) -> dict[str, str]:
    """The labels that mark a container as this bus instance's (and, given, as one sandbox's)."""
    labels = {LABEL_INSTANCE: instance}
    if sandbox_id is not None:
        labels[LABEL_SANDBOX] = sandbox_id
    if workspace is not None:
        labels[LABEL_WORKSPACE] = workspace
    return labels


class RuntimeFailure(Exception):
    """An engine operation failed; `message` is the engine's own words."""

    transient = False  # True: retrying the same operation later may succeed

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class EngineUnavailable(RuntimeFailure):
    """The engine cannot be reached (not running, socket missing, timed out)."""

    transient = True


class ImageNotFound(RuntimeFailure):
    """The image asked for is not on the engine and cannot be pulled."""


class ContainerNotFound(RuntimeFailure):
    """No container with that id (it was removed, perhaps by hand)."""


class EngineRefused(RuntimeFailure):
    """The engine refused the request (a bad limit, a bad network mode, a conflict)."""


@dataclass(frozen=True)
class ContainerSpec:
    """What to run: image, command, environment, labels and limits (None: the engine's default)."""

    image: str
    labels: dict[str, str]
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    network_mode: str = "none"
    name: str | None = None


@dataclass(frozen=True)
class ContainerInfo:
    """What the engine says about one container.

    `status` is the engine's (created, running, paused, restarting, removing, exited, dead); `error` is its own
    message when the container failed to start, `exit_code` its exit status once it ended (None before),
    `oom_killed` whether the kernel killed it for memory.
    """

    id: str
    status: str
    labels: dict[str, str]
    exit_code: int | None = None
    error: str = ""
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def running(self) -> bool:
        """The container's process is up (running, paused or restarting)."""
        return self.status in ("running", "paused", "restarting")


@dataclass(frozen=True)
class EngineEvent:
    """A container event the engine reported: `action` is die, oom, start, destroy …"""

    action: str
    container_id: str
    labels: dict[str, str]
    exit_code: int | None = None


class ContainerRuntime(Protocol):
    """The operations managed sandboxes need. Every method raises a RuntimeFailure subclass on failure."""

    def describe(self) -> str:
        """Where the engine is (for /readyz and logs)."""

    def ping(self) -> None:
        """Return when the engine answers; EngineUnavailable otherwise."""

    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; its id."""

    def start(self, container_id: str) -> None:
        """Start a created or stopped container (starting a running one is not an error)."""

    def stop(self, container_id: str, timeout: float) -> None:
        """Stop a container, killing it after `timeout` seconds (stopping a stopped one is not an error)."""

    def remove(self, container_id: str) -> None:
        """Remove a container, running or not (removing a missing one is not an error)."""

    def inspect(self, container_id: str) -> ContainerInfo:
        """The container's state; ContainerNotFound when it does not exist."""

    def find(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all of `labels`."""

    def logs(self, container_id: str, *, tail: int | None = None, since: datetime | None = None,
             follow: bool = False) -> Iterator[str]:
        """The container's output (stdout and stderr) line by line; with `follow`, until the container stops."""

    def events(self, labels: dict[str, str], until: datetime | None = None) -> Iterator[EngineEvent]:
        """Container events for containers carrying `labels`, as they happen (until `until`, or forever)."""


__all__ = [
    "ContainerInfo", "ContainerNotFound", "ContainerRuntime", "ContainerSpec", "EngineEvent", "EngineRefused",
    "EngineUnavailable", "ImageNotFound", "LABEL_INSTANCE", "LABEL_SANDBOX", "LABEL_WORKSPACE", "RuntimeFailure",
    "labels_for",
]
