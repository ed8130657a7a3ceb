#!/usr/bin/env python3
"""Target 2, the batch paths: messages sent several per request (`POST /api/v1/messages/batch`) and over the
sender's mailbox socket (`send` frames, a window of them in flight), each durable, delivered over the recipient's
socket and ACKed; against single REST sends and a bare Celery no-op task on the same Redis, in one run.

Production mode: `collab-bus api` + one `collab-bus worker`, Redis, SQLite. Every server is started by the
script on free loopback ports and stopped at the end. It prints figures and ratios; it checks no thresholds.
"""

from __future__ import annotations

import contextlib
import sys

import harness  # noqa: F401 - puts the repository on sys.path
from harness.baselines import bench_celery, print_celery
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
from harness.servers import running_bus, start_redis

WARMUP = 50
METHODS = ("rest", "batch", "socket")

EPILOG = f"""\
Phases on one bus (collab-bus api + 1 collab-bus worker, Redis, SQLite), after a warm-up of {WARMUP}:
  rest    single POST /api/v1/messages from --senders keep-alive connections (the reference)
  batch   POST /api/v1/messages/batch of --batch-size messages from --senders connections
  socket  `send` frames on each sender's own mailbox socket, --window unanswered at most per socket
  the receiver ACKs every message on its socket.
Baseline on the same redis-server: celery-1, a no-op task on 1 worker -P threads -c 4 (as collab-bus worker).
Columns as in bench/throughput.py. Ratios: each method's msg/s over celery-1's (concurrent; drain in brackets)
and over the rest phase's.

Examples:
  .venv/bin/python bench/batch.py
  .venv/bin/python bench/batch.py --messages 5000 --batch-size 100 --methods batch
"""


def parse_args(argv=None):
    """Command-line options."""
    parser = make_parser("bench/batch.py", __doc__, EPILOG)
    add_common_options(parser, messages=4000)
    add_list_option(parser, "methods", METHODS, "send methods")
    add_sender_options(parser, "the Celery baseline")
    parser.add_argument("--batch-size", type=int, default=50, metavar="B",
                        help="messages per batch request (default: %(default)s)")
    parser.add_argument("--window", type=int, default=32, metavar="W",
                        help="unanswered send frames per socket (default: %(default)s)")
    args = parser.parse_args(argv)
    args.methods = parse_list(parser, args.methods, METHODS, "method(s)")
    if min(args.messages, args.senders, args.batch_size, args.window) < 1:
        parser.error("--messages, --senders, --batch-size and --window must be at least 1")
    return args


def run(args) -> int:
    """The phases on one bus, then the baseline; print the report."""
    results, celery = {}, []
    with contextlib.ExitStack() as stack:
        redis = start_redis(stack)
        with running_bus("redis", redis, args, label="redis-sqlite") as bus:
            progress(f"{bus.describe()}; warm-up ({WARMUP} messages)")
            run_phase(bus, "warm-up", "rest", WARMUP, 2, timeout=args.phase_timeout)
            for method in args.methods:
                progress(f"{method}: {args.messages} messages from {args.senders} connections, unpaced, ACKed")
                results[method] = run_phase(bus, f"{method} x{args.senders}", method, args.messages, args.senders,
                                            batch_size=args.batch_size, window=args.window,
                                            timeout=args.phase_timeout)
        if not args.no_baselines:
            celery.append(bench_celery(redis, args.messages, workers=1, pool="threads", concurrency=4,
                                       timeout=args.phase_timeout))
        progress("stopping servers")
    print()
    print_phases(list(results.values()))
    print()
    print_celery(celery)
    print()
    rest = results.get("rest")
    for method, r in results.items():
        parts = [f"/celery-1 {ratio(r.msgs_per_s, c.concurrent_per_s)} ({ratio(r.msgs_per_s, c.drain_per_s)})"
                 for c in celery]
        if rest is not None and method != "rest":
            parts.append(f"/rest {ratio(r.msgs_per_s, rest.msgs_per_s)}")
        print(f"ratio {method:<7} ({r.msgs_per_s or 0:.0f} msg/s): " + "  ".join(parts))
    print_targets(results, celery[0] if celery else None)
    return 0


def print_targets(results: dict, celery) -> None:
    """Issue 27's targets this script measures: batch and socket sends at 3x the bare Celery no-op task on one
    worker, socket sends at least as fast as batch, and the CPU per message of each path."""
    print()
    for method in ("batch", "socket"):
        r = results.get(method)
        if r is None:
            continue
        measured = r.msgs_per_s / celery.concurrent_per_s if celery and r.msgs_per_s and celery.concurrent_per_s \
            else None
        print_target(f"{method} throughput / bare Celery no-op, 1 worker", measured, 3.0, "x", at_most=False,
                     baseline=f"{fmt(r.msgs_per_s, 0)} msg/s vs {fmt(celery and celery.concurrent_per_s, 0)} tasks/s")
    if "batch" in results and "socket" in results:
        socket, batch = results["socket"].msgs_per_s, results["batch"].msgs_per_s
        print_target("socket send throughput / batch", socket / batch if socket and batch else None, 1.0, "x",
                     at_most=False, baseline=f"{fmt(socket, 0)} vs {fmt(batch, 0)} msg/s")
    for method, r in results.items():
        server = {kind: ms for kind, ms in r.cpu_ms_per_msg.items() if kind != "client" and ms is not None}
        print_target(f"CPU per message, {method} path (API, worker, Redis)", sum(server.values()) or None, 3, "ms",
                     baseline=" ".join(f"{kind} {ms:.2f}" for kind, ms in server.items()))


if __name__ == "__main__":
    sys.exit(run_main(run, parse_args()))
