#!/usr/bin/env python3
"""End-to-end benchmark of the Collaboration Bus, with the raw Celery and Redis figures beside it.

For each mode (embedded: `collab-bus up`; redis: `collab-bus api` + one `collab-bus worker`) it
sends messages over REST from a sender sandbox to a receiver sandbox that holds its mailbox
WebSocket, and measures sustained messages/s and send->receive latency. On the same redis-server
it then measures a no-op Celery task (the bus's Celery settings, one worker) and a raw redis-py
PUBLISH->SUBSCRIBE round trip, so the ratios can be read. It starts every server itself on free
loopback ports and stops them at the end. It only prints figures; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.report import percentile, progress, sleep_until  # noqa: E402

from app.broker import broker_priority, make_celery  # noqa: E402
from app.config import Settings  # noqa: E402
from tests.servers import ADMIN_HEADERS, BusProcess, RedisServer, wait_for  # noqa: E402

MODES = ("embedded", "redis")
WARMUP_MESSAGES = 50
PROTOCOL_PRIORITY = 5  # the API's default message priority
HTTP_TIMEOUT = 10.0
IDLE_TIMEOUT = 15.0  # give up waiting for frames after this long without a new one
NOOP_TASK = "bench.noop"

EPILOG = f"""\
Phases, per bus mode:
  warm-up     {WARMUP_MESSAGES} messages, not reported
  throughput  --messages messages from --senders concurrent REST senders, unpaced
  latency     --messages messages paced at --rate msg/s (open loop) from --latency-senders senders
Then, on the same redis-server: a no-op Celery task (the bus's celeryconfig, one worker,
-P threads -c --celery-concurrency) and a redis-py PUBLISH->SUBSCRIBE round trip at --rate.

msg/s is messages received / (last receive - first send). Latency is from just before the REST
POST to the moment the receiver's WebSocket hands over the frame (same process, perf_counter).
"post" is how long the REST POST itself took. lost/dup are checked by the index in each
message's content. cpu% is CPU time / wall time (100% = one core) of the bus's processes and of
this script.

Examples:
  .venv/bin/python bench/e2e.py
  .venv/bin/python bench/e2e.py --messages 300 --modes redis
  .venv/bin/python bench/e2e.py --rate 500 --senders 16 --keep-logs
"""


# --------------------------------------------------------------------------- CPU accounting

def process_group_cpu(pgids: set[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes whose process group is in `pgids`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class CpuMeter:
    """Measures CPU used by a set of process groups and by this process between `start()` and `stop()`."""

    def __init__(self, pgids: set[int]):
        self.pgids = pgids
        self.bus_pct = self.own_pct = None

    def start(self) -> None:
        """Remember the counters now."""
        self._wall = time.perf_counter()
        self._bus = process_group_cpu(self.pgids)
        self._own = time.process_time()

    def stop(self) -> None:
        """Turn the counters since `start()` into percentages of one core."""
        wall = max(time.perf_counter() - self._wall, 1e-9)
        self.bus_pct = 100 * (process_group_cpu(self.pgids) - self._bus) / wall
        self.own_pct = 100 * (time.process_time() - self._own) / wall


# --------------------------------------------------------------------------- the bus under test

class BenchBus(BusProcess):
    """`tests.servers.BusProcess` with what the benchmark reports: process groups (for CPU) and log summaries."""

    def process_groups(self) -> set[int]:
        """Process group ids of the bus's processes (each is started in its own session)."""
        return {proc.pid for proc in self.processes}

    def log_summary(self, limit: int = 5) -> list[str]:
        """Lines per log file mentioning WARNING, ERROR, CRITICAL or Traceback: a count and the first few."""
        summary = []
        for path in sorted(self.dir.glob("*.log")):
            hits = [line for line in path.read_text(errors="replace").splitlines()
                    if any(word in line for word in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback"))]
            summary.append(f"{path.name}: {len(hits)} warning/error line(s)")
            summary.extend(f"    {line[:200]}" for line in hits[:limit])
        return summary


def register(client: httpx.Client, sandbox_id: str) -> None:
    """Register `sandbox_id` on the bus."""
    response = client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id})
    if response.status_code not in (200, 201):
        raise RuntimeError(f"registering {sandbox_id} failed: {response.status_code} {response.text}")


def message_body(sender: str, receiver: str, index: int, sent_at: float) -> dict:
    """The REST body of benchmark message `index`; its content carries the index and the send time."""
    return {"from_sandbox": sender, "to_sandbox": receiver, "from_agent": "bench", "message_type": "notification",
            "content": {"i": index, "t": sent_at}}


class MailboxReceiver(threading.Thread):
    """Reads one sandbox's open mailbox WebSocket in a thread and records when each benchmark message arrives.

    The constructor reads the `welcome` frame, so the mailbox is subscribed before anything is sent.
    """

    def __init__(self, ws):
        super().__init__(name="mailbox-receiver", daemon=True)
        self.ws = ws
        welcome = json.loads(ws.recv(timeout=HTTP_TIMEOUT))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected a welcome frame, got {welcome}")
        self.lock = threading.Lock()
        self.latency_ms: dict[int, float] = {}
        self.duplicates = 0
        self.other_frames = 0
        self.last_arrival: float | None = None
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        """Receive frames until `halt()` or until the socket closes."""
        try:
            while not self._halt.is_set():
                try:
                    raw = self.ws.recv(timeout=0.25)
                except TimeoutError:
                    continue
                self._record(raw, time.perf_counter())
        except ConnectionClosed as exc:
            if not self._halt.is_set():
                self.error = f"WebSocket closed: {exc}"

    def _record(self, raw: str, arrived: float) -> None:
        try:
            frame = json.loads(raw)
            content = frame["message"]["content"] if frame.get("type") == "message" else None
            index, sent_at = (content["i"], content["t"]) if isinstance(content, dict) else (None, None)
        except (ValueError, KeyError, TypeError):
            index = sent_at = None
        if index is None:
            with self.lock:
                self.other_frames += 1
            return
        with self.lock:
            if index in self.latency_ms:
                self.duplicates += 1
            else:
                self.latency_ms[index] = (arrived - sent_at) * 1000
                self.last_arrival = arrived

    def missing(self, expected: set[int]) -> set[int]:
        """Which of `expected` have not arrived yet."""
        with self.lock:
            return expected - self.latency_ms.keys()

    def wait_for_all(self, expected: set[int], deadline: float) -> None:
        """Wait until every index in `expected` arrived, no frame came for IDLE_TIMEOUT s, or `deadline`."""
        last_count, last_progress = -1, time.monotonic()
        while self.missing(expected) and self.is_alive():
            now = time.monotonic()
            with self.lock:
                count = len(self.latency_ms)
            if count != last_count:
                last_count, last_progress = count, now
            if now - last_progress > IDLE_TIMEOUT or now > deadline:
                return
            time.sleep(0.01)

    def halt(self) -> None:
        """Stop receiving (the caller closes the socket)."""
        self._halt.set()
        self.join(timeout=5)


@dataclass
class SendLog:
    """What the REST senders did: send times and POST durations of accepted messages, and failures."""

    sent_at: dict[int, float] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    finished_at: float = 0.0

    def failed(self, text: str) -> None:
        """Count one failed send, keeping the first reason."""
        self.errors += 1
        self.first_error = self.first_error or text


def send_messages(base_url: str, sender: str, receiver: str, count: int, senders: int, rate: float | None,
                  stop: threading.Event) -> SendLog:
    """POST `count` messages from `senders` threads (one keep-alive httpx.Client each).

    Unpaced when `rate` is None; otherwise message i is due at start + i/rate (open loop: a sender
    that falls behind sends at once). Returns when all are sent or `stop` is set.
    """
    indexes: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(count):
        indexes.put(index)
    log = SendLog()
    lock = threading.Lock()
    start = time.perf_counter() + 0.05

    def sender_loop() -> None:
        with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT, headers=ADMIN_HEADERS) as client:
            while not stop.is_set():
                try:
                    index = indexes.get_nowait()
                except queue.Empty:
                    return
                if rate:
                    sleep_until(start + index / rate)
                post_one(client, index)

    def post_one(client: httpx.Client, index: int) -> None:
        sent_at = time.perf_counter()
        try:
            response = client.post("/api/v1/messages", json=message_body(sender, receiver, index, sent_at))
        except httpx.HTTPError as exc:
            with lock:
                log.failed(f"{type(exc).__name__}: {exc}")
            return
        done = time.perf_counter()
        with lock:
            if response.status_code == 202:
                log.sent_at[index] = sent_at
                log.post_ms.append((done - sent_at) * 1000)
            else:
                log.failed(f"HTTP {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=sender_loop, name=f"sender-{n}", daemon=True) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.finished_at = time.perf_counter()
    return log


@dataclass
class PhaseResult:
    """Figures of one bus phase."""

    mode: str
    phase: str
    planned: int
    sent: int
    errors: int
    received: int
    lost: int
    duplicates: int
    msgs_per_s: float | None
    send_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    post_p50_ms: float | None
    bus_cpu_pct: float | None
    own_cpu_pct: float | None
    note: str = ""


def run_bus_phase(bus: BenchBus, label: str, count: int, senders: int, rate: float | None,
                  timeout: float) -> PhaseResult:
    """Send `count` messages to a fresh receiver holding its WebSocket; measure rate, latency, loss."""
    suffix = uuid.uuid4().hex[:8]
    sender_id, receiver_id = f"bench-sender-{suffix}", f"bench-receiver-{suffix}"
    with httpx.Client(base_url=bus.url, timeout=HTTP_TIMEOUT, headers=ADMIN_HEADERS) as client:
        register(client, sender_id)
        register(client, receiver_id)
    with connect(f"{bus.ws_url}/ws/sandboxes/{receiver_id}?since=0", open_timeout=HTTP_TIMEOUT,
                 additional_headers=ADMIN_HEADERS,
                 max_size=None) as ws:
        receiver = MailboxReceiver(ws)
        receiver.start()
        stop = threading.Event()
        timer = threading.Timer(timeout, stop.set)  # bounds the sending
        timer.daemon = True
        timer.start()
        meter = CpuMeter(bus.process_groups())
        meter.start()
        try:
            log = send_messages(bus.url, sender_id, receiver_id, count, senders, rate, stop)
            receiver.wait_for_all(set(log.sent_at), time.monotonic() + timeout)
            meter.stop()
            time.sleep(0.2)  # a moment for late duplicates
        finally:
            stop.set()
            timer.cancel()
            receiver.halt()
    result = summarize_phase(bus.mode, label, count, log, receiver, meter)
    if rate and result.send_per_s and result.send_per_s < 0.95 * rate:
        result.note = "; ".join(filter(None, [result.note, f"the bus accepted only {result.send_per_s:.0f} of the "
                                                           f"paced {rate:g} msg/s, so these latencies include queueing"]))
    return result


def summarize_phase(mode: str, label: str, planned: int, log: SendLog, receiver: MailboxReceiver,
                    meter: CpuMeter) -> PhaseResult:
    """Turn the send log and the receiver's records into a PhaseResult."""
    expected = set(log.sent_at)
    latencies = [ms for index, ms in receiver.latency_ms.items() if index in expected]
    first_send = min(log.sent_at.values(), default=None)
    received = len(latencies)
    elapsed = (receiver.last_arrival - first_send) if received and first_send is not None else None
    send_elapsed = (log.finished_at - first_send) if first_send is not None else None
    notes = [text for text in (log.first_error, receiver.error) if text]
    if receiver.other_frames:
        notes.append(f"{receiver.other_frames} non-message frame(s)")
    return PhaseResult(
        mode=mode, phase=label, planned=planned, sent=len(expected), errors=log.errors, received=received,
        lost=len(receiver.missing(expected)), duplicates=receiver.duplicates,
        msgs_per_s=received / elapsed if elapsed else None,
        send_per_s=len(expected) / send_elapsed if send_elapsed else None,
        p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=None),
        post_p50_ms=percentile(log.post_ms, 50), bus_cpu_pct=meter.bus_pct, own_cpu_pct=meter.own_pct,
        note="; ".join(notes),
    )


def bench_bus_mode(mode: str, redis_server: RedisServer | None, args: argparse.Namespace) -> list[PhaseResult]:
    """Start the bus in `mode`, run warm-up, throughput and latency phases, stop it; return the results."""
    progress(f"{mode}: starting the bus")
    bus = BenchBus(mode, redis_url=redis_server.url if redis_server else None,
                   extra_env={"LOG_LEVEL": args.bus_log_level})
    results = []
    try:
        progress(f"{mode}: warm-up ({WARMUP_MESSAGES} messages)")
        warmup = run_bus_phase(bus, "warm-up", WARMUP_MESSAGES, 2, None, args.phase_timeout)
        if warmup.lost or warmup.errors:
            progress(f"{mode}: warm-up lost {warmup.lost}, {warmup.errors} send error(s): {warmup.note}")
        progress(f"{mode}: throughput phase ({args.messages} messages, {args.senders} senders, unpaced)")
        results.append(run_bus_phase(bus, f"throughput x{args.senders}", args.messages, args.senders, None,
                                     args.phase_timeout))
        if args.rate > 0:
            progress(f"{mode}: latency phase ({args.messages} messages at {args.rate:g} msg/s, "
                     f"{args.latency_senders} senders)")
            results.append(run_bus_phase(bus, f"latency @{args.rate:g}/s", args.messages, args.latency_senders,
                                         args.rate, args.phase_timeout))
    finally:
        bus.stop()
        for line in bus.log_summary():
            progress(f"{mode}: log {line}")
        if args.keep_logs:
            progress(f"{mode}: logs kept in {bus.dir}")
        else:
            bus.cleanup()
    return results


# --------------------------------------------------------------------------- raw Celery no-op

NOOP_MODULE = '''\
"""Generated by bench/e2e.py: a no-op task on the bus's Celery settings that counts its runs in Redis."""
import os

import redis

from app.broker import make_celery
from app.config import Settings

app = make_celery(Settings.from_env({"MESSAGE_BACKEND": "redis", "REDIS_URL": os.environ["BENCH_REDIS_URL"]}),
                  name="bench_noop")
counter = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@app.task(name="%s")
def noop():
    counter.incr(os.environ["BENCH_COUNTER_KEY"])
''' % NOOP_TASK


@dataclass
class CeleryResult:
    """Figures of the no-op Celery run."""

    tasks: int
    done: int
    tasks_per_s: float | None
    send_per_s: float
    concurrency: int


class NoopWorker:
    """A real Celery worker subprocess running the generated no-op task module."""

    def __init__(self, redis_url: str, counter_key: str, concurrency: int):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-celery-"))
        (self.dir / "bench_noop.py").write_text(NOOP_MODULE)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.dir), str(REPO_ROOT)]),
               "BENCH_REDIS_URL": redis_url, "BENCH_COUNTER_KEY": counter_key, "PYTHONUNBUFFERED": "1"}
        self.log_path = self.dir / "worker.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench_noop", "worker", "-P", "threads", "-c", str(concurrency),
                 "-Q", "delivery", "-l", "WARNING", "--hostname", f"bench-noop-{uuid.uuid4().hex[:8]}@%h"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True)

    def check_alive(self) -> None:
        """Raise with the worker's log when the worker has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"no-op celery worker exited with {self.proc.returncode}:\n"
                               f"{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the worker (SIGTERM, SIGKILL after 10 s) and remove its directory."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for line in self.log_path.read_text(errors="replace").splitlines():
            if " ERROR " in line or "Traceback" in line:
                progress(f"celery: worker log: {line[:200]}")
        with contextlib.suppress(OSError):
            for path in self.dir.iterdir():
                path.unlink()
            self.dir.rmdir()


def wait_for_counter(client: redis.Redis, key: str, target: int, timeout: float, worker: NoopWorker) -> float | None:
    """Poll `key` until it reaches `target`; return perf_counter() then, or None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(client.get(key) or 0) >= target:
            return time.perf_counter()
        worker.check_alive()
        time.sleep(0.002)
    return None


def bench_celery_noop(redis_server: RedisServer, count: int, concurrency: int, timeout: float) -> CeleryResult:
    """Rate of a no-op task through Celery on `redis_server` (database 1) with one real worker."""
    redis_url = f"redis://127.0.0.1:{redis_server.port}/1"
    counter_key = f"bench:noop:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    producer = make_celery(Settings.from_env({"MESSAGE_BACKEND": "redis", "REDIS_URL": redis_url}), name="bench_noop")
    priority = broker_priority("redis", PROTOCOL_PRIORITY)

    def send_one() -> None:
        producer.send_task(NOOP_TASK, queue="delivery", routing_key="delivery", priority=priority, retry=True)

    progress(f"celery: starting a no-op worker (-P threads -c {concurrency}) on {redis_url}")
    worker = NoopWorker(redis_url, counter_key, concurrency)
    try:
        send_one()  # readiness and warm-up
        if wait_for_counter(client, counter_key, 1, 60, worker) is None:
            raise TimeoutError("the no-op celery worker ran nothing within 60 s")
        client.set(counter_key, 0)
        progress(f"celery: {count} no-op tasks")
        start = time.perf_counter()
        for _ in range(count):
            send_one()
        sent = time.perf_counter()
        finished = wait_for_counter(client, counter_key, count, timeout, worker)
        done = int(client.get(counter_key) or 0)
    finally:
        worker.stop()
        producer.close()
        client.close()
    return CeleryResult(tasks=count, done=done, tasks_per_s=count / (finished - start) if finished else None,
                        send_per_s=count / max(sent - start, 1e-9), concurrency=concurrency)


# --------------------------------------------------------------------------- raw Redis pub/sub

@dataclass
class PubSubResult:
    """Figures of one PUBLISH->SUBSCRIBE run."""

    label: str
    messages: int
    received: int
    msgs_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None


def bench_pubsub(redis_server: RedisServer, count: int, rate: float | None, timeout: float) -> PubSubResult:
    """PUBLISH `count` timestamped messages (paced at `rate`, or unpaced) to a subscriber thread; time the trip."""
    channel = f"bench:pubsub:{uuid.uuid4().hex[:8]}"
    subscriber = redis.Redis.from_url(redis_server.url)
    publisher = redis.Redis.from_url(redis_server.url)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    wait_for(lambda: publisher.pubsub_numsub(channel)[0][1] > 0, 10, "the subscription to be active")
    rtt_ms: list[float] = []
    last_arrival = [0.0]
    halt = threading.Event()

    def receive() -> None:
        while not halt.is_set() and len(rtt_ms) < count:
            message = pubsub.get_message(timeout=0.25)
            if message:
                arrived = time.perf_counter()
                rtt_ms.append((arrived - float(message["data"])) * 1000)
                last_arrival[0] = arrived

    thread = threading.Thread(target=receive, name="pubsub-receiver", daemon=True)
    thread.start()
    try:
        start = time.perf_counter()
        for index in range(count):
            if rate:
                sleep_until(start + index / rate)
            publisher.publish(channel, repr(time.perf_counter()))
        thread.join(timeout)
    finally:
        halt.set()
        thread.join(5)
        pubsub.close()
        subscriber.close()
        publisher.close()
    elapsed = last_arrival[0] - start
    return PubSubResult(label=f"@{rate:g}/s" if rate else "unpaced", messages=count, received=len(rtt_ms),
                        msgs_per_s=len(rtt_ms) / elapsed if rtt_ms and elapsed > 0 else None,
                        p50_ms=percentile(rtt_ms, 50), p99_ms=percentile(rtt_ms, 99))


# --------------------------------------------------------------------------- report

def fmt(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals, or "-" when unknown."""
    return "-" if value is None else f"{value:.{digits}f}"


def print_bus_table(results: list[PhaseResult]) -> None:
    """The bus phases as one table."""
    header = (f"{'mode':<9} {'phase':<16} {'msgs':>6} {'send/s':>7} {'msg/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'post p50':>8} {'lost':>5} {'dup':>4} {'err':>4} {'bus cpu%':>8} {'bench cpu%':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.mode:<9} {r.phase:<16} {r.received:>6} {fmt(r.send_per_s, 0):>7} {fmt(r.msgs_per_s, 0):>7} "
              f"{fmt(r.p50_ms):>7} {fmt(r.p99_ms):>7} {fmt(r.max_ms):>7} {fmt(r.post_p50_ms):>8} {r.lost:>5} "
              f"{r.duplicates:>4} {r.errors:>4} {fmt(r.bus_cpu_pct, 0):>8} {fmt(r.own_cpu_pct, 0):>10}")
        if r.note:
            print(f"          note: {r.note}")


def print_report(results: list[PhaseResult], celery: CeleryResult | None, pubsub: list[PubSubResult]) -> None:
    """Print every figure and the ratios between the bus and the raw baselines."""
    print()
    if results:
        print_bus_table(results)
        print()
    if celery:
        print(f"celery no-op (redis, 1 worker -P threads -c {celery.concurrency}, bus celeryconfig): "
              f"{fmt(celery.tasks_per_s, 0)} tasks/s  ({celery.done}/{celery.tasks} done; "
              f"producer {celery.send_per_s:.0f} sends/s)")
    for p in pubsub:
        print(f"redis pub/sub round trip {p.label:<10}: p50 {fmt(p.p50_ms, 2)} ms  p99 {fmt(p.p99_ms, 2)} ms  "
              f"{fmt(p.msgs_per_s, 0)} msg/s  ({p.received}/{p.messages} received)")
    print_ratios(results, celery, pubsub)


def print_ratios(results: list[PhaseResult], celery: CeleryResult | None, pubsub: list[PubSubResult]) -> None:
    """Throughput of each mode over the Celery no-op rate; latency over the raw pub/sub round trip."""
    paced = next((p for p in pubsub if p.label != "unpaced"), None)
    for r in results:
        if r.phase.startswith("throughput") and celery and celery.tasks_per_s and r.msgs_per_s:
            print(f"ratio e2e/celery ({r.mode}): {r.msgs_per_s / celery.tasks_per_s:.2f}  "
                  f"({r.msgs_per_s:.0f} msg/s vs {celery.tasks_per_s:.0f} tasks/s)")
        if r.phase.startswith("latency") and paced and paced.p50_ms and r.p50_ms:
            print(f"ratio e2e/pubsub latency ({r.mode}): p50 {r.p50_ms / paced.p50_ms:.0f}x  "
                  f"p99 {r.p99_ms / paced.p99_ms:.0f}x")


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="bench/e2e.py", description=__doc__.split("\n\n")[0],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", "-n", type=int, default=2000, metavar="N",
                        help="messages per phase, Celery tasks and pub/sub messages (default: %(default)s)")
    parser.add_argument("--modes", default=",".join(MODES), metavar="LIST",
                        help="comma-separated bus modes to run: embedded, redis (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=200.0, metavar="R",
                        help="msg/s of the paced latency phase and of the pub/sub round trip; 0 skips the "
                             "latency phase (default: %(default)s)")
    parser.add_argument("--senders", type=int, default=8, metavar="K",
                        help="concurrent REST senders in the throughput phase (default: %(default)s)")
    parser.add_argument("--latency-senders", type=int, default=4, metavar="K",
                        help="sender threads sharing the paced schedule of the latency phase (default: %(default)s)")
    parser.add_argument("--celery-concurrency", type=int, default=4, metavar="C",
                        help="threads of the no-op Celery worker, as the bus worker's -c (default: %(default)s)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the raw Celery and Redis pub/sub measurements")
    parser.add_argument("--phase-timeout", type=float, default=90.0, metavar="S",
                        help="upper bound in seconds on each phase (default: %(default)s)")
    parser.add_argument("--bus-log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="LOG_LEVEL of the bus processes (default: %(default)s; INFO logs every message)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the bus's data and log directories")
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.messages < 1 or args.senders < 1 or args.latency_senders < 1 or args.celery_concurrency < 1:
        parser.error("--messages, --senders, --latency-senders and --celery-concurrency must be at least 1")
    if args.rate < 0:
        parser.error("--rate must not be negative")
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    """Run every requested measurement, stopping all servers at the end; print the report."""
    sys.setswitchinterval(0.001)  # let the receiver thread take the GIL promptly
    needs_redis = "redis" in args.modes or not args.no_baselines
    results: list[PhaseResult] = []
    celery = None
    pubsub: list[PubSubResult] = []
    with contextlib.ExitStack() as cleanup:
        redis_server = None
        if needs_redis:
            redis_server = RedisServer()
            cleanup.callback(redis_server.cleanup)
            progress(f"redis-server on port {redis_server.port}")
        for mode in args.modes:
            results.extend(bench_bus_mode(mode, redis_server, args))
        if not args.no_baselines:
            celery = bench_celery_noop(redis_server, args.messages, args.celery_concurrency, args.phase_timeout)
            progress(f"redis pub/sub: {args.messages} messages unpaced" +
                     (f", then {args.messages} at {args.rate:g}/s" if args.rate else ""))
            pubsub.append(bench_pubsub(redis_server, args.messages, None, args.phase_timeout))
            if args.rate:
                pubsub.append(bench_pubsub(redis_server, args.messages, args.rate, args.phase_timeout))
        progress("stopping servers")
    print_report(results, celery, pubsub)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse options, run, and turn Ctrl-C / SIGTERM into a clean stop."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except KeyboardInterrupt:
        progress("interrupted; servers stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
