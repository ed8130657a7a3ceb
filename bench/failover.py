#!/usr/bin/env python3
"""Failover under SDK traffic (issue 25, item 6), in the spirit of Jepsen's RabbitMQ harness: per fault, the
messages sent, handled, lost, handled twice and recovered, the requests answered, and the longest delivery stall;
then the throughput through the balancer with 1 and 2 API nodes.

The cluster is tests/test_balancer.py's (tests/failover.py): Debian's HAProxy running the shipped
docker/haproxy.cfg in front of two `collab-bus api` nodes, two `collab-bus worker` processes and beat, on one
PostgreSQL database and one broker (Redis; Redis behind Sentinel or a 3-server NATS JetStream cluster for the faults
that need them), every server started by the script on free loopback ports and stopped at the end, on errors and on
Ctrl-C. SDK agents (ContainerAgent) talk only to the balancer. It prints figures; it checks
no thresholds.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import harness  # noqa: F401 - puts the repository on sys.path
from harness.cpu import tree_cpu_seconds
from harness.report import add_list_option, fmt, make_parser, parse_list, print_table, progress, ratio, run_main
from harness.servers import postgres_pids, redis_pids

from tests.failover import NO_FAULT, VISIBILITY_TIMEOUT, Cluster, Result, run_fault
from tests.failover_faults import FAULTS
from tests.failover_traffic import Load

CPU_KINDS = ("api", "worker", "postgres", "redis", "client")
WARMUP_SHARE = 0.1  # the first 10 % handled are left out of the steady rate (a node just restarted warms up)

EPILOG = f"""\
Faults (--faults, in this order; tests/failover_faults.py), each under its own traffic on the same cluster, which
is made whole again (every node UP, every worker running) before the next:
  api-node-kill            SIGKILL of the API node holding the receiver's socket; 3 s of traffic on the other
  rolling-restart          each node in turn: SIGTERM, started again, UP in HAProxy
  rolling-restart-drained  the same, each node set to drain in HAProxy's runtime API first
  worker-kill              a worker hung (SIGSTOP) while it holds tasks, then SIGKILL; the other worker goes on;
                           REDIS_VISIBILITY_TIMEOUT is {VISIBILITY_TIMEOUT} s in the cluster (3600 s by default), the
                           outbox sweep runs every 1 s for messages accepted 2 s ago and not yet routed
  redis-restart            Redis shut down for 1 s and started again (no persistence: its queues are lost)
  sentinel-master-kill     (a second cluster, on Redis behind Sentinel: master, replica, three sentinels) SIGKILL
                           of the master; the sentinels promote the replica; the killed one returns as a replica
  sentinel-switch          a manual SENTINEL FAILOVER; the former master lives on until the sentinels convert it
  nats-server-kill         (a cluster on NATS JetStream: three servers, sync_interval always, NATS_REPLICAS=3,
                           NATS_ACK_WAIT={VISIBILITY_TIMEOUT} s) SIGKILL of the server leading the bus's delivery
                           stream; 3 s of traffic on the other two, then it is started again and waited for until it
                           is current in every stream and consumer of the bus
  nats-servers-kill-each   the same for each of the three servers in turn (every server some bus process is
                           connected to goes down once)
  nats-leader-stepdown     a leader step-down of the delivery stream ($JS.API.STREAM.LEADER.STEPDOWN.<stream>)
Traffic per fault: one receiver and --senders senders, each sending at least --per-sender notifications
--pause s apart (going on until the fault is over) with idempotency keys, every 10th also a collaborate_with
request; a send that fails after the SDK's retries is sent again with its key.

Fault columns: broker the cluster it ran on (redis, sentinel, nats); sent notifications + requests accepted;
handled distinct messages the receiver's handler ran; lost sent but never handled; twice handled more than once;
recovered sends that took more than one attempt (a socket frame left unanswered and sent over REST, an SDK retry,
or the sender's own retry) and were handled exactly once (retried: all that took more than one attempt); answered
requests answered / asked; stall the longest gap between two consecutive handled messages; slowest the longest
from a send's start to its handling; took the run.
The lines below the table: reconnects, what the fault did, HAProxy's counters and unusual log lines.

Throughput (--throughput-messages, unpaced notifications from --throughput-senders agents, no requests): with 1
API node (api2 stopped and DOWN in HAProxy) and with 2, --rounds times each (in the order 1 2, 2 1, 1 2, ...):
handled/s = messages handled / (last handled - first send), end to end through the balancer; steady/s the same
from the message handled after the first 10 % to the last (api2 was just restarted); msg/task messages per
delivery task the workers received (an API node group-commits concurrent sends and enqueues each group as one
task); retried sends that took more than one attempt; then CPU ms per message of the API nodes (gunicorn master +
worker), the workers, PostgreSQL, Redis and this script (the SDK agents), and their sum; last the 2-node steady
rate over the 1-node one. On a 2-core machine it stays flat at best: both nodes, the workers, Redis, PostgreSQL,
HAProxy and this script's agents share the same two cores, so a second node adds no CPU; it shows what a second
node costs, not that it scales. On a machine shared with other work the rates move with its load (printed); the
CPU ms per message move less.

The bus runs at LOG_LEVEL INFO: worker-kill reads the workers' task lines to find a moment the worker holds tasks.

Examples:
  .venv/bin/python bench/failover.py --quick
  .venv/bin/python bench/failover.py --faults api-node-kill,worker-kill --no-throughput
"""


def parse_args(argv=None):
    parser = make_parser("bench/failover.py", __doc__, EPILOG)
    add_list_option(parser, "faults", list(FAULTS), "faults")
    parser.add_argument("--senders", type=int, default=4, metavar="K", help="sender agents (default: %(default)s)")
    parser.add_argument("--per-sender", type=int, default=50, metavar="N",
                        help="notifications per sender at least (default: %(default)s; --quick: 25)")
    parser.add_argument("--pause", type=float, default=0.1, metavar="S",
                        help="seconds between a sender's sends (default: %(default)s)")
    parser.add_argument("--throughput-messages", type=int, default=4000, metavar="N",
                        help="messages per throughput run (default: %(default)s; --quick: 800)")
    parser.add_argument("--throughput-senders", type=int, default=8, metavar="K",
                        help="sender agents of the throughput runs (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1, metavar="R",
                        help="throughput runs per node count, alternating (default: %(default)s)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the 1 vs 2 API nodes throughput")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (about 3 minutes with every fault: redis, sentinel and nats clusters)")
    args = parser.parse_args(argv)
    args.faults = parse_list(parser, args.faults, list(FAULTS), "faults")
    if args.quick:
        args.per_sender = min(args.per_sender, 25)
        args.throughput_messages = min(args.throughput_messages, 800)
    return args


def run_faults(clusters: dict[str, Cluster], names: list[str], load: Load) -> list[Result]:
    results = []
    for name in names:
        fault = FAULTS[name]
        progress(f"{name}: {load.senders} senders x {load.per_sender}+ notifications, {load.pause} s apart")
        result = run_fault(clusters[fault.broker], fault, load)
        c = result.counts()
        progress(f"{name}: lost {c['lost']}, twice {c['twice']}, answered {c['answered']}/{c['asked']}, "
                 f"stall {c['stall']:.2f} s, took {c['took']:.1f} s")
        results.append(result)
    return results


def print_faults(results: list[Result]) -> None:
    columns = [("fault", -24), ("broker", -8), ("sent", 6), ("handled", 8), ("lost", 5), ("twice", 6),
               ("recovered", 10), ("retried", 8), ("answered", 9), ("stall s", 8), ("slowest s", 10), ("took s", 7)]
    rows = []
    for result in results:
        c, traffic = result.counts(), result.traffic
        rows.append((result.fault, FAULTS[result.fault].broker, c["sent"], c["handled"], c["lost"], c["twice"],
                     c["recovered"], len(traffic.retried()), f"{c['answered']}/{c['asked']}", fmt(c["stall"], 2),
                     fmt(max(traffic.delays(), default=0), 2), fmt(c["took"])))
    print_table(columns, rows, "\nFaults under SDK traffic through HAProxy (2 API nodes, 2 workers, beat; broker: the "
                               "cluster's)")
    for result in results:
        print("\n".join(result.lines()[1:]))


def throughput(cluster: Cluster, nodes: int, load: Load) -> dict:
    """One run with `nodes` API nodes (1: api2 stopped): messages handled, seconds from the first send to the last
    handled, the steady rate (handled/s from the message handled after the first WARMUP_SHARE to the last),
    delivery tasks the workers received, and CPU seconds per process kind."""
    if nodes == 1:
        cluster.bus.stop_api("api2")
        cluster.haproxy.wait_status(cluster.server("api2"), "DOWN")
    kinds = {"api": {proc.pid for proc in cluster.bus.apis.values()},
             "worker": {proc.pid for proc in cluster.bus.workers.values()},
             "postgres": postgres_pids(cluster.postgres), "redis": redis_pids(cluster.redis)}
    cpu = {kind: tree_cpu_seconds(pids) for kind, pids in kinds.items()} | {"client": time.process_time()}
    tasks = delivery_tasks(cluster)
    result = run_fault(cluster, NO_FAULT, load)  # restores api2 at the end
    used = {kind: tree_cpu_seconds(pids) for kind, pids in kinds.items()} | {"client": time.process_time()}
    traffic, counts = result.traffic, result.counts()
    if counts["lost"] or counts["twice"]:
        progress(f"throughput with {nodes} node(s): lost {counts['lost']}, twice {counts['twice']}")
    times = sorted(traffic.receiver.times)
    skip = int(len(times) * WARMUP_SHARE)
    return {"handled": len(times), "seconds": times[-1] - traffic.sending_since,
            "steady": (len(times) - 1 - skip) / (times[-1] - times[skip]), "tasks": delivery_tasks(cluster) - tasks,
            "cpu": {kind: used[kind] - cpu[kind] for kind in cpu}, "retried": len(traffic.retried())}


def delivery_tasks(cluster: Cluster) -> int:
    """Delivery tasks (deliver, deliver_batch) the workers' logs show received so far."""
    count = 0
    for path in cluster.bus.dir.glob("worker*.log"):
        count += sum("workers.delivery.deliver" in line and "] received" in line
                     for line in path.read_text(errors="replace").splitlines())
    return count


def run_throughput(cluster: Cluster, args) -> None:
    per_sender = max(1, args.throughput_messages // args.throughput_senders)
    load = Load(senders=args.throughput_senders, per_sender=per_sender, request_every=0, pause=0)
    rows, runs = [], {1: [], 2: []}
    for round_ in range(args.rounds):
        for nodes in (1, 2) if round_ % 2 == 0 else (2, 1):  # 1 2 2 1 1 2 ...: neither count always goes first
            progress(f"throughput, {nodes} API node(s), round {round_ + 1}: "
                     f"{load.senders} x {load.per_sender} unpaced notifications")
            run = throughput(cluster, nodes, load)
            runs[nodes].append(run)
            handled, cpu = run["handled"], run["cpu"]
            per_message = [cpu[kind] * 1000 / handled for kind in CPU_KINDS]
            rows.append((nodes, round_ + 1, handled, fmt(run["seconds"], 2), fmt(handled / run["seconds"]),
                         fmt(run["steady"]), ratio(handled, run["tasks"], 1), run["retried"],
                         *(fmt(ms) for ms in per_message), fmt(sum(per_message))))
            progress(f"  {handled} handled in {run['seconds']:.2f} s: steady {run['steady']:.0f}/s")
    print_table([("API nodes", 10), ("round", 6), ("handled", 8), ("seconds", 8), ("handled/s", 10),
                 ("steady/s", 9), ("msg/task", 9), ("retried", 8), *((kind, 9) for kind in CPU_KINDS), ("cpu ms", 7)],
                rows, "\nThroughput end to end through HAProxy (SDK senders -> receiver's handler), 1 vs 2 API nodes; "
                      "CPU ms per message per process kind")
    one, two = (sum(run["steady"] for run in runs[n]) / len(runs[n]) for n in (1, 2))
    print(f"2 nodes / 1 node: {ratio(two, one)} (mean steady handled/s {one:.0f} vs {two:.0f}). Flat at best on this "
          f"machine's {os.cpu_count()} cores: the nodes, workers, Redis, PostgreSQL, HAProxy and the agents share "
          f"them, so a second API node adds no CPU to the cluster; what it costs shows in the CPU ms per message "
          f"and messages per delivery task (each node group-commits only the sends it gets). Load average now: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}.")


def main(args) -> int:
    load = Load(senders=args.senders, per_sender=args.per_sender, pause=args.pause)
    with contextlib.ExitStack() as stack:
        from tests.postgres import PostgresServer

        postgres = PostgresServer()
        stack.callback(postgres.cleanup)
        progress(f"postgresql on port {postgres.port}")
        kinds = sorted({FAULTS[name].broker for name in args.faults} | ({"redis"} if not args.no_throughput else set()))
        clusters = {}
        for kind in kinds:  # one cluster per kind of broker the faults need (tests/failover.py's BROKERS)
            started = time.monotonic()
            clusters[kind] = cluster = Cluster(postgres, kind=kind)
            stack.callback(cluster.cleanup)
            progress(f"{kind} cluster: HAProxy on {cluster.url}, nodes and workers up in "
                     f"{time.monotonic() - started:.1f} s")
        results = run_faults(clusters, args.faults, load)
        if results:
            print_faults(results)
        if not args.no_throughput:
            run_throughput(clusters["redis"], args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
