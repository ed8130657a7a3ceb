"""Operations: /readyz follows the broker, /metrics parses and its counters move with real traffic."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import BusProcess, RedisServer, bus_client, free_port, free_ports, wait_for, ws_connect

RECV_TIMEOUT = 10


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page, parsed by prometheus_client: {(name, sorted labels): value}."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_readyz_and_the_broker_gauge_name_the_broker_while_redis_is_down_and_recover():
    redis = RedisServer()
    bus = BusProcess("redis", redis_url=redis.url)
    try:
        ready = httpx.get(f"{bus.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"status": "ready",
                                                             "checks": {"database": "ok", "broker": "ok"}}
        assert value(scrape(bus.url), "collab_bus_broker_up") == 1
        redis.stop()
        assert value(scrape(bus.url), "collab_bus_broker_up") == 0  # what CollabBusBrokerUnreachable watches
        down = httpx.get(f"{bus.url}/readyz", timeout=30)
        assert down.status_code == 503, down.text
        error = down.json()["error"]
        assert error["code"] == "not_ready" and error["message"] == "broker unreachable"
        assert error["details"]["database"] == "ok" and error["details"]["broker"] != "ok"
        assert httpx.get(f"{bus.url}/healthz", timeout=10).status_code == 200  # alive, just not ready
        redis.start()
        wait_for(lambda: httpx.get(f"{bus.url}/readyz", timeout=10).status_code == 200, 30, "ready again")
        assert value(scrape(bus.url), "collab_bus_broker_up") == 1
    finally:
        bus.cleanup()
        redis.cleanup()


def test_metrics_parse_and_move_with_sends_acks_and_dead_letters():
    bus = BusProcess("embedded")
    try:
        sender, receiver = f"sender-{uuid.uuid4().hex[:6]}", f"receiver-{uuid.uuid4().hex[:6]}"
        before = scrape(bus.url)
        with bus_client(bus.url) as http:
            for sandbox in (sender, receiver):
                assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
            with ws_connect(f"{bus.ws_url}/ws/sandboxes/{receiver}") as ws:
                assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
                for message_type in ("request", "notification"):
                    assert http.post("/api/v1/messages", json={
                        "from_sandbox": sender, "to_sandbox": receiver, "from_agent": "a",
                        "message_type": message_type, "content": {"n": 1}}).status_code == 202
                frames = [json.loads(ws.recv(timeout=RECV_TIMEOUT)) for _ in range(2)]
                assert [f["seq"] for f in frames] == [1, 2]
                open_sockets = value(scrape(bus.url), "collab_bus_open_websockets")
                ws.send(json.dumps({"type": "ack", "seq": 1}))
                ws.send(json.dumps({"type": "nack", "seq": 2, "reason": "cannot"}))
                ws.send(json.dumps({"type": "ping"}))
                assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "pong"  # both handled before the pong
        after = scrape(bus.url)
    finally:
        bus.cleanup()
    moved = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    assert value(moved, "collab_bus_messages_accepted_total", message_type="request") == 1
    assert value(moved, "collab_bus_messages_accepted_total", message_type="notification") == 1
    assert value(moved, "collab_bus_entries_delivered_total", message_type="request") == 1
    assert value(moved, "collab_bus_entries_acked_total") == 1
    assert value(moved, "collab_bus_ack_latency_seconds_count") == 1
    assert value(moved, "collab_bus_dead_letters_total", reason="nacked") == 1
    assert value(moved, "collab_bus_delivery_latency_seconds_count") == 2
    assert open_sockets >= 1
    assert value(after, "collab_bus_sandboxes", status="offline") >= 2


def test_a_worker_serves_its_own_metrics(redis_server):
    port = free_port()
    bus = BusProcess("redis", redis_url=redis_server.url, extra_env={"WORKER_METRICS_PORT": str(port)})
    try:
        worker_url = f"http://127.0.0.1:{port}"
        before = value(scrape(worker_url), "collab_bus_entries_delivered_total", message_type="notification")
        with bus_client(bus.url) as http:
            sandbox = f"solo-{uuid.uuid4().hex[:6]}"
            http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
            note = {"from_sandbox": "ops", "to_sandbox": sandbox, "from_agent": "a", "message_type": "notification",
                    "content": {}}
            assert http.post("/api/v1/messages", json=note).status_code == 202
        wait_for(lambda: value(scrape(worker_url), "collab_bus_entries_delivered_total",
                               message_type="notification") == before + 1, 20, "the worker's delivery counter")
        api = scrape(bus.url)
        assert value(api, "collab_bus_messages_accepted_total", message_type="notification") >= 1
        assert ("collab_bus_queue_depth", (("queue", "delivery"),)) in api  # read from Redis at scrape time
    finally:
        bus.cleanup()


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_worker_metrics_listen_on_loopback_unless_told_otherwise(redis_server):
    """127.0.0.2 is a loopback address too: a worker listening on every interface answers there."""
    default_port, chosen_port = free_ports(2)
    bus = BusProcess("redis", redis_url=redis_server.url, extra_env={"WORKER_METRICS_PORT": str(default_port)})
    try:
        assert _listens("127.0.0.1", default_port) and not _listens("127.0.0.2", default_port)
        assert f"metrics on http://127.0.0.1:{default_port}/metrics" in (bus.dir / "worker.log").read_text()
        bus.env.update(WORKER_METRICS_PORT=str(chosen_port), WORKER_METRICS_HOST="127.0.0.2")
        bus.start_worker("worker2")
        assert _listens("127.0.0.2", chosen_port) and not _listens("127.0.0.1", chosen_port)
        assert f"metrics on http://127.0.0.2:{chosen_port}/metrics" in (bus.dir / "worker2.log").read_text()
        samples = scrape(f"http://127.0.0.2:{chosen_port}")
        assert value(samples, "process_resident_memory_bytes") > 0  # the process collector is on the registry
    finally:
        bus.cleanup()


def _api_processes(bus: BusProcess) -> list[int]:
    """The gunicorn worker processes (children of the `collab-bus api` master) of `bus`."""
    master = bus.apis["api"].pid
    return [int(pid) for pid in open(f"/proc/{master}/task/{master}/children").read().split()]


def _still_open(ws) -> bool:
    """The socket answers a ping (event frames of late deliveries may come first)."""
    try:
        ws.send(json.dumps({"type": "ping"}))
        while json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] != "pong":
            pass
        return True
    except Exception:  # closed: its process was killed
        return False


def test_an_api_of_two_processes_reports_whole_totals_on_every_scrape(redis_server):
    """Each scrape reaches one of the API's processes; each must report the totals of all of them: messages
    accepted by either, sockets open on either, and process metrics."""
    messages, sockets = 12, 6
    bus = BusProcess("redis", redis_url=redis_server.url, extra_env={"API_WORKERS": "2"})
    try:
        assert len(wait_for(lambda: len(_api_processes(bus)) == 2 and _api_processes(bus), 30, "two processes")) == 2
        sandbox = f"multi-{uuid.uuid4().hex[:6]}"
        message = {"from_sandbox": "ops", "to_sandbox": sandbox, "from_agent": "a", "message_type": "notification",
                   "content": {}}
        with bus_client(bus.url) as http:
            assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
        for _ in range(messages):  # one connection each: the two processes take turns accepting them
            with bus_client(bus.url) as http:
                assert http.post("/api/v1/messages", json=message).status_code == 202
        with contextlib.ExitStack() as stack:
            open_sockets = [stack.enter_context(ws_connect(f"{bus.ws_url}/ws/events")) for _ in range(sockets)]
            for ws in open_sockets:
                assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
            scrapes = [scrape(bus.url) for _ in range(10)]  # each on a fresh connection
            assert [value(s, "collab_bus_messages_accepted_total", message_type="notification")
                    for s in scrapes] == [messages] * 10
            assert [value(s, "collab_bus_open_websockets") for s in scrapes] == [sockets] * 10
            assert all(value(s, "process_resident_memory_bytes") > 0 and value(s, "process_start_time_seconds") > 0
                       for s in scrapes)

            os.kill(_api_processes(bus)[0], signal.SIGKILL)  # gunicorn starts another; its sockets are gone
            survivors = sum(_still_open(ws) for ws in open_sockets)

            def every_scrape_counts_the_survivors() -> bool:
                return all(value(scrape(bus.url), "collab_bus_open_websockets") == survivors for _ in range(6))

            wait_for(every_scrape_counts_the_survivors, 30, f"{survivors} open sockets on every scrape")
            assert [value(scrape(bus.url), "collab_bus_messages_accepted_total", message_type="notification")
                    for _ in range(6)] == [messages] * 6  # what the killed process counted still counts
    finally:
        bus.cleanup()


def test_an_operators_metrics_directory_serves_the_api_only(redis_server, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR set by the operator: the API's processes share it (emptied of an earlier run's
    files first); a worker, one process, keeps its metrics to itself and serves them."""
    shared, port = tmp_path / "metrics", free_port()
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left by an earlier run")
    bus = BusProcess("redis", redis_url=redis_server.url,
                     extra_env={"PROMETHEUS_MULTIPROC_DIR": str(shared), "WORKER_METRICS_PORT": str(port)})
    try:
        with bus_client(bus.url) as http:
            sandbox = f"shared-{uuid.uuid4().hex[:6]}"
            http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
            note = {"from_sandbox": "ops", "to_sandbox": sandbox, "from_agent": "a", "message_type": "notification",
                    "content": {}}
            assert http.post("/api/v1/messages", json=note).status_code == 202
        wait_for(lambda: value(scrape(f"http://127.0.0.1:{port}"), "collab_bus_entries_delivered_total",
                               message_type="notification") == 1, 20, "the worker's own delivery counter")
        assert value(scrape(bus.url), "collab_bus_messages_accepted_total", message_type="notification") == 1
        writers = {int(path.stem.rsplit("_", 1)[1]) for path in shared.glob("*.db")}
        assert writers and writers <= set(_api_processes(bus))  # neither the stale file nor the worker's
        assert "PROMETHEUS_MULTIPROC_DIR ignored" in (bus.dir / "worker.log").read_text()
    finally:
        bus.cleanup()


def test_json_logs_carry_one_line_per_state_change_with_the_message_context():
    bus = BusProcess("embedded", extra_env={"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"})
    try:
        sandbox = f"logged-{uuid.uuid4().hex[:6]}"
        with bus_client(bus.url) as http:
            http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
            with ws_connect(f"{bus.ws_url}/ws/sandboxes/{sandbox}") as ws:
                assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
                message_id = http.post("/api/v1/messages", json={
                    "from_sandbox": "ops", "to_sandbox": sandbox, "from_agent": "a", "message_type": "request",
                    "correlation_id": "job-7", "content": {}}).json()["message_id"]
                assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["seq"] == 1
                ws.send(json.dumps({"type": "ack", "seq": 1}))
                ws.send(json.dumps({"type": "ping"}))
                json.loads(ws.recv(timeout=RECV_TIMEOUT))

        def states() -> dict[str, dict]:
            lines = (bus.dir / "up.log").read_text().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            return {r["state"]: r for r in records if r.get("message_id") == message_id and "state" in r}

        wait_for(lambda: {"accepted", "delivered", "acked"} <= set(states()), 10, "the three state lines")
        found = states()
    finally:
        bus.cleanup()
    assert found["delivered"]["sandbox_id"] == sandbox and found["delivered"]["seq"] == 1
    assert found["delivered"]["correlation_id"] == "job-7" and found["accepted"]["correlation_id"] == "job-7"
    assert {"time", "level", "logger", "message"} <= set(found["acked"])
