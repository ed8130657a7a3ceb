"""Traffic for fault tests: sender threads over REST, mailbox readers over real WebSockets that reconnect with
`since`, and the final account of every message against the mailboxes and the dead-letter queue.

Every message carries a client-chosen `message_id`, so a request that failed on the client's side (connection
refused or reset while the API restarts) can still be looked up: if the bus committed it anyway it must be
delivered like an accepted one; if not, it must be in no mailbox.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.servers import bus_client, wait_for
from tests.servers import ws_connect as connect

HTTP_TIMEOUT = 10
ACK_TYPES = ("request", "command")


def register(http: httpx.Client, *sandboxes: str) -> None:
    """Register each sandbox (201, or 200 when it already was)."""
    for sandbox in sandboxes:
        answer = http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox})
        assert answer.status_code in (200, 201), answer.text


@dataclass
class Outcome:
    """What the senders saw: accepted (202) message ids and the ids of requests that failed, with the reason."""

    accepted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    intended: dict[str, tuple[str, str]] = field(default_factory=dict)  # message_id -> (from_sandbox, to_sandbox)
    types: dict[str, str] = field(default_factory=dict)  # message_id -> message_type


class Senders:
    """Threads that POST messages until each has `per_sender` accepted (or tried 4x as many), `pause` s apart.

    Sender `i` sends as `sandboxes[i]`; message `n` of a sender goes to `recipients[n % len(recipients)]`, every
    `broadcast_every`-th is a broadcast (to every registered sandbox but the sender), and every `request_every`-th
    direct message is a `request` (the others are notifications). A failed request (connection error, non-202)
    is recorded and the sender moves on after `retry_pause` s.
    """

    def __init__(self, base_url: str | list[str], sandboxes: list[str], recipients: list[str], tag: str,
                 per_sender: int, pause: float = 0.0, retry_pause: float = 0.05, broadcast_every: int = 40,
                 request_every: int = 0):
        self.base_urls = base_url if isinstance(base_url, list) else [base_url]
        self.sandboxes = sandboxes
        self.recipients = recipients
        self.tag = tag
        self.per_sender = per_sender
        self.pause = pause
        self.retry_pause = retry_pause
        self.broadcast_every = broadcast_every
        self.request_every = request_every
        self.outcome = Outcome()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"sender-{i}", daemon=True)
                         for i in range(len(sandboxes))]

    @property
    def accepted_count(self) -> int:
        with self._lock:
            return len(self.outcome.accepted)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def start(self) -> Senders:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float = 180) -> Outcome:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "senders did not finish"
        assert not self.errors, self.errors
        return self.outcome

    def _run(self, index: int) -> None:
        sender = self.sandboxes[index]
        base_url = self.base_urls[index % len(self.base_urls)]
        accepted = attempts = 0
        try:
            with bus_client(base_url, timeout=HTTP_TIMEOUT) as http:
                while accepted < self.per_sender and attempts < 4 * self.per_sender:
                    message_id = f"{self.tag}-{index}-{attempts:04d}"
                    body = self._body(sender, message_id, attempts)
                    attempts += 1
                    with self._lock:
                        self.outcome.intended[message_id] = (sender, body["to_sandbox"])
                        self.outcome.types[message_id] = body["message_type"]
                    try:
                        answer = http.post("/api/v1/messages", json=body)
                        failure = None if answer.status_code == 202 else f"{answer.status_code} {answer.text[:200]}"
                    except httpx.HTTPError as exc:
                        failure = f"{type(exc).__name__}: {exc}"
                    with self._lock:
                        if failure is None:
                            self.outcome.accepted.append(message_id)
                        else:
                            self.outcome.failed[message_id] = failure
                    if failure is None:
                        accepted += 1
                        if self.pause:
                            time.sleep(self.pause)
                    else:
                        time.sleep(self.retry_pause)
        except Exception as exc:  # a bug of the test itself: report it from join()
            self.errors.append(f"{sender}: {type(exc).__name__}: {exc}")

    def _body(self, sender: str, message_id: str, n: int) -> dict:
        if self.broadcast_every and n % self.broadcast_every == self.broadcast_every - 1:
            to, message_type = "broadcast", "notification"
        else:
            to = self.recipients[n % len(self.recipients)]
            message_type = "request" if self.request_every and n % self.request_every == 0 else "notification"
        return {"message_id": message_id, "from_sandbox": sender, "to_sandbox": to, "from_agent": "load",
                "message_type": message_type, "content": {"n": n}}


class MailboxReader(threading.Thread):
    """Holds `sandbox`'s mailbox socket in a thread, the way a client should: process each entry once (dedupe by
    seq), ACK requests and commands, and on any drop reconnect with `since=<last seq processed>` until stopped.

    `drop()` cuts the TCP connection under the client (no close frame, frames in flight are lost); `go_offline()`
    closes the socket cleanly and stays away until `come_back()`. Within one connection the entries must arrive
    as since+1, since+2, ... (frames marked `redelivered` aside); anything else is recorded in `violations`.
    """

    def __init__(self, ws_url: str, sandbox: str, lag_on_reconnect: int = 0):
        super().__init__(name=f"reader-{sandbox}", daemon=True)
        self.ws_url = ws_url
        self.sandbox = sandbox
        self.lag_on_reconnect = lag_on_reconnect  # reconnect with since = last seq - lag (the client lost its cursor)
        self.entries: dict[int, str] = {}  # seq -> message_id, each processed once
        self.last_seq = 0
        self.connections = 0
        self.drops = 0  # connections that ended under the client (dropped, API restarted)
        self.failed_connects = 0
        self.resent = 0  # entries sent again after a reconnect with a lagging since (deduped by seq)
        self.redelivered = 0  # frames marked redelivered (an unacknowledged entry pushed again)
        self.acks_sent = 0
        self.arrivals: list[float] = []  # when each new entry arrived
        self.violations: list[str] = []
        self.lock = threading.Lock()
        self._ws = None
        self._halt = threading.Event()
        self._online = threading.Event()
        self._online.set()
        self._connected = threading.Event()

    # -- control, from the test's thread
    def start_and_wait(self, timeout: float = 15) -> MailboxReader:
        """Start the thread and wait until the first socket got its welcome."""
        self.start()
        assert self._connected.wait(timeout), f"{self.sandbox}: no welcome within {timeout}s"
        return self

    def drop(self) -> None:
        """Cut the TCP connection abruptly (like a network failure); the reader reconnects with since."""
        ws = self._ws
        if ws is not None:
            try:
                ws.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def go_offline(self) -> None:
        """Close the socket cleanly and stay disconnected until `come_back()`."""
        self._online.clear()
        ws = self._ws
        if ws is not None:
            ws.close()

    def come_back(self) -> None:
        self._online.set()

    def stop(self) -> None:
        self._halt.set()
        self._online.set()
        ws = self._ws
        if ws is not None:
            ws.close()
        self.join(10)

    def wait_until(self, head_seq: int, timeout: float) -> None:
        """Wait until every entry up to `head_seq` was processed."""
        wait_for(lambda: self.last_seq >= head_seq, timeout,
                 f"{self.sandbox}'s socket to process seq 1..{head_seq} (it is at {self.last_seq})", interval=0.1)

    # -- the client
    def run(self) -> None:
        while not self._halt.is_set():
            self._online.wait()
            if self._halt.is_set():
                return
            since = self.last_seq
            if self.connections and self.lag_on_reconnect:
                since = max(0, self.last_seq - self.lag_on_reconnect)
            connections = self.connections
            try:
                with connect(f"{self.ws_url}/ws/sandboxes/{self.sandbox}?since={since}", open_timeout=10,
                             close_timeout=2) as ws:
                    self._ws = ws
                    self._read(ws, since)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                if self.connections == connections:
                    self.failed_connects += 1  # e.g. the API is down: try again
                elif self._online.is_set() and not self._halt.is_set():
                    self.drops += 1
            except Exception as exc:  # a bug of the test itself
                self.violations.append(f"reader crashed: {type(exc).__name__}: {exc}")
                return
            finally:
                self._ws = None
            if not self._halt.is_set():
                time.sleep(0.05)

    def _read(self, ws, since: int) -> None:
        welcome = json.loads(ws.recv(timeout=10))
        if welcome.get("type") != "welcome" or welcome.get("resumed_from") != since:
            self.violations.append(f"bad welcome {welcome} for since={since}")
            return
        self.connections += 1
        self._connected.set()
        expected = since + 1
        while not self._halt.is_set() and self._online.is_set():
            try:
                raw = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            frame = json.loads(raw)
            if frame.get("type") != "message":
                if frame.get("type") == "error":
                    self.violations.append(f"error frame {frame}")
                continue
            seq, message = frame["seq"], frame["message"]
            with self.lock:
                if frame.get("redelivered"):
                    self.redelivered += 1
                    if self.entries.get(seq, message["message_id"]) != message["message_id"]:
                        self.violations.append(f"redelivered seq {seq} carries another message")
                    if seq not in self.entries:  # pushed again before this connection sent it: still an entry
                        self.violations.append(f"redelivered seq {seq} before its first frame")
                else:
                    if seq != expected:
                        self.violations.append(f"connection {self.connections} (since={since}): seq {seq}, "
                                               f"expected {expected}")
                    expected = seq + 1
                    if seq in self.entries:
                        self.resent += 1
                        if self.entries[seq] != message["message_id"]:
                            self.violations.append(f"seq {seq} was {self.entries[seq]}, now {message['message_id']}")
                    else:
                        self.entries[seq] = message["message_id"]
                        self.arrivals.append(time.monotonic())
                        self.last_seq = max(self.last_seq, seq)
            if message["message_type"] in ACK_TYPES:
                ws.send(json.dumps({"type": "ack", "seq": seq}))
                self.acks_sent += 1

    def longest_gap(self) -> float:
        """The longest time, in seconds, between two new entries arriving (a delivery stall, while traffic ran)."""
        return max((b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)), default=0.0)

    def summary(self) -> str:
        return (f"{self.sandbox}: {len(self.entries)} entries, {self.connections} connections, {self.drops} drops, "
                f"{self.failed_connects} failed connects, {self.resent} resent, {self.redelivered} redelivered, "
                f"longest gap between new entries {self.longest_gap():.2f}s")


# ------------------------------------------------------------------------------------------------- the account

def mailbox(http: httpx.Client, sandbox: str) -> list[tuple[int, str, str]]:
    """Every entry of `sandbox`'s mailbox as (seq, message_id, state), by paging the polling endpoint."""
    entries, since = [], 0
    while True:
        page = http.get(f"/api/v1/sandboxes/{sandbox}/messages", params={"since": since, "limit": 1000}).json()
        entries += [(e["seq"], e["message"]["message_id"], e["state"]) for e in page["entries"]]
        if not page["entries"]:
            return entries
        since = page["next_since"]


def dead_letters(http: httpx.Client) -> list[dict]:
    """Every dead letter of the bus."""
    found, after = [], 0
    while True:
        page = http.get("/api/v1/dead-letters", params={"after": after, "limit": 1000}).json()
        found += page["dead_letters"]
        if page["next_after"] is None:
            return found
        after = page["next_after"]


@dataclass
class Account:
    """Where every committed message ended, per intended recipient."""

    committed: dict[str, set[str]]  # message_id -> intended recipients
    mailboxes: dict[str, list[tuple[int, str, str]]]
    dead: list[dict]
    committed_unanswered: list[str]  # failed on the client's side, yet committed by the bus
    never_committed: list[str]

    def missing(self) -> list[tuple[str, str]]:
        """(message_id, recipient) pairs with neither a mailbox entry nor a dead letter."""
        placed = {(mid, sandbox) for sandbox, entries in self.mailboxes.items() for _, mid, _ in entries}
        dead = {(d["message_id"], d["sandbox_id"]) for d in self.dead}
        return [(mid, r) for mid, recipients in self.committed.items() for r in recipients
                if (mid, r) not in placed and (mid, r) not in dead and (mid, None) not in dead]

    def placed(self, message_id: str) -> bool:
        """The message sits in each of its intended mailboxes, or is dead-lettered."""
        return not [pair for pair in self.missing() if pair[0] == message_id]

    def entry_count(self) -> int:
        return sum(len(entries) for entries in self.mailboxes.values())

    def expected_count(self) -> int:
        """(message, recipient) pairs the committed messages owe: each one entry or one dead letter."""
        return sum(len(recipients) for recipients in self.committed.values())

    def duplicate_count(self) -> int:
        """Mailbox entries beyond the first for the same (mailbox, message)."""
        return sum(count - 1 for entries in self.mailboxes.values()
                   for count in Counter(mid for _, mid, _ in entries).values())


def intended_recipients(sender: str, to: str, sandboxes: list[str]) -> set[str]:
    """Who must get a message: the addressed sandbox, or for a broadcast every registered sandbox but the sender."""
    return {s for s in sandboxes if s != sender} if to == "broadcast" else {to}


def take_account(http: httpx.Client, outcome: Outcome, sandboxes: list[str]) -> Account:
    """Look up every failed request (committed or not), read every mailbox and the dead-letter queue."""
    committed_unanswered, never_committed = [], []
    for message_id in outcome.failed:
        status = http.get(f"/api/v1/messages/{message_id}").status_code
        assert status in (200, 404), f"GET /messages/{message_id}: {status}"
        (committed_unanswered if status == 200 else never_committed).append(message_id)
    committed = {mid: intended_recipients(*outcome.intended[mid], sandboxes)
                 for mid in [*outcome.accepted, *committed_unanswered]}
    return Account(committed, {s: mailbox(http, s) for s in sandboxes}, dead_letters(http),
                   committed_unanswered, never_committed)


def settle(http: httpx.Client, outcome: Outcome, sandboxes: list[str], timeout: float) -> Account:
    """Wait (at most `timeout` s) until every committed message sits in each intended mailbox or is dead-lettered;
    return the account. On timeout, the assertions of `assert_exactly_once` say what is missing."""
    account = take_account(http, outcome, sandboxes)
    deadline = time.monotonic() + timeout
    while account.missing() and time.monotonic() < deadline:
        time.sleep(0.5)
        account = Account(account.committed, {s: mailbox(http, s) for s in sandboxes}, dead_letters(http),
                          account.committed_unanswered, account.never_committed)
    return account


def assert_exactly_once(account: Account) -> None:
    """Every committed message: exactly one entry per intended recipient or a dead letter; nothing else anywhere;
    each mailbox numbered 1..N without gaps or repeats."""
    problems = []
    for sandbox, entries in account.mailboxes.items():
        seqs = [seq for seq, _, _ in entries]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{sandbox}: seqs are not 1..{len(seqs)}: {_ranges(seqs)}")
        for mid, count in Counter(mid for _, mid, _ in entries).items():
            if count > 1:
                problems.append(f"{sandbox}: message {mid} has {count} entries")
            if mid not in account.committed:
                problems.append(f"{sandbox}: message {mid} was never committed"
                                if mid in account.never_committed else f"{sandbox}: unknown message {mid}")
            elif sandbox not in account.committed[mid]:
                problems.append(f"{sandbox}: got {mid}, which is not addressed to it")
    dead = defaultdict(list)
    for d in account.dead:
        dead[d["message_id"]].append(d)
    for mid, letters in dead.items():
        if mid not in account.committed:
            problems.append(f"dead letter for a message that was not committed: {letters}")
    missing = account.missing()
    if missing:
        problems.append(f"{len(missing)} (message, recipient) pairs in no mailbox and no dead letter, "
                        f"e.g. {missing[:5]}")
    assert not problems, "\n".join(problems[:40])


def _ranges(seqs: list[int]) -> str:
    if not seqs:
        return "[]"
    out, start, prev = [], seqs[0], seqs[0]
    for seq in seqs[1:]:
        if seq != prev + 1:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = seq
        prev = seq
    out.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(out)


def assert_reader_saw_every_entry(reader: MailboxReader, account: Account) -> None:
    """The socket client processed every entry of its mailbox exactly once (after dedupe by seq), the same
    message at the same seq as the database, and every connection streamed since+1, since+2, ... in order."""
    assert not reader.violations, f"{reader.sandbox}: {reader.violations[:10]}"
    in_database = {seq: mid for seq, mid, _ in account.mailboxes[reader.sandbox]}
    assert reader.entries == in_database, (
        f"{reader.sandbox}: socket saw {len(reader.entries)} entries, the mailbox holds {len(in_database)}; "
        f"missing seqs {sorted(set(in_database) - set(reader.entries))[:20]}, "
        f"different {[s for s in reader.entries if in_database.get(s) != reader.entries[s]][:20]}")


def log_lines(bus, name: str, *needles: str) -> list[str]:
    """Lines of log `name` of `bus` containing any of `needles`."""
    path = bus.dir / f"{name}.log"
    if not path.exists():
        return []
    return [line for line in path.read_text(errors="replace").splitlines() if any(n in line for n in needles)]


def assert_workers_alive(bus) -> None:
    """Every worker the bus still counts on is running (none stopped itself, e.g. on a broker connection loss)."""
    exited = {name: proc.returncode for name, proc in bus.workers.items() if proc.poll() is not None}
    assert not exited, f"workers exited: {exited}\n" + "\n".join(
        line for name in exited for line in log_lines(bus, name, "CRITICAL", "Unrecoverable"))


def report(what: str, outcome: Outcome, account: Account, started: float, *extra: str) -> None:
    """Print the figures of a fault run (shown with `pytest -s` or on failure)."""
    print(f"\n[{what}] sent={len(outcome.accepted) + len(outcome.failed)} accepted={len(outcome.accepted)} "
          f"failed={len(outcome.failed)} (committed anyway={len(account.committed_unanswered)}, "
          f"never committed={len(account.never_committed)}) owed={account.expected_count()} "
          f"entries={account.entry_count()} dead_letters={len(account.dead)} duplicates={account.duplicate_count()} "
          f"missing={len(account.missing())} took={time.monotonic() - started:.1f}s")
    for line in extra:
        print(f"[{what}] {line}")
