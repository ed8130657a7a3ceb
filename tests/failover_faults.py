"""The faults tests/failover.py runs under SDK traffic: each is one coroutine `inject(cluster, traffic) -> notes`
wrapped in a `Fault` with its name, and listed in FAULTS (bench/failover.py runs them in that order, the tests pick
theirs by name). A new fault is one more such function and one more entry; one that needs another kind of broker
server names it in `Fault(broker=...)` and bench/failover.py's BROKERS says how to start that server.

`run_fault` restores the cluster after each fault (every API node UP, every worker running), so a fault need not
undo what it did; Redis it must start again itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import redis

from tests.balancer import BACKEND
from tests.failover import NODES, VISIBILITY_TIMEOUT, WORKERS, Cluster, Fault
from tests.failover_traffic import Traffic

TRAFFIC_AFTER = 3  # s of traffic on what survived a fault before the cluster is whole again
HUNG = 1  # s a worker hangs (SIGSTOP) before it is killed


async def kill_api_node(cluster: Cluster, traffic: Traffic) -> list[str]:
    """SIGKILL of the API node holding the receiver's socket: the receiver reconnects through HAProxy to the other
    node and resumes from its cursor; calls caught on the dead node are retried with their idempotency keys."""
    node, killed_at = traffic.receiver_node, time.monotonic()
    await asyncio.to_thread(cluster.bus.stop_api, node, signal.SIGKILL)
    await asyncio.to_thread(cluster.haproxy.wait_status, cluster.server(node), "DOWN")
    down = time.monotonic() - killed_at
    await asyncio.sleep(TRAFFIC_AFTER)
    return [f"killed {node}; HAProxy had it DOWN after {down:.1f}s, then {TRAFFIC_AFTER} s of traffic on the other"]


def rolling_restart(drain: bool):
    """Each node in turn stopped with SIGTERM (gunicorn's graceful stop), started again and waited for until
    HAProxy has it UP. With `drain`, the shipped file's gentlest procedure: set to drain through HAProxy's runtime
    API first (no new connection goes to it), back to ready after its restart."""

    async def restart(cluster: Cluster, traffic: Traffic) -> list[str]:
        notes = []
        for server, node in NODES.items():
            stopped_at = time.monotonic()
            await asyncio.to_thread(_restart_node, cluster, server, node, drain)
            notes.append(f"{node}: {'drain, ' if drain else ''}SIGTERM to UP again in HAProxy "
                         f"{time.monotonic() - stopped_at:.1f}s")
        return notes

    return restart


def _restart_node(cluster: Cluster, server: str, node: str, drain: bool) -> None:
    if drain:
        cluster.haproxy.runtime(f"set server {BACKEND}/{server} state drain")
    cluster.bus.restart_api(node, signal.SIGTERM)
    if drain:
        cluster.haproxy.runtime(f"set server {BACKEND}/{server} state ready")
    cluster.haproxy.wait_status(server, "UP")


async def kill_worker(cluster: Cluster, traffic: Traffic) -> list[str]:
    """Celery worker `worker` (`collab-bus worker -c 4`) hangs (SIGSTOP) at a moment it holds unfinished tasks, stays
    hung HUNG s and is killed with SIGKILL, while `worker2` runs on. Hung first so the kill surely strands work: a
    plain SIGKILL between two tasks (a few ms each, 40 a second) mostly finds the worker holding none. What it had
    taken and not acknowledged (tasks are acknowledged late), Redis gives to worker2 after REDIS_VISIBILITY_TIMEOUT
    (5 s in the cluster, 3600 s by default); a task Redis had handed it (its pending BRPOP) but it never recorded is
    gone from Redis, and the outbox sweep enqueues that message again (2 s). The killed worker is started again
    after the visibility timeout and a bit."""
    (victim, survivor), swept = WORKERS, _swept(cluster)
    stranded = await asyncio.to_thread(_hang, cluster, victim)
    await asyncio.sleep(HUNG)
    await asyncio.to_thread(cluster.bus.kill_worker, victim, signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.sleep(VISIBILITY_TIMEOUT + TRAFFIC_AFTER)
    rerun = stranded & _task_ids(cluster, survivor, "succeeded")
    await asyncio.to_thread(cluster.bus.start_worker, victim)
    return [f"{victim} hung {HUNG} s, then SIGKILL: it held {len(stranded)} tasks unfinished and unacknowledged, "
            f"{len(rerun)} of them rerun by {survivor} since; {survivor} alone for "
            f"{time.monotonic() - killed_at:.1f}s, then {victim} started again",
            f"messages the outbox sweep enqueued again meanwhile (their task lost with the worker): "
            f"{_swept(cluster) - swept}"]


def _hang(cluster: Cluster, worker: str, tries: float = 10) -> set[str]:
    """SIGSTOP `worker` at a moment it holds unfinished tasks (frozen, checked, let go on, for up to `tries` s; then
    frozen anyway); the ids of the tasks it holds."""
    pid, deadline = cluster.bus.workers[worker].pid, time.monotonic() + tries
    while True:
        os.killpg(pid, signal.SIGSTOP)
        held = _stranded(cluster, worker)
        if held or time.monotonic() > deadline:
            return held
        os.killpg(pid, signal.SIGCONT)
        time.sleep(0.05)


def _stranded(cluster: Cluster, worker: str) -> set[str]:
    """Ids of the tasks Redis holds as taken and not acknowledged (kombu's `unacked` hash) that `worker`'s log
    shows received and not finished."""
    client = redis.Redis.from_url(cluster.bus.env["REDIS_URL"])
    try:
        unacked = {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}
    finally:
        client.close()
    return unacked & (_task_ids(cluster, worker, "received") - _task_ids(cluster, worker, "succeeded"))


def _task_ids(cluster: Cluster, worker: str, what: str) -> set[str]:
    """Ids of the delivery tasks `worker`'s log says were `received` / `succeeded`."""
    return {line.split("deliver[", 1)[1].split("]", 1)[0] for line in _log(cluster, worker)
            if "workers.delivery.deliver[" in line and f"] {what}" in line}


def _log(cluster: Cluster, worker: str) -> list[str]:
    path = cluster.bus.dir / f"{worker}.log"
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _swept(cluster: Cluster) -> int:
    """How many messages the outbox sweep re-enqueued, by the workers' logs so far."""
    return sum(int(line.split("re-enqueued ")[1].split()[0]) for worker in WORKERS for line in _log(cluster, worker)
               if "outbox sweep:" in line and "re-enqueued " in line)


async def restart_redis(cluster: Cluster, traffic: Traffic) -> list[str]:
    """A plain Redis restart (SHUTDOWN NOSAVE, down 1 s, started again, no persistence): queued tasks, the unacked
    set and the shared event log are gone; the API nodes keep accepting into PostgreSQL and enqueue what the
    broker refused once it is back, the outbox sweep enqueues what was accepted but lost with the queue, and the
    workers and the nodes' fanout listeners reconnect."""
    stopped_at = time.monotonic()
    await asyncio.to_thread(cluster.redis.stop)
    await asyncio.sleep(1)
    await asyncio.to_thread(cluster.redis.start)
    down = time.monotonic() - stopped_at
    await asyncio.sleep(TRAFFIC_AFTER)
    return [f"Redis down {down:.1f}s (no persistence: queues lost), then {TRAFFIC_AFTER} s of traffic"]


async def kill_sentinel_master(cluster: Cluster, traffic: Traffic) -> list[str]:
    """SIGKILL of the Redis master behind Sentinel (tests/sentinel.py): the sentinels find it down (2 s) and promote
    the replica; every process asks them again and reconnects to it. Tasks the master had not yet replicated are
    gone with it: a worker that reconnects has the outbox swept at once. The killed server comes back as a
    replica."""
    killed, elected = await asyncio.to_thread(cluster.redis.kill_master)
    await asyncio.sleep(TRAFFIC_AFTER)
    await asyncio.to_thread(cluster.redis.restart, killed)
    return [f"master :{killed.port} killed; the sentinels named the replica after {elected:.1f}s; "
            f"{TRAFFIC_AFTER} s of traffic on it, then :{killed.port} back as its replica"]


async def switch_sentinel_master(cluster: Cluster, traffic: Traffic) -> list[str]:
    """A manual `SENTINEL FAILOVER`: the replica is promoted while the master lives on, a second master until the
    sentinels convert it to a replica (about 10 s later, closing its clients' connections)."""
    former = await asyncio.to_thread(cluster.redis.master_port)
    promoted, took = await asyncio.to_thread(cluster.redis.failover)
    converted = await asyncio.to_thread(cluster.redis.wait_demoted, former)
    await asyncio.sleep(TRAFFIC_AFTER)
    return [f"manual failover from :{former} to :{promoted} in {took:.1f}s; :{former} converted to a replica "
            f"{converted:.1f}s later"]


FAULTS = {fault.name: fault for fault in (
    Fault("api-node-kill", kill_api_node),
    Fault("rolling-restart", rolling_restart(drain=False)),
    Fault("rolling-restart-drained", rolling_restart(drain=True)),
    Fault("worker-kill", kill_worker),
    Fault("redis-restart", restart_redis),
    Fault("sentinel-master-kill", kill_sentinel_master, broker="sentinel"),
    Fault("sentinel-switch", switch_sentinel_master, broker="sentinel"),
)}
