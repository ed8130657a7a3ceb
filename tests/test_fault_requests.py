"""Every REST request around broker faults gets an HTTP answer (real processes: collab-bus api, worker and beat on
Redis): a worker killed with SIGKILL and restarted, Redis stopped and started again, while 600 notifications are
sent. No request may end in a reset connection or a connection closed without a response.

A kept-alive connection is only safe while the server keeps it open at least as long as its client means to reuse
it: a client that sends on an idle connection at the moment the server closes it gets a reset, and nothing is
logged anywhere. httpx retires idle connections after 5 s, and just before sending checks whether the server has
closed one: a check that loses the race against a close at that instant (with gunicorn's default keep-alive of
2 s, this happened to idle httpx connections now and then, faults or not). The mailbox poller here polls every
4 s and reuses its connection as long as the server has not announced `Connection: close`, so it stands for a
client whose check lost that race: it needs the server's keep-alive to outlast its pool's.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

from tests.servers import TEST_ADMIN_KEY, bus_client, wait_for
from tests.test_faults import SWEEP, VISIBILITY, buses, redis_aof  # noqa: F401 (fixtures)
from tests.traffic import Senders, log_lines, mailbox, register

POLL_EVERY = 4.0  # below httpx's keepalive_expiry (5 s): a pooled httpx connection would be reused after this idle
HTTP_ANSWERS = ("202", "503", "429")  # what a send may answer during a broker fault (202: the outbox sweep)


class KeepAlivePoller(threading.Thread):
    """Polls a mailbox every `POLL_EVERY` s on one kept-alive HTTP/1.1 connection, as a client's connection pool
    does: the connection is reused for as long as the server has not announced `Connection: close`. A request
    that gets no complete response is recorded in `errors`, and the poller connects again."""

    def __init__(self, base_url: str, sandbox: str):
        super().__init__(name=f"poller-{sandbox}", daemon=True)
        self.address = (urlsplit(base_url).hostname, urlsplit(base_url).port)
        self.sandbox = sandbox
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.connections = 0
        self._sock: socket.socket | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        while not self._halt.wait(POLL_EVERY):
            try:
                self.statuses.append(self._get())
            except OSError as exc:  # reset, closed without a response, timed out
                self.errors.append(f"poll {len(self.statuses) + len(self.errors) + 1}: {type(exc).__name__}: {exc}")
                self._close()
        self._close()

    def _get(self) -> int:
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=10)
            self.connections += 1
        request = (f"GET /api/v1/sandboxes/{self.sandbox}/messages?limit=10 HTTP/1.1\r\nHost: {self.address[0]}\r\n"
                   f"Authorization: Bearer {TEST_ADMIN_KEY}\r\n\r\n")
        self._sock.sendall(request.encode())
        status, headers, body = self._read_response()
        json.loads(body)  # a complete JSON body
        if headers.get("connection", "").lower() == "close":
            self._close()
        return status

    def _read_response(self) -> tuple[int, dict[str, str], bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
        length = int(headers["content-length"])
        while len(body) < length:
            body += self._recv()
        return int(lines[0].split()[1]), headers, body[:length]

    def _recv(self) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionAbortedError("server closed the connection without a (complete) response")
        return chunk

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def test_every_request_across_a_worker_kill_and_a_redis_restart_gets_an_answer(redis_aof, buses):
    """Two sandboxes registered with one keep-alive httpx client; 600 notifications from three other connections
    while a worker is killed with SIGKILL and restarted and Redis is stopped and started; a poller keeps reading
    the recipient's mailbox on its kept-alive connection throughout. Every send is answered (202: accepted, the
    outbox sweep enqueues what the broker missed), every poll is answered 200, and the first client then pages
    the whole mailbox (200) and finds all 600."""
    bus = buses("redis", redis_url=redis_aof.url, with_beat=True, extra_env={**VISIBILITY, **SWEEP})
    tag = uuid.uuid4().hex[:6]
    recipient, sender = f"r-{tag}", f"s-{tag}"
    with bus_client(bus.url, timeout=10) as http:
        register(http, recipient, sender)
        poller = KeepAlivePoller(bus.url, recipient)
        poller.start()
        senders = Senders(bus.url, [sender] * 3, [recipient], tag, 200, pause=0.005, broadcast_every=0).start()
        wait_for(lambda: senders.accepted_count >= 150, 60, "150 accepted messages")
        bus.kill_worker("worker", signal.SIGKILL)
        bus.start_worker("worker")
        wait_for(lambda: senders.accepted_count >= 300, 60, "300 accepted messages")
        redis_aof.stop()
        # One send surely falls in the outage and one after it, however fast the senders are done: the API's log
        # then has the loss and the recovery to show.
        marks = [_note(http, sender, recipient, "during the outage")]
        time.sleep(2)  # sends go on meanwhile
        redis_aof.start()
        outcome = senders.join()
        marks.append(_note(http, sender, recipient, "after the outage"))
        time.sleep(2 * POLL_EVERY)  # polls after the faults, on the same connection
        poller.stop()
        entries = wait_for(lambda: _complete(mailbox(http, recipient), 602), 120,
                           "the 602 notifications in the recipient's mailbox")
    print(f"\n[requests across faults] sends accepted={len(outcome.accepted)} failed={len(outcome.failed)}; "
          f"polls answered={len(poller.statuses)} failed={len(poller.errors)} connections={poller.connections}")
    transport_failures = {mid: why for mid, why in outcome.failed.items() if not why.startswith(HTTP_ANSWERS)}
    assert not transport_failures, transport_failures
    assert not poller.errors, poller.errors
    assert poller.statuses and set(poller.statuses) == {200}, poller.statuses
    assert sorted(mid for _, mid, _ in entries) == sorted([*outcome.accepted, *marks])
    assert len(outcome.accepted) == 600
    # What happened is in the API's log: the lost broker, and that it came back.
    for what in ("broker connection lost", "broker connection restored", "fanout listener reconnected"):
        assert log_lines(bus, "api", what), f"no {what!r} in the API log"


def _note(http, sender: str, recipient: str, when: str) -> str:
    """Send one notification (202 even with the broker down: the outbox sweep enqueues it); its message id."""
    answer = http.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "t",
                                                 "message_type": "notification", "content": {"sent": when}})
    assert answer.status_code == 202, answer.text
    return answer.json()["message_id"]


def _complete(entries: list, count: int) -> list | None:
    return entries if len(entries) >= count else None
