"""Operating a bus on NATS with the tools docs/operations.md names: `collab-bus status` (the queue of each stream),
`celery -A workers.celery_app inspect` and `events --dump` over our transport, on the session's nats-server."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.servers import BIN, REPO, BusProcess, bus_client, wait_for
from tests.traffic import register


@pytest.fixture(scope="module")
def nats_bus(nats_server):
    bus = BusProcess("nats", nats_url=nats_server.url, extra_env={"CELERY_TASK_EVENTS": "true"})
    yield bus
    bus.cleanup()


def _run(bus: BusProcess, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], env={**bus.env, "COLLABORATION_BUS_URL": bus.url},
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_collab_bus_status_reports_the_nats_broker_workers_and_queues(nats_bus):
    result = _run(nats_bus, "collab-bus", "status", "--token", nats_bus.env["ADMIN_API_KEY"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nats nats://127.0.0.1:" in result.stdout and "reachable" in result.stdout
    assert "1 answered ping" in result.stdout
    for queue in ("delivery", "lifecycle", "maintenance"):
        assert f"queue {queue}:" in result.stdout


def test_celery_inspect_over_the_nats_transport(nats_bus):
    ping = _run(nats_bus, "celery", "-A", "workers.celery_app", "inspect", "ping")
    assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
    queues = _run(nats_bus, "celery", "-A", "workers.celery_app", "inspect", "active_queues")
    assert queues.returncode == 0 and "'name': 'delivery'" in queues.stdout, queues.stdout + queues.stderr


def test_celery_events_dump_shows_the_deliveries(nats_bus, unique, tmp_path):
    out = tmp_path / "events.txt"
    with open(out, "w") as sink:
        dump = subprocess.Popen([str(BIN / "celery"), "-A", "workers.celery_app", "events", "--dump"],
                                env=nats_bus.env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
    try:
        wait_for(lambda: "heartbeat" in out.read_text() or "worker-" in out.read_text(), 30, "events --dump")
        sender, recipient = unique("s"), unique("r")
        with bus_client(nats_bus.url) as http:
            register(http, sender, recipient)
            sent = http.post("/api/v1/messages", json={
                "from_sandbox": sender, "from_agent": "a", "to_sandbox": recipient, "to_agent": "b",
                "message_type": "notification", "content": {}})
            assert sent.status_code == 202, sent.text
        wait_for(lambda: "task succeeded: workers.delivery.deliver" in out.read_text(), 30,
                 "the delivery's task-succeeded event")
    finally:
        os.killpg(dump.pid, signal.SIGTERM)
        dump.wait(10)
