"""Stock Celery tools pointed at the broker URL alone, against a real bus on Redis: Flower, `celery inspect`,
`celery control` and `celery events`, run from a virtualenv of their own (Flower and Celery from PyPI, nothing
of the bus), as an operator's Flower container runs them. None of them may break inspection for the bus's own
`celery -A workers.celery_app inspect ping`."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import BIN, REPO, BusProcess, bus_client, end_process_group, free_port, wait_for

TOOLS_VENV = Path(os.environ.get("COLLAB_BUS_TOOLS_VENV",
                                 Path.home() / ".cache" / "collab-bus-test" / "flower-venv"))
TOOLS_REQUIREMENTS = ["flower", "celery[redis]"]


def _tools_venv() -> Path:
    """A virtualenv with Flower and Celery from PyPI (TOOLS_VENV), created once and reused; fails the test, with
    pip's output, when they cannot be installed."""
    TOOLS_VENV.parent.mkdir(parents=True, exist_ok=True)
    ready = TOOLS_VENV / ".installed"
    with open(TOOLS_VENV.parent / f"{TOOLS_VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test runs in parallel build it once
        if ready.exists():
            return TOOLS_VENV
        shutil.rmtree(TOOLS_VENV, ignore_errors=True)
        steps = [[sys.executable, "-m", "venv", str(TOOLS_VENV)],
                 [str(TOOLS_VENV / "bin" / "pip"), "install", "--disable-pip-version-check", *TOOLS_REQUIREMENTS]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.fail(f"cannot install the stock Celery tools ({' '.join(step)}), exit {done.returncode}:\n"
                            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}", pytrace=False)
        ready.write_text(" ".join(TOOLS_REQUIREMENTS) + "\n")
        return TOOLS_VENV


@pytest.fixture(scope="module")
def tools():
    """The bin directory of the stock tools' virtualenv."""
    return _tools_venv() / "bin"


@pytest.fixture(scope="module")
def bus(redis_server):
    """A bus on Redis (API + `collab-bus worker`, no task events configured) for this module's tools."""
    process = BusProcess("redis", redis_url=redis_server.url)
    yield process
    process.cleanup()


def _tool_env(tmp_path: Path) -> dict:
    """An environment knowing nothing of the bus: no MESSAGE_BACKEND, REDIS_URL, PYTHONPATH."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "FLOWER_UNAUTHENTICATED_API": "true"}


def stock_celery(tools: Path, broker_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`celery --broker=URL ARGS` from the tools' virtualenv, run outside the repository (no app, no celeryconfig)."""
    return subprocess.run([str(tools / "celery"), f"--broker={broker_url}", *args], cwd=tmp_path,
                          env=_tool_env(tmp_path), capture_output=True, text=True, timeout=60)


def project_ping(bus: BusProcess) -> subprocess.CompletedProcess:
    """The bus's own `celery -A workers.celery_app inspect ping`, with the bus's environment."""
    return subprocess.run([str(BIN / "celery"), "-A", "workers.celery_app", "inspect", "ping", "--timeout", "5"],
                          cwd=REPO, env=bus.env, capture_output=True, text=True, timeout=60)


def worker_hostname(bus: BusProcess) -> str:
    """The Celery node name of the bus's worker (BusProcess names it `worker-PORT@host`)."""
    return f"worker-{bus.port}@{os.uname().nodename}"


def send_messages(client: httpx.Client, sender: str, receiver: str, count: int) -> list[str]:
    """Send `count` notifications from `sender` to `receiver`; their message ids."""
    ids = []
    for i in range(count):
        response = client.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": receiver,
                                                         "from_agent": "x", "message_type": "notification",
                                                         "content": {"i": i}, "priority": 1 + i % 9})
        assert response.status_code == 202, response.text
        ids.append(response.json()["message_id"])
    return ids


def assert_project_ping_answers(bus: BusProcess) -> None:
    done = project_ping(bus)
    assert done.returncode == 0 and worker_hostname(bus) in done.stdout, (
        f"celery -A workers.celery_app inspect ping: exit {done.returncode}\n{done.stdout}{done.stderr}\n"
        f"worker log:\n{(bus.dir / 'worker.log').read_text()[-3000:]}")


class Flower:
    """Stock Flower started as its image (mher/flower) runs it: `celery --broker=URL flower`, nothing of the bus."""

    def __init__(self, tools: Path, broker_url: str, tmp_path: Path):
        self.port = free_port()
        self.log_path = tmp_path / "flower.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(tools / "celery"), f"--broker={broker_url}", "flower", f"--port={self.port}",
                 "--address=127.0.0.1"],
                cwd=tmp_path, env=_tool_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        wait_for(self._answers, 60, f"Flower to answer on port {self.port}", interval=0.2)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"flower exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.http.get("/healthcheck").status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, **params) -> dict:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.http.close()
        end_process_group(self.proc)


@pytest.fixture
def flower(tools, bus, tmp_path):
    server = Flower(tools, bus.env["REDIS_URL"], tmp_path)
    yield server
    server.stop()


def test_stock_flower_with_the_broker_url_only_shows_workers_queues_and_tasks(flower, bus, unique):
    hostname = worker_hostname(bus)
    with bus_client(bus.url) as client:
        sender, receiver = unique("sender"), unique("receiver")
        for sandbox in (sender, receiver):
            assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
        send_messages(client, sender, receiver, 3)

        def worker_with_queues():
            workers = flower.get("/api/workers", refresh=1)
            queues = {q["name"] for q in (workers.get(hostname) or {}).get("active_queues") or []}
            return queues if "delivery" in queues else None

        try:
            queues = wait_for(worker_with_queues, 60, f"Flower to list {hostname} with its queues", interval=1)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nflower log:\n{flower.log()}\nworker log:\n"
                                 f"{(bus.dir / 'worker.log').read_text()[-3000:]}") from None
        assert queues >= {"delivery", "lifecycle", "maintenance"}

        # Flower turns task events on by itself (`enable_events` every 5 s, a remote-control broadcast the workers
        # obey): deliveries sent from then on show in /api/tasks, the bus needing no CELERY_TASK_EVENTS.
        sent: list[str] = []

        def deliver_tasks():
            sent.extend(send_messages(client, sender, receiver, 1))
            tasks = flower.get("/api/tasks", taskname="workers.delivery.deliver").values()
            return [t for t in tasks if t.get("state") == "SUCCESS" and t.get("worker") == hostname
                    and any(message_id in str(t.get("args")) for message_id in sent)]

        try:
            wait_for(deliver_tasks, 60, "Flower's /api/tasks to list deliver tasks", interval=1)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nflower log:\n{flower.log()}") from None

    assert_project_ping_answers(bus)  # Flower's reply queues left behind break nothing


def test_stock_celery_inspect_and_control_with_the_broker_url_only(tools, bus, tmp_path):
    url, hostname = bus.env["REDIS_URL"], worker_hostname(bus)
    ping = stock_celery(tools, url, tmp_path, "inspect", "ping", "--timeout", "5")
    assert ping.returncode == 0 and f"{hostname}: OK" in ping.stdout, ping.stdout + ping.stderr
    queues = stock_celery(tools, url, tmp_path, "inspect", "active_queues", "--timeout", "5")
    assert queues.returncode == 0 and hostname in queues.stdout, queues.stdout + queues.stderr
    for queue in ("delivery", "lifecycle", "maintenance"):
        assert f"'name': '{queue}'" in queues.stdout, queues.stdout
    enabled = stock_celery(tools, url, tmp_path, "control", "enable_events", "--timeout", "5")
    assert enabled.returncode == 0 and hostname in enabled.stdout, enabled.stdout + enabled.stderr
    assert_project_ping_answers(bus)


def test_stock_celery_events_dump_shows_the_deliveries(tools, bus, tmp_path, unique):
    url = bus.env["REDIS_URL"]
    log_path = tmp_path / "events.log"
    with open(log_path, "wb") as log:
        events = subprocess.Popen([str(tools / "celery"), f"--broker={url}", "events", "--dump"], cwd=tmp_path,
                                  env=_tool_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        enabled = stock_celery(tools, url, tmp_path, "control", "enable_events", "--timeout", "5")
        assert enabled.returncode == 0, enabled.stdout + enabled.stderr
        with bus_client(bus.url) as client:
            sender, receiver = unique("sender"), unique("receiver")
            for sandbox in (sender, receiver):
                assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201

            def dumped_delivery():
                send_messages(client, sender, receiver, 1)
                text = log_path.read_text(errors="replace")
                return "workers.delivery.deliver" in text and "task succeeded" in text

            wait_for(dumped_delivery, 60, "celery events --dump to show a deliver task", interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nevents output:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    finally:
        os.killpg(events.pid, signal.SIGTERM)
        events.wait(10)
    assert_project_ping_answers(bus)
