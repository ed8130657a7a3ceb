#!/usr/bin/env python3
"""Target 3, latency: messages paced at a fixed rate (open loop), send -> receipt over the recipient's mailbox
socket, each ACKed; against a raw redis-py PUBLISH -> SUBSCRIBE round trip paced the same on the same Redis, and
for the bus on NATS a raw core NATS publish -> subscribe on the same nats-server.

Production mode (`collab-bus api` + one `collab-bus worker`, SQLite) on Redis, then on NATS JetStream. Every
server is started by the script on free loopback ports and stopped at the end, on errors and on Ctrl-C. It prints
figures, the target beside them and the ratios to the raw round trip; it checks no thresholds.
"""

from __future__ import annotations

import contextlib
import sys

import harness  # noqa: F401 - puts the repository on sys.path
from harness.baselines import bench_nats_pubsub, bench_pubsub, print_pubsub
from harness.phase import print_phases, run_phase
from harness.report import (
    add_common_options,
    add_list_option,
    add_sender_options,
    fmt,
    make_parser,
    parse_list,
    print_table,
    print_target,
    progress,
    ratio,
    run_main,
)
from harness.servers import running_bus, start_nats, start_redis

WARMUP = 50
# broker -> the raw round trip its bus is compared with, on the same server
BROKERS = {"redis": bench_pubsub, "nats": bench_nats_pubsub}
TARGET_P50_MS, TARGET_P99_MS = 5.0, 25.0
TARGET_RATE, TARGET_TIMES_RAW = 200.0, 10.0  # the rate the targets hold at; at most this multiple of the raw trip

EPILOG = f"""\
Phases on one bus per broker (--brokers: collab-bus api + 1 collab-bus worker, SQLite, on Redis, then on NATS
JetStream: one nats-server, file storage, sync_interval always), after a warm-up of {WARMUP}:
  per rate (--rate, or each of --rates): --messages messages paced at that rate, open loop (message i is due
  at start + i/rate whatever happened to the earlier ones), spread over --senders REST connections (a sender
  sandbox and keep-alive httpx client each, in a sender process); the receiver ACKs every message.
Baseline on the same redis-server, per rate: redis-py PUBLISH -> SUBSCRIBE, one timestamped message per
PUBLISH, paced at the same rate, the subscriber in a thread of this process. For the NATS bus, on the same
nats-server: core NATS publish -> subscribe (nats-py, publisher and subscriber on one event loop, each publish
flushed), paced the same.

Summary columns: broker the bus's; rate the paced msg/s; msgs received; bus p50/p99/max send -> receipt in ms
(just before the POST -> the frame read at the receiver; one clock, perf_counter); target the issue's target for
p50 / p99 (printed beside, not checked); raw p50/p99 the raw round trip on the bus's broker in ms (Redis PUBLISH,
NATS publish); x p50 / x p99 the bus's latency as a multiple of the raw round trip's. The phase table below it has
the columns of bench/throughput.py (send/s, msg/s, acc p50 the POST alone, lost/dup, refused, CPU ms per message by
process). A note says so when the bus did not keep up with the pace (then the latencies include queueing).

Examples:
  .venv/bin/python bench/latency.py
  .venv/bin/python bench/latency.py --messages 300 --rates 50,200
  .venv/bin/python bench/latency.py --brokers nats
"""


def parse_args(argv=None):
    """Command-line options."""
    parser = make_parser("bench/latency.py", __doc__, EPILOG)
    add_common_options(parser, messages=2000)
    add_sender_options(parser, "the PUBLISH baselines")
    add_list_option(parser, "brokers", list(BROKERS), "brokers, a bus on each")
    parser.add_argument("--rate", type=float, default=200.0, metavar="R",
                        help="paced messages per second (default: %(default)s)")
    parser.add_argument("--rates", metavar="LIST", default=None,
                        help='comma-separated rates, one phase each (e.g. "50,200"; overrides --rate)')
    args = parser.parse_args(argv)
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()] if args.rates else [args.rate]
    except ValueError:
        parser.error("--rates takes comma-separated numbers")
    if min(args.messages, args.senders) < 1 or min(args.rates, default=0) <= 0:
        parser.error("--messages and --senders must be at least 1, every rate above 0")
    args.brokers = parse_list(parser, args.brokers, list(BROKERS), "broker(s)")
    return args


def run(args) -> int:
    """Every rate on a bus per broker, then each broker's raw round trip at every rate; print the report."""
    results, pubsub = {}, {}  # (broker, rate) -> PhaseResult, PubSubResult
    with contextlib.ExitStack() as stack:
        redis = start_redis(stack)  # the redis bus's broker; the NATS bus needs none
        nats = start_nats(stack) if "nats" in args.brokers else None
        servers = {"redis": redis, "nats": nats}
        for broker in args.brokers:
            with running_bus(broker, redis, args, label=f"{broker}-sqlite", nats=nats) as bus:
                progress(f"{bus.describe()}; warm-up ({WARMUP} messages)")
                run_phase(bus, "warm-up", "rest", WARMUP, 2, timeout=args.phase_timeout)
                for rate in args.rates:
                    progress(f"{broker} bus: {args.messages} messages paced at {rate:g}/s from {args.senders} REST "
                             f"senders, ACKed")
                    results[broker, rate] = run_phase(bus, f"{broker} bus @{rate:g}/s x{args.senders}", "rest",
                                                      args.messages, args.senders, rate=rate,
                                                      timeout=args.phase_timeout)
        if not args.no_baselines:
            for broker in args.brokers:
                for rate in args.rates:
                    progress(f"{broker}: {args.messages} raw publish -> subscribe paced at {rate:g}/s")
                    pubsub[broker, rate] = BROKERS[broker](servers[broker], args.messages, rate, args.phase_timeout)
        progress("stopping servers")
    print()
    print_summary(results, pubsub)
    print()
    print_phases(list(results.values()))
    print()
    print_pubsub(list(pubsub.values()))
    return 0


SUMMARY_COLUMNS = [("broker", -7), ("rate", 6), ("msgs", 6), ("bus p50", 8), ("p99", 7), ("max", 7),
                   ("target p50/p99", 15), ("raw p50", 8), ("p99", 7), ("x p50", 7), ("x p99", 7)]


def print_summary(results: dict, pubsub: dict) -> None:
    """One line per broker and rate: the bus's latencies, the target, the raw round trip and the multiples."""
    rows = []
    for (broker, rate), r in results.items():
        p = pubsub.get((broker, rate))
        rows.append([broker, f"{rate:g}", r.received, fmt(r.p50_ms, 2), fmt(r.p99_ms, 2), fmt(r.max_ms, 2),
                     f"<= {TARGET_P50_MS:g} / {TARGET_P99_MS:g}", fmt(p and p.p50_ms, 3), fmt(p and p.p99_ms, 3),
                     ratio(r.p50_ms, p and p.p50_ms, 1), ratio(r.p99_ms, p and p.p99_ms, 1)])
    print_table(SUMMARY_COLUMNS, rows, "latency send -> receipt in ms (bus: REST send, ACKed; raw: redis-py PUBLISH "
                                       "-> SUBSCRIBE on the same redis-server, or core NATS publish -> subscribe on "
                                       "the same nats-server, at the same pace)")
    print()
    for (broker, rate), r in results.items():  # issue 27's latency targets, at 200 msg/s paced
        if rate != TARGET_RATE:
            continue
        p = pubsub.get((broker, rate))
        raw = f"raw p50 {fmt(p and p.p50_ms, 3)} p99 {fmt(p and p.p99_ms, 3)} ms"
        print_target(f"latency p50 at {rate:g}/s, {broker}", r.p50_ms, TARGET_P50_MS, "ms", baseline=raw)
        print_target(f"latency p99 at {rate:g}/s, {broker}", r.p99_ms, TARGET_P99_MS, "ms", baseline=raw)
        for name, bus_ms, raw_ms in (("p50", r.p50_ms, p and p.p50_ms), ("p99", r.p99_ms, p and p.p99_ms)):
            print_target(f"latency {name} at {rate:g}/s, {broker} / raw round trip", bus_ms / raw_ms
                         if bus_ms and raw_ms else None, TARGET_TIMES_RAW, "x", baseline=raw)


if __name__ == "__main__":
    sys.exit(run_main(run, parse_args()))
