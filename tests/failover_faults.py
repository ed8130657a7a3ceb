"""The faults tests/failover.py runs under SDK traffic: each is one coroutine `inject(cluster, traffic) -> notes`
wrapped in a `Fault` with its name, and listed in FAULTS (bench/failover.py runs them in that order, the tests pick
theirs by name). A new fault is one more such function and one more entry; one that needs another kind of broker
server names it in `Fault(broker=...)` and tests/failover.py's BROKERS says how to start that server.

`run_fault` restores the cluster after each fault (every API node UP, every worker running, every NATS server
running), so a fault need not undo what it did; Redis it must start again itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import nats
import nats.errors
import redis

from app.brokers._nats_loop import stream_name
from tests.balancer import BACKEND
from tests.failover import NODES, VISIBILITY_TIMEOUT, WORKERS, Cluster, Fault
from tests.failover_traffic import Traffic

TRAFFIC_AFTER = 3  # s of traffic on what survived a fault before the cluster is whole again
HUNG = 1  # s a worker hangs (SIGSTOP) before it is killed
ELECTION = 30  # s a NATS stream may take to elect a leader, a restarted server to be current again (else an error)


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


# ------------------------------------------------------------------ NATS JetStream: three servers, every stream R3

async def kill_nats_server(cluster: Cluster, traffic: Traffic) -> list[str]:
    """SIGKILL of the NATS server leading the bus's `delivery` stream (one of three; every stream of the bus R3): the
    two left elect new leaders for the streams it led, the processes connected to it reconnect to another server of
    NATS_URL. TRAFFIC_AFTER s of traffic on two servers, then it is started again and waited for until it is current
    in every stream of the bus and their consumers."""
    leader = await _leader(cluster, _delivery(cluster))
    victim = next(server for server in cluster.broker.servers if _name(server) == leader)
    return await _kill_and_restart(cluster, victim, f"leader of {_delivery(cluster)}")


async def kill_each_nats_server(cluster: Cluster, traffic: Traffic) -> list[str]:
    """Each NATS server in turn SIGKILLed, TRAFFIC_AFTER s of traffic on the other two, started again and waited for
    until it is current in every stream: so every server an API node, a worker or beat is connected to goes down
    once under it (the notes name the processes connected to each)."""
    notes = []
    for server in cluster.broker.servers:
        notes += await _kill_and_restart(cluster, server, "in turn")
    return notes


async def step_down_nats_leader(cluster: Cluster, traffic: Traffic) -> list[str]:
    """A leader step-down of the bus's `delivery` stream (JetStream API `$JS.API.STREAM.LEADER.STEPDOWN.<stream>`),
    nothing crashes: the stream elects another of its three servers while the API nodes publish to it."""
    stream, started = _delivery(cluster), time.monotonic()
    before = await _leader(cluster, stream)
    consumer_before = await _leader(cluster, stream, consumer=True)

    async def step_down(nc, js):
        return json.loads((await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)).data)

    answer = await _ask_nats(cluster, step_down)
    if not answer.get("success"):
        raise RuntimeError(f"step-down of {stream} refused: {answer}")
    after, took = await _wait_leader(cluster, stream, started, not_on=before)
    await asyncio.sleep(TRAFFIC_AFTER)
    return [f"{stream} leader {before} stepped down; {after} leads it {took:.1f}s after the request; its consumer's "
            f"leader {consumer_before} before, {await _leader(cluster, stream, consumer=True)} after; "
            f"{TRAFFIC_AFTER} s of traffic"]


async def _kill_and_restart(cluster: Cluster, victim, why: str) -> list[str]:
    stream, name = _delivery(cluster), _name(victim)
    connected = await asyncio.to_thread(nats_connections, cluster)
    killed_at = time.monotonic()
    await asyncio.to_thread(victim.kill, signal.SIGKILL)
    leader, elected = await _wait_leader(cluster, stream, killed_at, not_on=name)
    await asyncio.sleep(TRAFFIC_AFTER)
    await asyncio.to_thread(victim.start)
    started_at = time.monotonic()
    await _wait_caught_up(cluster)
    return [f"SIGKILL of NATS server {name} (:{victim.port}, {why}; bus processes connected to it: "
            f"{', '.join(connected.get(victim.port, [])) or 'none'}): {stream} led by {leader} {elected:.1f}s later; "
            f"down {started_at - killed_at:.1f}s, current again in every stream {time.monotonic() - started_at:.1f}s "
            f"after its restart"]


def _name(server) -> str:
    """A tests/nats_server.py server's `server_name` (JetStream names leaders and peers by it)."""
    return server.config.read_text().split('server_name: "', 1)[1].split('"', 1)[0]


def _delivery(cluster: Cluster) -> str:
    """The JetStream stream of the bus's `delivery` queue."""
    return stream_name(cluster.bus.env["NATS_PREFIX"], "delivery")


async def _ask_nats(cluster: Cluster, question):
    """`await question(client, jetstream)` on a client of its own connected to a running server of the cluster."""
    servers = [server.url for server in cluster.broker.servers if server.process and server.process.poll() is None]
    nc = await nats.connect(servers=servers, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        return await question(nc, nc.jetstream(timeout=2))
    finally:
        await nc.close()


async def _leader(cluster: Cluster, stream: str, consumer: bool = False) -> str | None:
    """The server leading `stream` (or its consumer), None while it has none (an election)."""
    async def leader(nc, js):
        info = await (js.consumer_info(stream, stream) if consumer else js.stream_info(stream))
        return info.cluster.leader if info.cluster else None

    try:
        return await _ask_nats(cluster, leader)
    except (nats.errors.Error, OSError):
        return None


async def _wait_leader(cluster: Cluster, stream: str, since: float, not_on: str | None) -> tuple[str, float]:
    """Wait until a server other than `not_on` leads `stream`; it and the seconds since `since`."""
    while (leader := await _leader(cluster, stream)) in (None, not_on):
        if time.monotonic() - since > ELECTION:
            raise TimeoutError(f"no leader of {stream} but {not_on} after {ELECTION} s")
        await asyncio.sleep(0.1)
    return leader, time.monotonic() - since


async def _wait_caught_up(cluster: Cluster) -> None:
    """Wait until every stream of the bus and every consumer of them has a leader and all its replicas current."""
    prefix, since = cluster.bus.env["NATS_PREFIX"], time.monotonic()

    async def behind(nc, js):
        late = []
        for stream in await js.streams_info():
            if prefix not in stream.config.name:
                continue
            groups = [(stream.config.name, stream.cluster, stream.config.num_replicas)]
            groups += [(f"{stream.config.name}/{consumer.name}", consumer.cluster, stream.config.num_replicas)
                       for consumer in await js.consumers_info(stream.config.name)]
            late += [what for what, group, replicas in groups if not group or not group.leader
                     or len(group.replicas or []) < replicas - 1
                     or any(not peer.current or peer.offline for peer in group.replicas or [])]
        return late

    late: list[str] | str = ["?"]
    while late:
        try:
            late = await _ask_nats(cluster, behind)
        except (nats.errors.Error, OSError) as exc:
            late = f"{type(exc).__name__}: {exc}"
        if late and time.monotonic() - since > ELECTION:
            raise TimeoutError(f"not current again after {ELECTION} s: {late}")
        await asyncio.sleep(0.2 if late else 0)


def nats_connections(cluster: Cluster) -> dict[int, list[str]]:
    """NATS client port -> the bus processes (api, api2, worker, worker2, beat) holding a TCP connection to it now:
    each process's session (its children included: they were started in sessions of their own) and the inodes of
    their sockets, looked up in /proc/net/tcp."""
    bus, ports = cluster.bus, {server.port for server in cluster.broker.servers}
    named = {**bus.apis, **bus.workers}
    named.update(("beat", proc) for proc in bus.processes if proc not in named.values())  # the one left
    sessions: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                sessions.setdefault(int(fields[3]), []).append(int(entry.name))
    remote = {}  # socket inode -> remote port, of established connections to a NATS server
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cells = line.split()
        if cells[3] == "01" and int(cells[2].split(":")[1], 16) in ports:
            remote[cells[9]] = int(cells[2].split(":")[1], 16)
    found: dict[int, list[str]] = {}
    for name, proc in sorted(named.items()):
        for port in sorted({remote[inode] for pid in sessions.get(proc.pid, []) for inode in _sockets(pid)
                            if inode in remote}):
            found.setdefault(port, []).append(name)
    return found


def _sockets(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


FAULTS = {fault.name: fault for fault in (
    Fault("api-node-kill", kill_api_node),
    Fault("rolling-restart", rolling_restart(drain=False)),
    Fault("rolling-restart-drained", rolling_restart(drain=True)),
    Fault("worker-kill", kill_worker),
    Fault("redis-restart", restart_redis),
    Fault("sentinel-master-kill", kill_sentinel_master, broker="sentinel"),
    Fault("sentinel-switch", switch_sentinel_master, broker="sentinel"),
    Fault("nats-server-kill", kill_nats_server, broker="nats"),
    Fault("nats-servers-kill-each", kill_each_nats_server, broker="nats"),
    Fault("nats-leader-stepdown", step_down_nats_leader, broker="nats"),
)}
