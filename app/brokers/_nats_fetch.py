"""Private helper of app/brokers/nats_transport.py: the background pull of a consumed queue.

A Kombu channel asks each consumed queue in turn for one message (`_get`) and sleeps between empty rounds; asking
the server each time would cost a round trip per queue per round and leave a message waiting up to a round. Instead
each consumed queue has a `QueueFetcher` on the process's event loop: a pull request that waits at the server
(`expires` = FETCH_WAIT) keeps up to `ahead` messages ready in memory, so `_get` answers without a round trip and the
transport's `drain_events` wakes (`wake`) as soon as a message arrives. It also hears the consumer's max-deliveries
advisories while it runs (`on_exhausted`: the dead-letter path, app/brokers/_nats_dead_letters.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading

import nats.errors
import nats.js.errors

from app.brokers._nats_dead_letters import advisory_subject

log = logging.getLogger(__name__)

FETCH_WAIT = 1.0  # seconds a pull request waits at the server for a message before it is made again
ELECTION_PAUSE = 0.2  # seconds between pulls while the consumer's leader is being elected (503 / no responders)


class QueueFetcher:
    """Keeps up to `ahead` messages of the durable consumer `stream`/`stream` ready (`take()`); `error` holds what
    stopped it (the connection lost), raised by `take()`. Messages it holds are naked by `stop()`, so they go to
    another consumer at once."""

    def __init__(self, js, stream: str, loop: asyncio.AbstractEventLoop, wake: threading.Event, ahead: int = 4,
                 on_exhausted=None):
        self._js = js
        self._on_exhausted = on_exhausted  # handler of the consumer's max-deliveries advisories (_nats_dead_letters)
        self._stream = stream
        self._loop = loop
        self._wake = wake
        self._ahead = max(1, ahead)
        self._ready: collections.deque = collections.deque()
        self._room = asyncio.Event()
        self.error: BaseException | None = None
        self._task = asyncio.run_coroutine_threadsafe(self._pull(), loop)

    def take(self):
        """The next message ready (a nats Msg), or None; raises the error that stopped the fetcher."""
        try:
            msg = self._ready.popleft()
        except IndexError:
            if self.error is not None:
                raise self.error from None
            return None
        self._loop.call_soon_threadsafe(self._room.set)
        return msg

    async def _pull(self) -> None:
        try:
            subs = [await self._js.pull_subscribe_bind(consumer=self._stream, stream=self._stream)]
            if self._on_exhausted is not None:
                subs.append(await self._js._nc.subscribe(advisory_subject(self._stream), cb=self._on_exhausted))
            try:
                await self._pull_into_ready(subs[0])
            finally:
                for sub in subs:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the channel, whose next _get raises it
            self.error = exc if isinstance(exc, OSError | nats.errors.Error) else nats.errors.ConnectionClosedError()
            self._wake.set()

    async def _pull_into_ready(self, sub) -> None:
        while True:
            if len(self._ready) >= self._ahead:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                msg = (await sub.fetch(1, timeout=FETCH_WAIT))[0]
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
                await asyncio.sleep(ELECTION_PAUSE)
                continue
            self._ready.append(msg)
            self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop pulling and nak every message held (best effort: one never naked comes back after the ack wait)."""

        async def nak_held():
            while self._ready:
                with contextlib.suppress(Exception):
                    await self._ready.popleft().nak()

        self._task.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(nak_held(), self._loop).result(timeout)
