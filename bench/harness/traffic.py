"""Benchmark traffic: sandboxes with their tokens, a mailbox receiver that ACKs, and sender processes.

Senders run in separate processes (`--sender-procs`), so the client's GIL does not sit between the bus and
its measurement; the receiver runs in the benchmark's own process. Send and receive times are both
`time.perf_counter()` (CLOCK_MONOTONIC, system-wide on Linux), so they compare across processes.
Three ways to send (`method`): `rest` (POST /api/v1/messages, one message per request), `batch`
(POST /api/v1/messages/batch) and `socket` (`send` frames on the sender's own mailbox socket).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from websockets.exceptions import ConnectionClosed

from tests.servers import ADMIN_HEADERS, ws_connect

HTTP_TIMEOUT = 10.0
IDLE_TIMEOUT = 15.0  # give up waiting for frames after this long without a new one


@dataclass(frozen=True)
class Sandbox:
    """A registered sandbox and the sandbox token the bus issued for it."""

    sandbox_id: str
    token: str

    @property
    def headers(self) -> dict:
        """The Authorization header of its token."""
        return {"Authorization": f"Bearer {self.token}"}


def register(base_url: str, sandbox_id: str) -> Sandbox:
    """Register `sandbox_id` (with the admin key) and return it with its fresh sandbox token."""
    response = httpx.post(f"{base_url}/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id},
                          headers=ADMIN_HEADERS, timeout=HTTP_TIMEOUT)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"registering {sandbox_id} failed: {response.status_code} {response.text}")
    return Sandbox(sandbox_id, response.json()["token"])


def message_body(sender: str, receiver: str, index: int, sent_at: float, message_type: str) -> dict:
    """Benchmark message `index`; its content carries the index and the send time."""
    return {"from_sandbox": sender, "to_sandbox": receiver, "from_agent": "bench", "message_type": message_type,
            "content": {"i": index, "t": sent_at}}


class MailboxReceiver(threading.Thread):
    """Reads the receiver's mailbox socket in a thread, records when each benchmark message arrives and (with
    `ack`) answers each `message` frame with an `ack` frame for its seq.

    The constructor reads the `welcome` frame, so the mailbox is subscribed before anything is sent.
    """

    def __init__(self, ws_url: str, sandbox: Sandbox, ack: bool = True):
        super().__init__(name="mailbox-receiver", daemon=True)
        self.ws = ws_connect(f"{ws_url}/ws/sandboxes/{sandbox.sandbox_id}?since=0", token=sandbox.token,
                             open_timeout=HTTP_TIMEOUT, max_size=None)
        welcome = json.loads(self.ws.recv(timeout=HTTP_TIMEOUT))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected a welcome frame, got {welcome}")
        self.ack = ack
        self.lock = threading.Lock()
        self.arrived: dict[int, float] = {}  # index -> perf_counter at arrival
        self.sent_in_frame: dict[int, float] = {}  # index -> send time carried in the content
        self.duplicates = 0
        self.other_frames = 0
        self.error_frames: Counter = Counter()
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
                self.error = f"receiver socket closed: {exc}"

    def _record(self, raw, arrived: float) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = {}
        if frame.get("type") == "error":
            with self.lock:
                self.error_frames[frame.get("code", "?")] += 1
            return
        content = frame.get("message", {}).get("content") if frame.get("type") == "message" else None
        if not isinstance(content, dict) or "i" not in content:
            with self.lock:
                self.other_frames += 1
            return
        if self.ack and isinstance(frame.get("seq"), int):
            self.ws.send(f'{{"type":"ack","seq":{frame["seq"]:d}}}')
        index = content["i"]
        with self.lock:
            if index in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[index] = arrived
                self.sent_in_frame[index] = content["t"]

    def missing(self, expected: set[int]) -> set[int]:
        """Which of `expected` have not arrived yet."""
        with self.lock:
            return expected - self.arrived.keys()

    def wait_for_all(self, expected: set[int], deadline: float) -> None:
        """Wait until every index in `expected` arrived, no frame came for IDLE_TIMEOUT s, or `deadline`."""
        last_count, last_progress = -1, time.monotonic()
        while self.missing(expected) and self.is_alive():
            now = time.monotonic()
            with self.lock:
                count = len(self.arrived)
            if count != last_count:
                last_count, last_progress = count, now
            if now - last_progress > IDLE_TIMEOUT or now > deadline:
                return
            time.sleep(0.01)

    def halt(self) -> None:
        """Stop receiving and close the socket."""
        self._halt.set()
        self.join(timeout=5)
        self.ws.close()


@dataclass
class SendLog:
    """What a sender process did: send and accept times of accepted messages, answers by kind, failures."""

    sent_at: dict[int, float] = field(default_factory=dict)
    accept_ms: list[float] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)  # "202", "429 +Retry-After", "conn ReadError", ...
    item_errors: Counter = field(default_factory=Counter)  # per-item errors of batch/socket sends, by code
    first_error: str | None = None
    unavailable: str | None = None  # "batch endpoint not available", "send frame not available"
    started_at: float = 0.0
    finished_at: float = 0.0
    cpu_seconds: float = 0.0

    def accepted(self, index: int, sent_at: float, done: float) -> None:
        """Record one accepted message."""
        self.sent_at[index] = sent_at
        self.accept_ms.append((done - sent_at) * 1000)

    def failed(self, kind: str, text: str) -> None:
        """Count one refused or failed send by `kind`, keeping the first reason."""
        self.answers[kind] += 1
        self.first_error = self.first_error or text[:300]

    def merge(self, other: SendLog) -> None:
        """Add another process's log to this one."""
        self.sent_at.update(other.sent_at)
        self.accept_ms.extend(other.accept_ms)
        self.answers.update(other.answers)
        self.item_errors.update(other.item_errors)
        self.first_error = self.first_error or other.first_error
        self.unavailable = self.unavailable or other.unavailable
        self.started_at = min(filter(None, (self.started_at, other.started_at)), default=0.0)
        self.finished_at = max(self.finished_at, other.finished_at)
        self.cpu_seconds += other.cpu_seconds


def answer_kind(response: httpx.Response) -> str:
    """The status as a string, with "+Retry-After" / "no Retry-After" for 429 and 503."""
    status = response.status_code
    if status in (429, 503):
        return f"{status} {'+Retry-After' if 'retry-after' in response.headers else 'no Retry-After'}"
    return str(status)
