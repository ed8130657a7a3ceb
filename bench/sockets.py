"""Probe (not a test): how many idle authenticated mailbox sockets one `collab-bus api` process holds, at what cost.

Starts redis-server, `collab-bus api --workers 1` (gunicorn's gevent worker unless API_WORKER_CLASS says otherwise)
and one `collab-bus worker`, registers N/PER sandboxes, opens N mailbox sockets (PER per sandbox) from this
process with the asyncio `websockets` client, then, while they are held, reports: the API's RSS (gunicorn master +
worker, VmRSS) and OS threads, REST latency (p50/p99 of --rest-requests `GET /api/v1/sandboxes?workspace=…`, a
small listing so the figure is the server's responsiveness, not the listing's size), and the latency from
`POST /api/v1/messages` to the frame on the recipient's socket.

    .venv/bin/python bench/sockets.py --sockets 2000
    .venv/bin/python bench/sockets.py            # 10000
    .venv/bin/python bench/sockets.py --mode embedded --sockets 2000   # collab-bus up (threaded)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from harness.mailboxes import close_all, open_sockets, raise_fd_limit, register_many  # noqa: E402
from harness.report import percentile, print_target, progress  # noqa: E402
from harness.servers import BenchBus, start_redis  # noqa: E402

from tests.servers import TEST_ADMIN_KEY  # noqa: E402

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}
IDLE_SOCKET_KIB = 30.0  # issue 27's target: RSS per idle authenticated socket
MESSAGE_WAIT = 30.0  # seconds a timed message may take to reach its socket before the run reports it missing


def process_tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").iterdir():
            pids.extend(int(child) for child in (task / "children").read_text().split())
        i += 1
    return pids


def rss_and_threads(pid: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(total VmRSS KiB, total OS threads, [(pid, VmRSS KiB)]) of `pid` and its descendants."""
    total_rss = total_threads = 0
    each = []
    for p in process_tree(pid):
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines() if ":" in line)
        rss = int(fields["VmRSS"].split()[0])
        total_rss += rss
        total_threads += int(fields["Threads"])
        each.append((p, rss))
    return total_rss, total_threads, each


def rest_latencies(url: str, count: int, workspace: str) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as http:
        for _ in range(count):
            start = time.perf_counter()
            answer = http.get("/api/v1/sandboxes", params={"workspace": workspace})
            times.append(time.perf_counter() - start)
            answer.raise_for_status()
    return times


async def message_latencies(url: str, sockets: dict[str, list], count: int) -> list[float]:
    """Send `count` messages to one sandbox holding sockets; seconds from the POST until each reached its
    first socket. Raises TimeoutError when one has not arrived within MESSAGE_WAIT seconds."""
    sandboxes = list(sockets)
    target, sender = sandboxes[0], sandboxes[1]
    ws = sockets[target][0]
    times = []
    async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=30) as http:
        for n in range(count):
            start = time.perf_counter()
            answer = await http.post("/api/v1/messages", json={
                "from_sandbox": sender, "to_sandbox": target, "from_agent": "probe", "message_type": "notification",
                "content": {"n": n}})
            answer.raise_for_status()
            message_id = answer.json()["message_id"]
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), MESSAGE_WAIT))
                if frame.get("type") == "message" and frame["message"]["message_id"] == message_id:
                    break
            times.append(time.perf_counter() - start)
    return times


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


async def probe(bus: BenchBus, args) -> None:
    sandbox_count = -(-args.sockets // args.per_sandbox)
    sandboxes = await register_many(bus.url, sandbox_count, "probe")
    await register_many(bus.url, 1, "rest")  # the small listing REST latency is measured on
    api_pid = bus.apis["api"].pid if bus.mode != "embedded" else bus.processes[0].pid
    rss0, threads0, _ = rss_and_threads(api_pid)
    progress(f"API before sockets: {rss0 / 1024:.0f} MiB RSS, {threads0} OS threads")
    started = time.perf_counter()
    sockets = await open_sockets(bus.ws_url, sandboxes, args.per_sandbox, args.concurrency)
    held = sum(len(v) for v in sockets.values())
    progress(f"{held} sockets open in {time.perf_counter() - started:.1f}s; holding them {args.hold:.0f}s")
    await asyncio.sleep(args.hold)
    rss, threads, each = rss_and_threads(api_pid)
    server = ("collab-bus up (embedded, threaded)" if bus.mode == "embedded" else
              f"collab-bus api, worker class {bus.env.get('API_WORKER_CLASS', 'gevent (default)')}")
    print(f"{server}; sockets held: {held} "
          f"({sandbox_count} sandboxes x {args.per_sandbox})")
    print(f"API RSS: {rss / 1024:.0f} MiB with the sockets ({rss0 / 1024:.0f} MiB before; "
          f"{(rss - rss0) / max(held, 1):.1f} KiB per socket); per process: "
          + ", ".join(f"{pid}: {kib / 1024:.0f} MiB" for pid, kib in each), flush=True)
    print(f"API OS threads: {threads} with the sockets ({threads0} before)", flush=True)
    print_target(f"RSS per idle authenticated socket ({held} held, {server})", (rss - rss0) / max(held, 1),
                 IDLE_SOCKET_KIB, "KiB", baseline="Centrifugo: 27 KB by default")
    rest = await asyncio.to_thread(rest_latencies, bus.url, args.rest_requests, "rest")
    print(f"REST GET /api/v1/sandboxes?workspace=rest x{len(rest)} while held: p50 {ms(percentile(rest, 50))}, "
          f"p99 {ms(percentile(rest, 99))}, max {ms(max(rest))}", flush=True)
    try:
        messages = await message_latencies(bus.url, sockets, args.messages)
        print(f"message POST -> frame on the socket x{len(messages)}: p50 {ms(percentile(messages, 50))}, "
              f"max {ms(max(messages))}")
    except TimeoutError:
        print(f"message POST -> frame on the socket: NOT RECEIVED within {MESSAGE_WAIT:g}s")
    rss_after, threads_after, _ = rss_and_threads(api_pid)
    with httpx.Client(base_url=bus.url, headers=ADMIN, timeout=30) as http:
        metrics = http.get("/metrics").text
    gauge = [line for line in metrics.splitlines() if line.startswith("collab_bus_open_websockets")]
    print(f"after: {rss_after / 1024:.0f} MiB RSS, {threads_after} threads; " + "; ".join(gauge[:2]))
    started = time.perf_counter()
    await close_all(ws for group in sockets.values() for ws in group)
    progress(f"closed the sockets in {time.perf_counter() - started:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10000, help="mailbox sockets to open (default 10000)")
    parser.add_argument("--per-sandbox", type=int, default=4, help="sockets per sandbox (MAX_SOCKETS_PER_SANDBOX)")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight at once")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold the sockets before measuring")
    parser.add_argument("--rest-requests", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, help="messages timed to one socket")
    parser.add_argument("--worker-class", choices=("gevent", "gthread"), default=None)
    parser.add_argument("--mode", choices=("redis", "embedded"), default="redis",
                        help="redis: collab-bus api + worker (default); embedded: collab-bus up, which stays threaded")
    args = parser.parse_args()
    limit = raise_fd_limit(args.sockets + 1000)
    progress(f"RLIMIT_NOFILE {limit} (this process and the bus it starts)")
    extra_env = {"MAX_SOCKETS_PER_SANDBOX": str(args.per_sandbox)}
    if args.worker_class:
        extra_env["API_WORKER_CLASS"] = args.worker_class
    with contextlib.ExitStack() as stack:
        redis = start_redis(stack) if args.mode == "redis" else None
        bus = BenchBus(args.mode, redis=redis, api_workers=1, workers=1, extra_env=extra_env)
        stack.callback(bus.cleanup)
        progress(f"bus: {bus.describe()} on {bus.url}")
        asyncio.run(probe(bus, args))
        for line in bus.log_summary():
            progress(f"log {line}")


if __name__ == "__main__":
    main()
