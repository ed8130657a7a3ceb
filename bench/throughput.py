#!/usr/bin/env python3
"""Target 1, throughput: REST sends from 8 keep-alive connections, each message durable, delivered over the
recipient's mailbox socket and ACKed, against a bare Celery no-op task and raw Redis PUBLISH on the same Redis.

Production mode (`collab-bus api` + one `collab-bus worker`, Redis) on SQLite, then on PostgreSQL, then the
embedded bus (`collab-bus up`). Every server is started by the script on free loopback ports and stopped at
the end, on errors and on Ctrl-C. It prints figures and ratios; it checks no thresholds.
"""

from __future__ import annotations

import contextlib
import sys

import harness  # noqa: F401 - puts the repository on sys.path
from harness.baselines import bench_celery, bench_pubsub, print_celery, print_pubsub
from harness.phase import print_phases, run_phase
from harness.report import (
    add_common_options,
    add_list_option,
    add_sender_options,
    make_parser,
    parse_list,
    progress,
    ratio,
    run_main,
)
from harness.servers import running_bus, start_postgres, start_redis

CONFIGS = ("redis-sqlite", "redis-postgres", "embedded")
WARMUP = 50

EPILOG = f"""\
Phases, per bus configuration (--configs):
  redis-sqlite    collab-bus api + 1 collab-bus worker, Redis broker, SQLite
  redis-postgres  the same on PostgreSQL (tests/postgres.py starts one)
  embedded        collab-bus up (one process, in-memory broker, SQLite)
  each: a warm-up of {WARMUP} messages (not reported), then --messages messages from --senders REST
  connections (one sender sandbox and keep-alive httpx client each, in --sender-procs processes), unpaced;
  the receiver ACKs every message on its socket.
Baselines on the same redis-server, after the buses:
  celery-1  a no-op task, the bus's Celery settings, 1 worker -P threads -c 4 (as `collab-bus worker`)
  celery-2  the same task on 2 solo workers (-P solo)
            concurrent: one producer thread sends while the workers consume (first send -> last run);
            drain: the queue filled first, then the workers started (first run -> last)
  PUBLISH   redis-py PUBLISH -> SUBSCRIBE, one message per PUBLISH, unpaced

Columns: msgs received; send/s accepted POSTs per second; msg/s received / (last receive - first send);
p50/p99/max send -> receive latency in ms (before the POST -> the frame at the receiver); acc p50 the POST
alone; lost/dup by the index carried in each message; refused non-202 answers and connection errors;
bus cpu CPU ms per message of the bus's own processes (api + worker, or the embedded process); cpu ms/msg by
process: api, worker, redis, postgres (children included), client (senders + receiver).
Ratios: bus/celery-1 and bus/celery-2 use the concurrent figures (drain in brackets), bus/PUBLISH the unpaced
PUBLISH rate, embedded/redis-mode the two SQLite figures.

Examples:
  .venv/bin/python bench/throughput.py
  .venv/bin/python bench/throughput.py --messages 300 --configs redis-sqlite
"""


def parse_args(argv=None):
    """Command-line options."""
    parser = make_parser("bench/throughput.py", __doc__, EPILOG)
    add_common_options(parser, messages=2000)
    add_list_option(parser, "configs", CONFIGS, "bus configurations")
    add_sender_options(parser, "the Celery and PUBLISH baselines")
    parser.add_argument("--sender-procs", type=int, default=1, metavar="P",
                        help="processes the connections are spread over (default: %(default)s)")
    args = parser.parse_args(argv)
    args.configs = parse_list(parser, args.configs, CONFIGS, "configuration(s)")
    if min(args.messages, args.senders, args.sender_procs) < 1:
        parser.error("--messages, --senders and --sender-procs must be at least 1")
    return args


def measure_bus(config: str, redis, stack, args):
    """Warm-up then the measured phase on a bus of `config`; returns the PhaseResult."""
    mode = "embedded" if config == "embedded" else "redis"
    postgres = start_postgres(stack) if config == "redis-postgres" else None
    with running_bus(mode, redis, args, postgres=postgres, label=config) as bus:
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
        for config in args.configs:
            results[config] = measure_bus(config, redis, stack, args)
        if not args.no_baselines:
            celery.append(bench_celery(redis, args.messages, workers=1, pool="threads", concurrency=4,
                                       timeout=args.phase_timeout))
            celery.append(bench_celery(redis, args.messages, workers=2, pool="solo", timeout=args.phase_timeout))
            progress(f"redis: {args.messages} PUBLISH -> SUBSCRIBE, unpaced")
            pubsub.append(bench_pubsub(redis, args.messages, None, args.phase_timeout))
        progress("stopping servers")
    print()
    print_phases(list(results.values()))
    print()
    print_celery(celery)
    print_pubsub(pubsub)
    print_ratios(results, celery, pubsub)
    return 0


def print_ratios(results: dict, celery: list, pubsub: list) -> None:
    """bus/celery-1, bus/celery-2, bus/PUBLISH per configuration; embedded/redis-mode."""
    print()
    base = {n + 1: c for n, c in enumerate(celery)}
    publish = pubsub[0].msgs_per_s if pubsub else None
    for config, r in results.items():
        parts = []
        for n, c in base.items():
            parts.append(f"bus/celery-{n} {ratio(r.msgs_per_s, c.concurrent_per_s)} "
                         f"({ratio(r.msgs_per_s, c.drain_per_s)})")
        parts.append(f"bus/PUBLISH {ratio(r.msgs_per_s, publish, 3)}")
        print(f"ratio {config:<15} ({r.msgs_per_s or 0:.0f} msg/s): " + "  ".join(parts))
    if "embedded" in results and "redis-sqlite" in results:
        print(f"ratio embedded/redis-mode: {ratio(results['embedded'].msgs_per_s, results['redis-sqlite'].msgs_per_s)}")


if __name__ == "__main__":
    sys.exit(run_main(run, parse_args()))
