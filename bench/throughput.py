#!/usr/bin/env python3
"""Target 1, throughput: REST sends from 8 keep-alive connections, each message durable, delivered over the
recipient's mailbox socket and ACKed, against a bare Celery no-op task and raw Redis PUBLISH on the same Redis (and,
for the bus on NATS, the same no-op task over the bus's NATS transport and a raw NATS publish on the same server).

Production mode (`collab-bus api` + one `collab-bus worker`, Redis) on SQLite, then on PostgreSQL, then the
embedded bus (`collab-bus up`), then production mode on NATS JetStream (SQLite). Every server is started by the
script on free loopback ports and stopped at the end, on errors and on Ctrl-C. It prints figures and ratios; it
checks no thresholds.
"""

from __future__ import annotations

import contextlib
import sys

import harness  # noqa: F401 - puts the repository on sys.path
from harness.baselines import bench_celery, bench_nats_pubsub, bench_pubsub, print_celery, print_pubsub
from harness.phase import print_phases, run_phase
from harness.report import (
    add_common_options,
    add_list_option,
    add_sender_options,
    fmt,
    make_parser,
    parse_list,
    print_target,
    progress,
    ratio,
    run_main,
)
from harness.servers import running_bus, start_nats, start_postgres, start_redis

# configuration -> (bus mode: its broker, on PostgreSQL)
CONFIGS = {"redis-sqlite": ("redis", False), "redis-postgres": ("redis", True), "embedded": ("embedded", False),
           "nats-sqlite": ("nats", False)}
WARMUP = 50

EPILOG = f"""\
Phases, per bus configuration (--configs):
  redis-sqlite    collab-bus api + 1 collab-bus worker, Redis broker, SQLite
  redis-postgres  the same on PostgreSQL (tests/postgres.py starts one)
  embedded        collab-bus up (one process, in-memory broker, SQLite)
  nats-sqlite     collab-bus api + 1 collab-bus worker, NATS JetStream broker (one nats-server the script starts:
                  file storage, sync_interval always, so every publish is fsynced before its ACK), SQLite
  each: a warm-up of {WARMUP} messages (not reported), then --messages messages from --senders REST
  connections (one sender sandbox and keep-alive httpx client each, in --sender-procs processes), unpaced;
  the receiver ACKs every message on its socket.
Baselines on the same redis-server, after the buses:
  celery-1  a no-op task, the bus's Celery settings, 1 worker -P threads -c 4 (as `collab-bus worker`)
  celery-2  the same task on 2 solo workers (-P solo)
            concurrent: one producer thread sends while the workers consume (first send -> last run);
            drain: the queue filled first, then the workers started (first run -> last)
  PUBLISH   redis-py PUBLISH -> SUBSCRIBE, one message per PUBLISH, unpaced
With nats-sqlite, also on its nats-server:
  celery-1/nats, celery-2/nats  the same no-op task and workers over the bus's NATS transport (a JetStream
            stream per queue; the runs still counted in Redis)
  NATS-pub  core NATS publish -> subscribe (nats-py), each publish flushed (one round trip), unpaced

Columns: msgs received; send/s accepted POSTs per second; msg/s received / (last receive - first send);
p50/p99/max send -> receive latency in ms (before the POST -> the frame at the receiver); acc p50 the POST
alone; lost/dup by the index carried in each message; refused non-202 answers and connection errors;
bus cpu CPU ms per message of the bus's own processes (api + worker, or the embedded process); cpu ms/msg by
process: api, worker, redis, nats, postgres (children included), client (senders + receiver).
Ratios: bus/celery-1 and bus/celery-2 use the concurrent figures (drain in brackets), bus/PUBLISH the unpaced
PUBLISH rate; the NATS bus also bus/celery-1/nats, bus/celery-2/nats and bus/NATS-pub; embedded/redis-mode and
nats/redis-mode the SQLite figures.

Examples:
  .venv/bin/python bench/throughput.py
  .venv/bin/python bench/throughput.py --messages 300 --configs redis-sqlite
"""


def parse_args(argv=None):
    """Command-line options."""
    parser = make_parser("bench/throughput.py", __doc__, EPILOG)
    add_common_options(parser, messages=2000)
    add_list_option(parser, "configs", list(CONFIGS), "bus configurations")
    add_sender_options(parser, "the Celery and PUBLISH baselines")
    parser.add_argument("--sender-procs", type=int, default=1, metavar="P",
                        help="processes the connections are spread over (default: %(default)s)")
    args = parser.parse_args(argv)
    args.configs = parse_list(parser, args.configs, list(CONFIGS), "configuration(s)")
    if min(args.messages, args.senders, args.sender_procs) < 1:
        parser.error("--messages, --senders and --sender-procs must be at least 1")
    return args


def measure_bus(config: str, redis, nats, stack, args):
    """Warm-up then the measured phase on a bus of `config`; returns the PhaseResult."""
    mode, on_postgres = CONFIGS[config]
    postgres = start_postgres(stack) if on_postgres else None
    with running_bus(mode, redis, args, postgres=postgres, label=config, nats=nats) as bus:
        progress(f"{config}: {bus.describe()}; warm-up ({WARMUP} messages)")
        run_phase(bus, "warm-up", "rest", WARMUP, 2, timeout=args.phase_timeout)
        progress(f"{config}: {args.messages} messages, {args.senders} REST senders, unpaced, ACKed")
        return run_phase(bus, f"{config} rest x{args.senders}", "rest", args.messages, args.senders,
                         procs=args.sender_procs, timeout=args.phase_timeout)


def run(args) -> int:
    """Every configuration, then the baselines; print the report."""
    results, celery, pubsub = {}, [], []
    with contextlib.ExitStack() as stack:
        redis = start_redis(stack)
        nats = start_nats(stack) if any(CONFIGS[config][0] == "nats" for config in args.configs) else None
        for config in args.configs:
            results[config] = measure_bus(config, redis, nats, stack, args)
        if not args.no_baselines:
            for broker in (None, nats) if nats else (None,):  # Redis, then the bus's NATS transport
                celery.append(bench_celery(redis, args.messages, workers=1, pool="threads", concurrency=4,
                                           timeout=args.phase_timeout, nats=broker))
                celery.append(bench_celery(redis, args.messages, workers=2, pool="solo", timeout=args.phase_timeout,
                                           nats=broker))
            progress(f"redis: {args.messages} PUBLISH -> SUBSCRIBE, unpaced")
            pubsub.append(bench_pubsub(redis, args.messages, None, args.phase_timeout))
            if nats:
                progress(f"nats: {args.messages} publish -> subscribe, unpaced")
                pubsub.append(bench_nats_pubsub(nats, args.messages, None, args.phase_timeout))
        progress("stopping servers")
    print()
    print_phases(list(results.values()))
    print()
    print_celery(celery)
    print_pubsub(pubsub)
    print_ratios(results, celery, pubsub)
    return 0


PUBSUB_NAMES = {"redis": "PUBLISH", "nats": "NATS-pub"}


def print_ratios(results: dict, celery: list, pubsub: list) -> None:
    """Per configuration: bus/celery-N and bus/PUBLISH on Redis, and on NATS for a bus on NATS; embedded/redis-mode
    and nats/redis-mode."""
    print()
    workers = {}  # broker -> count of its Celery worker sets so far, naming them celery-1, celery-2 (+ /nats)
    base = []
    for c in celery:
        workers[c.broker] = workers.get(c.broker, 0) + 1
        base.append((f"celery-{workers[c.broker]}" + ("" if c.broker == "redis" else f"/{c.broker}"), c))
    publish = [("nats" if p.what.startswith("NATS") else "redis", p) for p in pubsub]
    for config, r in results.items():
        brokers = {"redis", CONFIGS[config][0]}
        parts = [f"bus/{name} {ratio(r.msgs_per_s, c.concurrent_per_s)} ({ratio(r.msgs_per_s, c.drain_per_s)})"
                 for name, c in base if c.broker in brokers]
        parts += [f"bus/{PUBSUB_NAMES[broker]} {ratio(r.msgs_per_s, p.msgs_per_s, 3)}"
                  for broker, p in publish if broker in brokers]
        print(f"ratio {config:<15} ({r.msgs_per_s or 0:.0f} msg/s): " + "  ".join(parts))
    for other in ("embedded", "nats-sqlite"):
        if other in results and "redis-sqlite" in results:
            print(f"ratio {other.split('-')[0]}/redis-mode: "
                  f"{ratio(results[other].msgs_per_s, results['redis-sqlite'].msgs_per_s)}")
    print_targets(results, dict(base))


def print_targets(results: dict, celery: dict) -> None:
    """Issue 27's targets this script measures: CPU per message (REST, Redis + SQLite), REST throughput against
    the bare Celery no-op task on one worker, PostgreSQL against SQLite, embedded against Redis mode."""
    print()
    rest = results.get("redis-sqlite")
    if rest is not None:
        server = {kind: ms for kind, ms in rest.cpu_ms_per_msg.items() if kind != "client" and ms is not None}
        print_target("CPU per message, REST, Redis + SQLite (API, worker, Redis)", sum(server.values()) or None, 3,
                     "ms", baseline=" ".join(f"{kind} {ms:.2f}" for kind, ms in server.items()))
        one = celery.get("celery-1")
        measured = rest.msgs_per_s / one.concurrent_per_s if one and rest.msgs_per_s and one.concurrent_per_s else None
        print_target("REST throughput / bare Celery no-op, 1 worker", measured, 1.0, "x", at_most=False,
                     baseline=f"{fmt(rest.msgs_per_s, 0)} msg/s vs {fmt(one and one.concurrent_per_s, 0)} tasks/s")
    for config, goal, name in (("redis-postgres", 0.8, "PostgreSQL / SQLite"), ("embedded", 0.7,
                                                                               "embedded / Redis mode")):
        if config in results and rest is not None:
            other = results[config]
            measured = other.msgs_per_s / rest.msgs_per_s if other.msgs_per_s and rest.msgs_per_s else None
            print_target(f"throughput {name}", measured, goal, "x", at_most=False,
                         baseline=f"{fmt(other.msgs_per_s, 0)} vs {fmt(rest.msgs_per_s, 0)} msg/s")


if __name__ == "__main__":
    sys.exit(run_main(run, parse_args()))
