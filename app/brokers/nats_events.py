"""The event log of a NATS bus: one bounded JetStream stream every API node and worker shares, so an events socket
resumes on any node and after a node restarts (what the Redis stream of app/brokers/redis_events.py is to a Redis
bus).

An event gets its id once, where it is published (`stamp`, before the fanout publish): `<epoch>-<seq>`, the
sequence JetStream gave its message in the stream, after the stream's creation time in milliseconds (the epoch).
The epoch names this stream's life: a stream deleted and made again (by an operator, or on a server that lost its
store) numbers from 1 again, and an id of the old one must never resume in the new one. The form is EVENT_ID's
`<number>-<number>` (the one an events socket's `since` may take), never a per-process log's (12 hex digits first).

The stream (file storage, `replicas` copies, `max_msgs=kept` discarding the oldest, limits retention, direct get
allowed) is created on first use when missing; one that exists is used as it is. `replay(since)` asks the stream's
leader for its state (the epoch, the first and last sequence kept), then reads the messages after `since` with
batched direct gets (ADR-31, nats-server 2.11+: one request answers up to BATCH messages, no consumer is made), and
asks again while the replica that answered is behind the leader's last sequence. A stream that allows no direct get
is read with the leader's message get, IN_FLIGHT requests at a time. (An ordered consumer would be created and
deleted on the stream leader for every resume: heavier when many sockets come back at once.)

nats-py is asyncio; the bus calls this synchronously, from threads and from gevent greenlets. Every call runs on
the process's asyncio loop thread (app/brokers/_nats_loop.py `process_loop()`, shared with the NATS transport: under
gevent an OS thread runs one asyncio loop), and waits at most `timeout` seconds. The client is made in the process
that first uses the log (it may be built before a fork). The client reconnects by itself, to any server of
`servers`; once it has been disconnected for longer than `timeout`, calls fail at once until it is back. Errors are
logged, never raised: an event that could not be stamped is sent with id null, and a resume that cannot be read is
answered as missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from app.brokers._nats_loop import LoopThread, process_loop
from app.services.event_log import EVENTS_KEPT, SharedEventLog, event_frame

log = logging.getLogger(__name__)

T = TypeVar("T")
NATS_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")
TIMEOUT = 2.0  # seconds any one call may take
RECONNECT_WAIT = 0.25  # seconds between two attempts on one server
EPOCH_CHECK = 5.0  # seconds after which `stamp` looks again at which stream it appends to (replaced meanwhile?)
BATCH = 1000  # messages one direct get request asks for
IN_FLIGHT = 256  # message gets in flight at once (a stream without direct get)
FOREIGN = "the event id is from another API process, or from before the event log was made again"


class Unavailable(Exception):
    """NATS cannot answer now."""


class NatsEventLog(SharedEventLog):
    """The last `kept` events of the bus in the JetStream stream `stream` (on the subject `subject`), reached through
    one of `servers` (nats:// URLs). NATS errors are logged, never raised: an event that could not be stamped is
    sent with id null, and a resume that cannot be read is answered as missed. Thread-safe; fork-safe before use."""

    def __init__(self, servers: list[str], stream: str, subject: str, replicas: int = 1, kept: int = EVENTS_KEPT,
                 timeout: float = TIMEOUT) -> None:
        self.servers = list(servers)
        self.stream = stream
        self.where = stream
        self.subject = subject
        self.replicas = replicas
        self.kept = kept
        self.timeout = timeout
        self._pid_lock = threading.Lock()
        self._pid: int | None = None  # the process the client state below belongs to
        self._reset()

    def _reset(self) -> None:
        """Forget the client (the state below is only touched on the loop, by its coroutines)."""
        self._connecting: asyncio.Lock | None = None
        self._nc: nats.NATS | None = None
        self._js = None
        self._down_since: float | None = None  # when the client lost its server (None: connected)
        self._retry_at = 0.0  # no new connection is tried before (a failed one just was)
        self._epoch: int | None = None  # the stream's creation time in ms: the first part of its ids
        self._epoch_read = 0.0

    # -- the EventLogPort ------------------------------------------------------------------------------------------

    def _append(self, events: list[dict]) -> list[str]:
        """Publish `events` to the stream, all at once and acknowledged in stream order; their ids. A publish the
        loss of the server cut may still reach the stream when the client reconnects (a resume then replays that
        event although it went out with id null)."""
        payloads = [json.dumps(event, separators=(",", ":")).encode() for event in events]
        ids, error = self._run(lambda: self._publish_all(payloads))
        if error is not None:
            raise Unavailable(error)
        return ids

    @property
    def last_id(self) -> str | None:
        """The id of the newest event in the stream, None when it holds none or cannot be read."""
        newest, error = self._run(self._newest)
        if error is not None:
            log.warning("could not read the event log %s: %s", self.stream, error)
        return newest

    def replay(self, event_id: str) -> tuple[list[tuple[str, str]], str | None]:
        """The events after `event_id` in the stream, each as `(id, frame)`, in stream order, and None; or none and
        why they cannot be given: the id is not one of this stream's (a per-process log's, or from before the
        stream was made again), newer than the stream's newest, older than what it keeps (exactly: the events
        after the id just before the first one kept can still all be given; one trimmed while they are read, or
        deleted by hand, counts as missed too), or the stream cannot be read."""
        found = NATS_ID.match(event_id)
        if found is None:
            return [], FOREIGN
        answer, error = self._run(lambda: self._after(int(found[1]), int(found[2])))
        if error is not None:
            return [], f"the event log cannot be read now ({error})"
        return answer

    def close(self) -> None:
        """Close the client (a later call connects again)."""
        if self._pid == os.getpid():
            self._run(self._close)

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _quietly_close(nc)

    # -- the calls, on the loop ------------------------------------------------------------------------------------

    def _run(self, work: Callable[[], Awaitable[T]]) -> tuple[T | None, str | None]:
        """`(await work(), None)` on this process's loop, or `(None, why)` when it failed or took over `timeout`."""
        try:
            loop = self._loop_here()
            return loop.run(asyncio.wait_for(work(), self.timeout), self.timeout + 1), None
        except (TimeoutError, nats.errors.TimeoutError):
            return None, f"no answer within {self.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any NATS (or decoding) error is logged by the caller
            return None, str(exc) or type(exc).__name__

    def _loop_here(self) -> LoopThread:
        """This process's loop thread; the client state is forgotten in a child forked after the log was used (the
        parent's client lived on the parent's loop)."""
        with self._pid_lock:
            if self._pid != os.getpid():
                self._reset()
                self._pid = os.getpid()
        return process_loop()

    async def _jetstream(self):
        """The JetStream context of the connected client: connected first when there is none, waited for while it
        reconnects (not when it has been away for over `timeout`)."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._nc is None or self._nc.is_closed:
                self._nc, self._js = await self._connect()
        nc = self._nc
        while not nc.is_connected:
            down = self._down_since
            if nc.is_closed or down is None or time.monotonic() - down > self.timeout:
                raise Unavailable("not connected to NATS")
            await asyncio.sleep(0.05)
        return self._js

    async def _connect(self):
        """A new client and its JetStream context. The first connection tries each server twice (nats-py's
        max_reconnect_attempts, which would otherwise retry them forever), later ones never give up."""
        if time.monotonic() < self._retry_at:
            raise Unavailable("no NATS server answered a moment ago")
        nc = nats.NATS()
        try:
            await nc.connect(servers=self.servers, connect_timeout=self.timeout, allow_reconnect=True,
                             max_reconnect_attempts=1, reconnect_time_wait=RECONNECT_WAIT,
                             error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                             reconnected_cb=self._on_reconnected)
        except BaseException:
            self._retry_at = time.monotonic() + RECONNECT_WAIT
            await _quietly_close(nc)
            raise
        nc.options["max_reconnect_attempts"] = -1  # read on each reconnection
        self._down_since = None
        return nc, nc.jetstream(timeout=self.timeout)

    async def _on_error(self, error: Exception) -> None:
        log.debug("event log %s: NATS error: %s", self.stream, error)

    async def _on_disconnected(self) -> None:
        if self._down_since is None and self._nc is not None:  # (None: closed by `close`)
            self._down_since = time.monotonic()
            log.warning("event log %s: lost its NATS server, reconnecting", self.stream)

    async def _on_reconnected(self) -> None:
        self._down_since = None
        url = self._nc.connected_url if self._nc else None
        log.info("event log %s: reconnected to %s", self.stream, url.netloc if url else "NATS")

    async def _info(self, js) -> api.StreamInfo:
        """The stream's info from its leader, the stream created first when missing; notes its epoch."""
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            config = api.StreamConfig(
                name=self.stream, subjects=[self.subject], storage=api.StorageType.FILE, num_replicas=self.replicas,
                max_msgs=self.kept, discard=api.DiscardPolicy.OLD, retention=api.RetentionPolicy.LIMITS,
                allow_direct=True)
            try:
                info = await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # made meanwhile by another node, with other settings
                info = await js.stream_info(self.stream)
            log.info("event log %s: created the stream (%d replica(s), the last %d events)",
                     self.stream, self.replicas, self.kept)
        created = info.created
        self._epoch = int(created.timestamp()) * 1000 + created.microsecond // 1000 if created else 0
        self._epoch_read = time.monotonic()
        return info

    async def _publish_all(self, payloads: list[bytes]) -> list[str]:
        """Publish `payloads` to the stream at once; their ids, in order."""
        js = await self._jetstream()
        if self._epoch is None or time.monotonic() - self._epoch_read > EPOCH_CHECK:
            await self._info(js)  # before publishing: a stream replaced after this look gets ids it refuses
        acks = await self._publish(js, payloads)
        if all(isinstance(ack, nats.js.errors.NoStreamResponseError) for ack in acks):
            await self._info(js)  # none was stored: the stream is gone (made again now) or electing its leader
            acks = await self._publish(js, payloads)
        for ack in acks:
            if isinstance(ack, BaseException):
                raise ack
        return [f"{self._epoch}-{ack.seq}" for ack in acks]

    async def _publish(self, js, payloads: list[bytes]) -> list:
        """The acks (or errors) of `payloads` published in order on one connection (so stored in that order)."""
        futures = [await js.publish_async(self.subject, payload, stream=self.stream) for payload in payloads]
        return await asyncio.gather(*futures, return_exceptions=True)

    async def _newest(self) -> str | None:
        info = await self._info(await self._jetstream())
        return f"{self._epoch}-{info.state.last_seq}" if info.state.last_seq else None

    async def _after(self, epoch: int, since: int) -> tuple[list[tuple[str, str]], str | None]:
        js = await self._jetstream()
        info = await self._info(js)
        first, last = info.state.first_seq, info.state.last_seq
        gone = f"the events after it are no longer kept (the last {info.config.max_msgs or self.kept} are)"
        if epoch != self._epoch:
            return [], FOREIGN
        if since > last:
            return [], "the event id is newer than any event of the bus"
        if since + 1 < first:
            return [], gone
        read = self._read_direct if info.config.allow_direct else self._read_from_leader
        messages = await read(since, last)
        if [seq for seq, _ in messages] != list(range(since + 1, last + 1)):  # trimmed while read
            return [], gone
        replayed = []
        for seq, data in messages:
            event_id = f"{epoch}-{seq}"
            replayed.append((event_id, event_frame(event_id, json.loads(data))))
        return replayed, None

    async def _read_direct(self, since: int, last: int) -> list[tuple[int, bytes]]:
        """The messages after `since` up to `last`, as `(seq, data)`, with batched direct gets. A replica behind
        the leader ends its batch early (or answers 404): it is asked again until `last` is read."""
        nc = self._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        messages: list[tuple[int, bytes]] = []
        try:
            after = since
            while after < last:
                request = {"seq": after + 1, "batch": min(BATCH, last - after)}
                await nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", json.dumps(request).encode(), reply=inbox)
                before = after
                while True:
                    msg = await sub.next_msg(timeout=self.timeout)
                    headers = msg.headers or {}
                    status = headers.get(api.Header.STATUS)
                    if status in ("204", "404"):  # the end of the batch; nothing at or after the sequence asked
                        break
                    if status:
                        raise Unavailable(f"direct get: {status} {headers.get(api.Header.DESCRIPTION, '')}".strip())
                    seq = int(headers["Nats-Sequence"])
                    if after < seq <= last:
                        messages.append((seq, msg.data))
                        after = seq
                    if "Nats-Num-Pending" not in headers:  # a server without batches answers one message only
                        break
                if after == before:
                    await asyncio.sleep(0.02)
        finally:
            await sub.unsubscribe()
        return messages

    async def _read_from_leader(self, since: int, last: int) -> list[tuple[int, bytes]]:
        """As `_read_direct`, one message get per sequence (IN_FLIGHT at a time); a message gone is left out."""
        messages = []
        for start in range(since + 1, last + 1, IN_FLIGHT):
            seqs = range(start, min(start + IN_FLIGHT, last + 1))
            answers = await asyncio.gather(*(self._js.get_msg(self.stream, seq) for seq in seqs),
                                           return_exceptions=True)
            for seq, answer in zip(seqs, answers, strict=True):
                if isinstance(answer, nats.js.errors.NotFoundError):
                    continue
                if isinstance(answer, BaseException):
                    raise answer
                messages.append((seq, answer.data))
        return messages


async def _quietly_close(nc: nats.NATS) -> None:
    try:
        await nc.close()
    except Exception:  # noqa: BLE001 - a client that never connected
        pass
