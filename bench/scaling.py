#!/usr/bin/env python3
"""Target 7, scaling: REST send throughput (8 keep-alive connections, unpaced, every message ACKed) with several
`collab-bus worker` processes and API processes, every combination, against a bare Celery no-op task on the
same Redis.

Production mode (`collab-bus api --workers A` + W `collab-bus worker`, Redis, SQLite), a fresh bus per
combination. Every server is started by the script on free loopback ports and stopped at the end, on errors and
on Ctrl-C. It prints figures and ratios; it checks no thresholds.
"""

from __future__ import annotations

import contextlib
import sys

import harness  # noqa: F401 - puts the repository on sys.path
from harness.baselines import bench_celery, print_celery
from harness.phase import bus_cpu_ms, print_phases, run_phase
from harness.report import (
    add_common_options,
    add_sender_options,
    fmt,
    make_parser,
    print_table,
    progress,
    ratio,
    run_main,
)
from harness.servers import running_bus, start_redis

WARMUP = 50

EPILOG = f"""\
Phases, one fresh bus per combination of --api-counts A and --worker-counts W (Redis, SQLite):
  collab-bus api --workers A (A gunicorn worker processes under one master) + W collab-bus worker processes
  (each -P threads -c 4); a warm-up of {WARMUP} messages (not reported), then --messages messages from
  --senders REST connections (a sender sandbox and keep-alive httpx client each, in --sender-procs
  processes), unpaced; the receiver ACKs every message on its socket (as bench/throughput.py redis-sqlite).
Baseline, once, on the same redis-server: celery-1, a no-op task on 1 worker -P threads -c 4 (as
collab-bus worker); concurrent figure (one producer sends while the worker consumes), drain in brackets.

Summary columns: api / workers the process counts; msg/s messages received / (last receipt - first send);
x 1/1 that over the first combination's msg/s; bus/celery-1 over celery-1's concurrent tasks/s (drain in
brackets); p50 send -> receipt in ms; bus cpu CPU ms per message of api + worker; then CPU ms per message per
process kind: api (master + its workers), worker (all worker processes, pool threads included), redis,
client (the benchmark's senders and receiver). The phase table below has the columns of bench/throughput.py.

On a 2-core machine the curve flattens: the API, the workers, redis-server and the benchmark client share the
same two cores, so more processes mostly add context switches; read the CPU ms per message to see where the
time goes.

Examples:
  .venv/bin/python bench/scaling.py
  .venv/bin/python bench/scaling.py --messages 300 --worker-counts 1,2 --api-counts 1
"""


def parse_counts(parser, value: str, option: str) -> list[int]:
    """Comma-separated positive integers of `option`; a parser error otherwise."""
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        parser.error(f"{option} takes comma-separated integers of at least 1")
    return counts


def parse_args(argv=None):
    """Command-line options."""
    parser = make_parser("bench/scaling.py", __doc__, EPILOG)
    add_common_options(parser, messages=2000)
    add_sender_options(parser, "the Celery baseline")
    parser.add_argument("--worker-counts", default="1,2,4", metavar="LIST",
                        help="comma-separated collab-bus worker process counts (default: %(default)s)")
    parser.add_argument("--api-counts", default="1,2", metavar="LIST",
                        help="comma-separated API process counts, collab-bus api --workers (default: %(default)s)")
    parser.add_argument("--sender-procs", type=int, default=1, metavar="P",
                        help="processes the connections are spread over (default: %(default)s)")
    args = parser.parse_args(argv)
    args.worker_counts = parse_counts(parser, args.worker_counts, "--worker-counts")
    args.api_counts = parse_counts(parser, args.api_counts, "--api-counts")
    if min(args.messages, args.senders, args.sender_procs) < 1:
        parser.error("--messages, --senders and --sender-procs must be at least 1")
    return args


def run(args) -> int:
    """Every combination on a fresh bus, then the Celery baseline; print the report."""
    results, celery = {}, []
    with contextlib.ExitStack() as stack:
        redis = start_redis(stack)
        for apis in args.api_counts:
            for workers in args.worker_counts:
                label = f"api {apis} / worker {workers}"
                with running_bus("redis", redis, args, api_workers=apis, workers=workers, label=label) as bus:
                    progress(f"{label}: {bus.describe()}; warm-up ({WARMUP} messages)")
                    run_phase(bus, "warm-up", "rest", WARMUP, 2, timeout=args.phase_timeout)
                    progress(f"{label}: {args.messages} messages, {args.senders} REST senders, unpaced, ACKed")
                    results[apis, workers] = run_phase(bus, f"{label} rest x{args.senders}", "rest", args.messages,
                                                       args.senders, procs=args.sender_procs,
                                                       timeout=args.phase_timeout)
        if not args.no_baselines:
            celery.append(bench_celery(redis, args.messages, workers=1, pool="threads", concurrency=4,
                                       timeout=args.phase_timeout))
        progress("stopping servers")
    print()
    print_summary(results, celery[0] if celery else None)
    print()
    print_phases(list(results.values()))
    print()
    print_celery(celery)
    return 0


SUMMARY_COLUMNS = [("api", 4), ("workers", 7), ("msg/s", 7), ("x 1/1", 6), ("bus/celery-1", 14), ("p50", 7),
                   ("bus cpu", 7), ("api", 6), ("worker", 7), ("redis", 6), ("client", 7)]


def print_summary(results: dict, celery) -> None:
    """One line per combination: msg/s, its ratio to the first combination and to celery-1, CPU per kind."""
    first = next(iter(results.values())).msgs_per_s if results else None
    rows = []
    for (apis, workers), r in results.items():
        cpu = r.cpu_ms_per_msg
        versus = (f"{ratio(r.msgs_per_s, celery.concurrent_per_s)} ({ratio(r.msgs_per_s, celery.drain_per_s)})"
                  if celery else "-")
        rows.append([apis, workers, fmt(r.msgs_per_s, 0), ratio(r.msgs_per_s, first), versus, fmt(r.p50_ms),
                     fmt(bus_cpu_ms(r), 2), fmt(cpu.get("api"), 2), fmt(cpu.get("worker"), 2),
                     fmt(cpu.get("redis"), 2), fmt(cpu.get("client"), 2)])
    print_table(SUMMARY_COLUMNS, rows, "REST send throughput by process count (CPU in ms per message)")


if __name__ == "__main__":
    sys.exit(run_main(run, parse_args()))
