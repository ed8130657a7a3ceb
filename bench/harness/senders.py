"""Sender processes: each runs one thread per client connection and sends its share of the messages.

A plan is split over `procs` processes (message i goes to process i % procs); each process opens its
connections, reports ready, waits for the common start time, then sends: unpaced, or paced (message i is
due at start + i/rate: open loop, a sender that falls behind sends at once). Each connection belongs to a
sender sandbox of its own and authenticates with that sandbox's token.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import httpx

from harness.report import sleep_until
from harness.traffic import HTTP_TIMEOUT, IDLE_TIMEOUT, Sandbox, SendLog, answer_kind, message_body

METHODS = ("rest", "batch", "socket")


@dataclass(frozen=True)
class SendPlan:
    """What to send: `count` messages by `method` over one connection per sandbox of `senders`."""

    method: str
    base_url: str
    ws_url: str
    senders: tuple[Sandbox, ...]
    receiver: str
    count: int
    rate: float | None = None
    batch_size: int = 50
    window: int = 32
    message_type: str = "notification"
    time_limit: float = 120.0


class _Shared:
    """What the threads of one sender process share: the indexes left, the log and when to stop."""

    def __init__(self, plan: SendPlan, indexes: list[int], start: float, stop):
        self.plan = plan
        self.indexes: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in indexes:
            self.indexes.put(index)
        self.start = start
        self.deadline = start + plan.time_limit
        self.stop = stop
        self.log = SendLog()
        self.lock = threading.Lock()

    def next_index(self) -> int | None:
        """The next index to send, or None when all are taken, the time is up or the run was stopped."""
        if self.stop.is_set() or time.perf_counter() > self.deadline:
            return None
        try:
            index = self.indexes.get_nowait()
        except queue.Empty:
            return None
        if self.plan.rate:
            sleep_until(self.start + index / self.plan.rate)
        return index

    def body(self, sandbox: Sandbox, index: int, sent_at: float) -> dict:
        return message_body(sandbox.sandbox_id, self.plan.receiver, index, sent_at, self.plan.message_type)


def _rest_connection(shared: _Shared, sandbox: Sandbox) -> None:
    log, lock = shared.log, shared.lock
    with httpx.Client(base_url=shared.plan.base_url, timeout=HTTP_TIMEOUT, headers=sandbox.headers) as client:
        while (index := shared.next_index()) is not None:
            sent_at = time.perf_counter()
            try:
                response = client.post("/api/v1/messages", json=shared.body(sandbox, index, sent_at))
            except httpx.HTTPError as exc:
                with lock:
                    log.failed(f"conn {type(exc).__name__}", f"{type(exc).__name__}: {exc}")
                continue
            done = time.perf_counter()
            kind = answer_kind(response)
            with lock:
                if response.status_code == 202:
                    log.answers[kind] += 1
                    log.accepted(index, sent_at, done)
                else:
                    log.failed(kind, f"HTTP {response.status_code}: {response.text[:200]}")


def _batch_items(answer) -> list:
    """The per-item results of a batch answer: the first list among its usual keys (or the answer itself)."""
    if isinstance(answer, list):
        return answer
    if isinstance(answer, dict):
        for key in ("results", "items", "messages", "accepted", "data"):
            if isinstance(answer.get(key), list):
                return answer[key]
    return []


def _batch_connection(shared: _Shared, sandbox: Sandbox) -> None:
    log, lock = shared.log, shared.lock
    with httpx.Client(base_url=shared.plan.base_url, timeout=HTTP_TIMEOUT, headers=sandbox.headers) as client:
        while True:
            batch = []
            while len(batch) < shared.plan.batch_size and (index := shared.next_index()) is not None:
                batch.append(index)
            if not batch or log.unavailable:
                return
            sent_at = time.perf_counter()
            body = {"messages": [shared.body(sandbox, index, sent_at) for index in batch]}
            try:
                response = client.post("/api/v1/messages/batch", json=body)
            except httpx.HTTPError as exc:
                with lock:
                    log.failed(f"conn {type(exc).__name__}", f"{type(exc).__name__}: {exc}")
                continue
            done = time.perf_counter()
            with lock:
                _record_batch(log, response, batch, sent_at, done)


def _record_batch(log: SendLog, response: httpx.Response, batch: list[int], sent_at: float, done: float) -> None:
    if response.status_code in (404, 405):
        log.unavailable = "batch endpoint not available"
        log.failed(str(response.status_code), f"HTTP {response.status_code}: {response.text[:200]}")
        return
    kind = answer_kind(response)
    try:
        items = _batch_items(response.json())
    except ValueError:
        items = []
    if response.status_code >= 300 or len(items) != len(batch):
        log.failed(kind, f"HTTP {response.status_code} for a batch of {len(batch)}: {response.text[:200]}")
        return
    log.answers[kind] += 1
    for position, (index, item) in enumerate(zip(batch, items, strict=False)):
        if isinstance(item, dict) and isinstance(item.get("index"), int) and 0 <= item["index"] < len(batch):
            index = batch[item["index"]]
        if isinstance(item, dict) and "error" not in item and (item.get("message_id") or item.get("id")):
            log.accepted(index, sent_at, done)
        else:
            error = item.get("error") if isinstance(item, dict) else None
            log.item_errors[error.get("code", "?") if isinstance(error, dict) else "?"] += 1
            log.first_error = log.first_error or f"batch item {position}: {json.dumps(item)[:200]}"


class _SocketConnection:
    """A sender sandbox's own mailbox socket, sending `send` frames with up to `window` unanswered."""

    def __init__(self, plan: SendPlan, sandbox: Sandbox):
        from tests.servers import ws_connect

        self.sandbox = sandbox
        self.ws = ws_connect(f"{plan.ws_url}/ws/sandboxes/{sandbox.sandbox_id}?since=0", token=sandbox.token,
                             open_timeout=HTTP_TIMEOUT, max_size=None)
        welcome = json.loads(self.ws.recv(timeout=HTTP_TIMEOUT))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected a welcome frame, got {welcome}")
        self.window = threading.Semaphore(plan.window)
        self.pending: dict[int, float] = {}  # ref (the message index) -> send time
        self.lock = threading.Lock()
        self.writing_done = threading.Event()

    def run(self, shared: _Shared) -> None:
        reader = threading.Thread(target=self._read, args=(shared,), name="socket-reader", daemon=True)
        reader.start()
        try:
            while (index := shared.next_index()) is not None and not shared.log.unavailable:
                while not self.window.acquire(timeout=1.0):
                    if not reader.is_alive() or shared.stop.is_set():
                        return
                sent_at = time.perf_counter()
                with self.lock:
                    self.pending[index] = sent_at
                frame = {"type": "send", "ref": index, "message": shared.body(self.sandbox, index, sent_at)}
                self.ws.send(json.dumps(frame, separators=(",", ":")))
        finally:
            self.writing_done.set()
            reader.join(IDLE_TIMEOUT + 5)
            self.ws.close()

    def _read(self, shared: _Shared) -> None:
        log, idle_since = shared.log, time.monotonic()
        while True:
            with self.lock:
                if self.writing_done.is_set() and not self.pending:
                    return
            if time.monotonic() - idle_since > IDLE_TIMEOUT or shared.stop.is_set():
                with shared.lock:
                    log.failed("no answer", f"{len(self.pending)} send frame(s) unanswered")
                return
            try:
                frame = json.loads(self.ws.recv(timeout=0.25))
            except TimeoutError:
                continue
            except Exception as exc:  # the socket closed
                with shared.lock:
                    log.failed(f"conn {type(exc).__name__}", f"sender socket: {exc}")
                return
            idle_since = time.monotonic()
            self._answer(shared, frame, time.perf_counter())

    def _answer(self, shared: _Shared, frame: dict, done: float) -> None:
        log, ref = shared.log, frame.get("ref")
        with self.lock:
            sent_at = self.pending.pop(ref, None) if isinstance(ref, int) else None
        if frame.get("type") not in ("accepted", "error"):
            return
        if sent_at is not None:
            self.window.release()
        with shared.lock:
            if frame["type"] == "accepted" and sent_at is not None:
                log.answers["accepted"] += 1
                log.accepted(ref, sent_at, done)
            elif frame["type"] == "error" and sent_at is not None:
                log.item_errors[frame.get("code", "?")] += 1
                log.first_error = log.first_error or f"send frame error: {json.dumps(frame)[:200]}"
            elif frame["type"] == "error" and frame.get("code") == "invalid_frame":
                log.unavailable = "send frame not available"
                log.first_error = log.first_error or f"send frame refused: {json.dumps(frame)[:200]}"
                with self.lock:
                    self.pending.clear()
                self.window.release(shared.plan.window)


def sender_process(plan: SendPlan, slot: int, procs: int, out, go, start_value, stop) -> None:
    """Entry point of one sender process: connect, report ready, wait for `go`, send, put the SendLog on `out`."""
    sys.setswitchinterval(0.001)
    try:
        sandboxes = plan.senders[slot::procs]
        sockets = [_SocketConnection(plan, s) for s in sandboxes] if plan.method == "socket" else []
        out.put(("ready", slot, None))
        go.wait()
        shared = _Shared(plan, list(range(slot, plan.count, procs)), start_value.value, stop)
        cpu_start = time.process_time()
        if plan.method == "socket":
            targets = [(conn.run, (shared,)) for conn in sockets]
        else:
            connection = _rest_connection if plan.method == "rest" else _batch_connection
            targets = [(connection, (shared, s)) for s in sandboxes]
        threads = [threading.Thread(target=fn, args=a, daemon=True) for fn, a in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shared.log.started_at = shared.start
        shared.log.finished_at = time.perf_counter()
        shared.log.cpu_seconds = time.process_time() - cpu_start
        out.put(("log", slot, shared.log))
    except KeyboardInterrupt:
        return
    except BaseException:
        out.put(("error", slot, traceback.format_exc()))


def run_senders(plan: SendPlan, procs: int, on_ready=None, timeout: float = 60.0) -> SendLog:
    """Send `plan` from `procs` processes (started with `spawn`); call `on_ready()` once all are connected,
    just before they start; return their merged SendLog."""
    ctx = multiprocessing.get_context("spawn")
    out, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    start_value = ctx.Value("d", 0.0)
    children = [ctx.Process(target=sender_process, args=(plan, slot, procs, out, go, start_value, stop),
                            name=f"bench-sender-{slot}", daemon=True) for slot in range(procs)]
    for child in children:
        child.start()
    try:
        _collect(out, "ready", procs, timeout, children)
        if on_ready:
            on_ready(children)
        start_value.value = time.perf_counter() + 0.05
        go.set()
        log = SendLog()
        for part in _collect(out, "log", procs, plan.time_limit + IDLE_TIMEOUT + 30, children):
            log.merge(part)
        return log
    finally:
        stop.set()
        for child in children:
            child.join(5)
            if child.is_alive():
                child.terminate()
                child.join(5)


def _collect(out, kind: str, count: int, timeout: float, children) -> list:
    deadline, items = time.monotonic() + timeout, []
    while len(items) < count:
        try:
            what, slot, value = out.get(timeout=0.5)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"sender processes: {len(items)}/{count} reported {kind!r} in {timeout:g}s") from None
            if any(not c.is_alive() and c.exitcode for c in children):
                raise RuntimeError("a sender process died") from None
            continue
        if what == "error":
            raise RuntimeError(f"sender process {slot} failed:\n{value}")
        if what == kind:
            items.append(value)
    return items
