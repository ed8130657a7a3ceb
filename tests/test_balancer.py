"""The bus behind the balancer it ships: Debian's HAProxy running `docker/haproxy.cfg` (rendered for loopback by
tests/balancer.py) in front of two `collab-bus api` nodes on one PostgreSQL database and one Redis, with two workers
and beat (tests/failover.py's Cluster). SDK agents talk only to the balancer.

Each fault test (the faults are tests/failover_faults.py's, bench/failover.py runs the same) counts what the senders
sent, what the receiver handled, what was lost, handled twice and recovered (a send that took more than one attempt,
handled exactly once), and how many `collaborate_with` requests were answered; it prints the longest gap between two
consecutive handled messages (nothing asserts a timing).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.balancer import HAProxy
from tests.failover import NODES, Cluster, per_node, run_fault
from tests.failover_faults import FAULTS
from tests.sentinel import SentinelCluster
from tests.servers import bus_client, wait_for, ws_connect


@pytest.fixture(scope="module")
def cluster(postgres_server):
    """HAProxy in front of API nodes `api` and `api2` (TRUSTED_PROXIES=1, as the shipped file says), two workers and
    beat, on a PostgreSQL database of its own and a Redis of its own."""
    made = Cluster(postgres_server)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(scope="module")
def sentinel_cluster(postgres_server):
    """The same cluster on Redis behind Sentinel (tests/sentinel.py: a master, a replica, three sentinels): every
    bus process reaches Redis through `REDIS_URL=sentinel://…`."""
    made = Cluster(postgres_server, SentinelCluster())
    try:
        yield made
    finally:
        made.cleanup()


def _register(http: httpx.Client, *sandboxes: str) -> None:
    for sandbox in sandboxes:
        answer = http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
        assert answer.status_code in (200, 201), answer.text


# ------------------------------------------------------------------------------------------ a: the plain paths

def test_requests_reach_both_nodes_and_a_mailbox_socket_works_through_the_balancer(cluster):
    """Concurrent calls through the balancer are spread over both nodes (each node's own count of accepted messages
    rises); a mailbox socket opened through it gets its entries and its ACKs reach the bus."""
    bus, haproxy = cluster.bus, cluster.haproxy
    tag = uuid.uuid4().hex[:6]
    sender, recipient = f"a-s-{tag}", f"a-r-{tag}"
    before = per_node(bus, "collab_bus_messages_accepted_total")
    with bus_client(haproxy.url, timeout=10) as http:
        _register(http, sender, recipient)
        ws = ws_connect(f"{haproxy.ws_url}/ws/sandboxes/{recipient}?since=0", open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        # Eight at a time: by leastconn, one call at a time would all go to the node without the socket.
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda n: _send(http, sender, recipient, n, "request"), range(40)))
        frames = [_next_message(ws) for _ in ids]  # four delivery threads: in the mailbox in any order
        for frame in frames:
            ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
        assert sorted(frame["seq"] for frame in frames) == list(range(1, 41))
        assert {frame["message"]["message_id"] for frame in frames} == set(ids)
        wait_for(lambda: _states(http, recipient) == {"acked"}, 30, "every entry to be acknowledged")
        ws.close()
    accepted = {node: count - before[node]
                for node, count in per_node(bus, "collab_bus_messages_accepted_total").items()}
    print(f"\n[balancer] 40 sends through HAProxy, accepted per node: {accepted}; HAProxy's sessions per node: "
          f"{ {name: row['stot'] for name, row in haproxy.servers().items()} }")
    assert sum(accepted.values()) == 40 and all(accepted.values()), accepted


def _send(http: httpx.Client, sender: str, recipient: str, n: int, message_type: str = "notification") -> str:
    answer = http.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "t",
                                                 "message_type": message_type, "content": {"n": n}})
    assert answer.status_code == 202, answer.text
    return answer.json()["message_id"]


def _next_message(ws) -> dict:
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame["type"] == "message":
            return frame


def _states(http: httpx.Client, sandbox: str) -> set[str]:
    page = http.get(f"/api/v1/sandboxes/{sandbox}/messages", params={"since": 0, "limit": 1000}).json()
    return {entry["state"] for entry in page["entries"]}


@pytest.mark.parametrize("tunnel", [True, False], ids=["shipped", "without-timeout-tunnel"])
def test_an_idle_socket_outlives_the_client_timeout_because_of_timeout_tunnel(cluster, tunnel):
    """A balancer from the shipped file with client and server timeouts of 1 s: a mailbox socket idle for 3 s (no
    pings: the bus pings every 25 s, this client never) still carries frames both ways, because upgraded
    connections obey `timeout tunnel`. The control, the same file without `timeout tunnel`, cuts it."""
    bus = cluster.bus
    overrides: dict[str, str | None] = {"timeout client": "1s", "timeout server": "1s"}
    if not tunnel:
        overrides["timeout tunnel"] = None
    short = HAProxy({server: bus.api_ports[node] for server, node in NODES.items()}, overrides)
    tag = uuid.uuid4().hex[:6]
    sender, recipient = f"idle-s-{tag}", f"idle-r-{tag}"
    try:
        for server in NODES:
            short.wait_status(server, "UP")
        with bus_client(short.url, timeout=10) as http:
            _register(http, sender, recipient)
            with ws_connect(f"{short.ws_url}/ws/sandboxes/{recipient}?since=0", open_timeout=10,
                            ping_interval=None) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
                closed_after = _idle(ws, 3.0)
                print(f"\n[idle socket, timeout tunnel {'as shipped' if tunnel else 'unset'}] "
                      f"{f'cut after {closed_after:.1f} s' if closed_after else 'open after 3 s idle'}")
                if not tunnel:
                    assert closed_after is not None  # the control: 1 s client/server timeouts cut an idle socket
                    return
                assert closed_after is None
                message_id = _send(http, sender, recipient, 1, "request")
                frame = _next_message(ws)
                assert frame["message"]["message_id"] == message_id
                ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
                wait_for(lambda: _states(http, recipient) == {"acked"}, 30, "the ACK sent after the idle time")
    finally:
        short.cleanup()


def _idle(ws, seconds: float) -> float | None:
    """Wait `seconds` on the socket without sending; the time it was closed after, or None if it stayed open."""
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        try:
            frame = json.loads(ws.recv(timeout=left))
            assert frame["type"] != "message", frame
        except TimeoutError:
            return None
        except ConnectionClosed:
            return time.monotonic() - started
    return None


def test_the_bus_sees_the_address_haproxy_saw_not_one_the_client_claims(cluster):
    """`option forwardfor` with TRUSTED_PROXIES=1: a client on 127.0.0.2 that sends its own X-Forwarded-For is
    audited (a failed authentication) under 127.0.0.2, the address HAProxy saw; not under the one it claimed, nor
    under HAProxy's own 127.0.0.1."""
    target = f"/api/v1/sandboxes/xff-{uuid.uuid4().hex[:6]}"
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=cluster.haproxy.url, transport=transport, timeout=10) as anonymous:
        answer = anonymous.get(target, headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 401, answer.text
    with bus_client(cluster.haproxy.url) as admin:
        def audited() -> list[str]:
            page = admin.get("/api/v1/audit", params={"action": "auth.failed", "limit": 1000}).json()
            return [event["remote_addr"] for event in page["events"] if event["target"] == target]

        addresses = wait_for(audited, 10, f"the failed authentication on {target} in the audit trail")
    assert addresses == ["127.0.0.2"], addresses


# ------------------------------------------------------------------------------------- b, c: faults under load

def test_kill_9_of_the_node_holding_the_receivers_socket(cluster):
    """The node that holds the receiver's socket is killed with SIGKILL mid-stream: the receiver reconnects through
    HAProxy to the other node and resumes from its cursor; senders' calls caught on the dead node are retried by
    the SDK with their idempotency keys. Nothing lost, nothing handled twice, every request answered."""
    result = run_fault(cluster, FAULTS["api-node-kill"])
    result.print()
    result.assert_exactly_once()
    assert result.traffic.reconnects[result.traffic.receiver_agent.sandbox_id] >= 1  # it was on the killed node


@pytest.mark.parametrize("fault", ["rolling-restart", "rolling-restart-drained"],
                         ids=["sigterm", "drain-then-sigterm"])
def test_rolling_restart(cluster, fault):
    """Each node in turn is stopped with SIGTERM (gunicorn's graceful stop), started again, and waited for until
    HAProxy has it UP, under the same traffic: nothing lost, nothing handled twice, every request answered, and
    HAProxy answers no request with an error (a stopping node refuses new connections at once, so HAProxy retries
    them elsewhere). Drained first: the node is first set to drain through the runtime API (no new connection goes
    to it) and back to ready after its restart."""
    result = run_fault(cluster, FAULTS[fault])
    result.print()
    result.assert_exactly_once()
    assert result.watch.counts()["hrsp_5xx"] == 0 and not result.watch.failed_requests(), result.watch.notes()


def test_kill_9_of_a_worker(cluster):
    """Worker `worker` is killed with SIGKILL mid-stream while `worker2` runs on; the tasks it had taken come back
    after REDIS_VISIBILITY_TIMEOUT (5 s in this cluster), those Redis had handed it but it never recorded by the
    outbox sweep (2 s). Nothing lost, nothing handled twice, every request answered."""
    result = run_fault(cluster, FAULTS["worker-kill"])
    result.print()
    result.assert_exactly_once()


def test_plain_redis_restart(cluster):
    """Redis shut down for a second and started again, without persistence, under the same traffic (the outage
    without a balancer is tests/test_broker_outage.py's): the nodes keep accepting into PostgreSQL, what the queue
    lost is enqueued again. Nothing lost, nothing handled twice, every request answered."""
    result = run_fault(cluster, FAULTS["redis-restart"])
    result.print()
    result.assert_exactly_once()
    assert not _refused_for_want_of_a_node(result), result.watch.notes()


@pytest.mark.parametrize("fault", ["sentinel-master-kill", "sentinel-switch"], ids=["kill-master", "manual-failover"])
def test_sentinel_failover(sentinel_cluster, fault):
    """The Redis master behind Sentinel is killed (SIGKILL), or switched over by hand (`SENTINEL FAILOVER`, the
    former master alive until the sentinels convert it), under the same traffic through the balancer: every node,
    worker and beat follows the sentinels to the new master. Nothing lost, nothing handled twice, every request
    answered, and no request refused by HAProxy for want of a ready node."""
    result = run_fault(sentinel_cluster, FAULTS[fault])
    result.print()
    result.assert_exactly_once()
    alive = [line for _, _, line in result.watch.requests() if " bus_api_alive/" in line]
    print(f"[{fault}] requests HAProxy sent to the nodes alive while none was ready: {len(alive)}")
    assert not _refused_for_want_of_a_node(result), result.watch.notes()


def _refused_for_want_of_a_node(result) -> list[str]:
    """Requests HAProxy failed other than those it cut itself when their node left the ready pool (termination
    state D: `on-marked-down shutdown-sessions`, which the SDK retries with the same key). While no node is ready
    (their /readyz name the broker they share), it must send requests to the nodes alive, not answer 503."""
    cut = [line for status, state, line in result.watch.requests() if state.startswith("D")]
    print(f"requests HAProxy cut when their node left the ready pool: {len(cut)}")
    return [line for status, state, line in result.watch.requests()
            if (status >= 500 or status < 0) and not state.startswith("D")]
