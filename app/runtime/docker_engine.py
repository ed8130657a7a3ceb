"""The Docker Engine adapter of ContainerRuntime, on the `docker` package's low-level API client.

`DockerRuntime()` talks to `DOCKER_HOST` (else the local socket), as the docker CLI does; `DockerRuntime(url)` to
that URL. Every engine error becomes a RuntimeFailure carrying the engine's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from app.runtime import (
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    EngineEvent,
    EngineRefused,
    EngineUnavailable,
    ImageNotFound,
    RuntimeFailure,
)

_NEVER = "0001-01-01T00:00:00Z"  # the engine's "not yet" for StartedAt / FinishedAt
_ENDED = ("exited", "dead")  # statuses whose ExitCode means something


class DockerRuntime:
    """ContainerRuntime on a Docker engine (`base_url`: unix:///path/docker.sock, tcp://host:port; None: DOCKER_HOST).

    The client is made on first use, so a bus configured for an engine that is down still starts (and says so in
    /readyz and in each sandbox's `error` state).
    """

    def __init__(self, base_url: str | None = None, timeout: float = 30.0):
        self.base_url = base_url
        self.timeout = timeout
        self._client = None

    def describe(self) -> str:
        import os

        return f"docker engine at {self.base_url or os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'}"

    @property
    def _api(self):
        if self._client is None:
            import docker

            with _engine_errors():
                if self.base_url:
                    self._client = docker.APIClient(base_url=self.base_url, timeout=int(self.timeout), version="auto")
                else:
                    self._client = docker.from_env(timeout=int(self.timeout)).api
        return self._client

    def ping(self) -> None:
        with _engine_errors():
            self._api.ping()

    def create(self, spec: ContainerSpec) -> str:
        api = self._api
        with _engine_errors():
            host_config = api.create_host_config(
                init=True, network_mode=spec.network_mode, mem_limit=spec.memory_bytes,
                nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None, pids_limit=spec.pids_limit,
            )
            created = api.create_container(spec.image, command=spec.command, environment=spec.env,
                                           labels=spec.labels, name=spec.name, host_config=host_config)
        return created["Id"]

    def start(self, container_id: str) -> None:
        with _engine_errors(container_id):
            self._api.start(container_id)

    def stop(self, container_id: str, timeout: float) -> None:
        with _engine_errors(container_id):
            self._api.stop(container_id, timeout=max(0, int(timeout)))

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(ContainerNotFound), _engine_errors(container_id):
            self._api.remove_container(container_id, force=True)

    def inspect(self, container_id: str) -> ContainerInfo:
        with _engine_errors(container_id):
            data = self._api.inspect_container(container_id)
        state = data.get("State") or {}
        status = state.get("Status", "unknown")
        return ContainerInfo(
            id=data["Id"], status=status, labels=(data.get("Config") or {}).get("Labels") or {},
            exit_code=state.get("ExitCode") if status in _ENDED else None,  # the engine says 0 before it ends
            error=state.get("Error") or "", oom_killed=bool(state.get("OOMKilled")),
            started_at=_moment(state.get("StartedAt")), finished_at=_moment(state.get("FinishedAt")),
            created_at=_moment(data.get("Created")),
        )

    def find(self, labels: dict[str, str]) -> list[ContainerInfo]:
        with _engine_errors():
            rows = self._api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        return [ContainerInfo(id=row["Id"], status=row.get("State", "unknown"), labels=row.get("Labels") or {},
                              created_at=datetime.fromtimestamp(row["Created"], UTC) if row.get("Created") else None)
                for row in rows]

    def logs(self, container_id: str, *, tail: int | None = None, since: datetime | None = None,
             follow: bool = False) -> Iterator[str]:
        with _engine_errors(container_id):
            chunks = self._api.logs(container_id, stream=True, follow=follow, tail="all" if tail is None else tail,
                                    since=since)
        return _lines(chunks)

    def events(self, labels: dict[str, str], until: datetime | None = None) -> Iterator[EngineEvent]:
        filters = {"type": "container", "label": [f"{k}={v}" for k, v in labels.items()]}
        with _engine_errors():
            stream = self._api.events(filters=filters, until=until, decode=True)
        return _engine_events(stream)


def _engine_events(stream) -> Iterator[EngineEvent]:
    with _engine_errors():
        for raw in stream:
            actor = raw.get("Actor") or {}
            attributes = dict(actor.get("Attributes") or {})
            exit_code = attributes.pop("exitCode", None)
            yield EngineEvent(action=raw.get("Action") or raw.get("status") or "",
                              container_id=actor.get("ID") or raw.get("id", ""),
                              labels=attributes, exit_code=int(exit_code) if exit_code is not None else None)


def _lines(chunks) -> Iterator[str]:
    """Whole lines out of the engine's log chunks (a line may span chunks; the last may lack its newline)."""
    pending = b""
    with _engine_errors():
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _moment(value: str | None) -> datetime | None:
    if not value or value.startswith(_NEVER[:10]):
        return None
    head = value.rstrip("Z").split(".")[0]  # the engine gives nanoseconds, which fromisoformat does not take
    return datetime.fromisoformat(head).replace(tzinfo=UTC)


@contextlib.contextmanager
def _engine_errors(container_id: str | None = None):
    """Turn the docker package's and requests' exceptions into RuntimeFailures with the engine's message."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except RuntimeFailure:
        raise
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(_explain(exc)) from exc
    except docker.errors.NotFound as exc:
        if container_id is not None:
            raise ContainerNotFound(_explain(exc)) from exc
        raise EngineRefused(_explain(exc)) from exc
    except docker.errors.APIError as exc:
        raise EngineRefused(_explain(exc)) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise EngineUnavailable(f"cannot reach the docker engine: {exc}") from exc
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc


def _explain(exc) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)
