"""Private helpers of app/brokers/nats_transport.py: the asyncio loop thread a synchronous Kombu connection calls
into, and the mapping of Kombu queue/exchange names onto NATS stream, consumer and subject names."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout

import nats.errors

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def name_token(name: str) -> str:
    """A token usable as a NATS stream/consumer name and as one subject token, for a Kombu queue or exchange name.

    Stream names may not hold `.`, `*`, `>`, whitespace or path separators, and subject tokens may not hold `.`:
    any such character becomes `_`, and then (as two names could now collide, e.g. `a.b` and `a_b`) a short hash of
    the original name is appended. Long names are cut, also with the hash."""
    token = _UNSAFE.sub("_", name) or "_"
    if token != name or len(token) > 48:
        token = f"{token[:40]}_{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return token


def stream_name(prefix: str, queue: str) -> str:
    """The JetStream stream (and its durable consumer) that holds Kombu queue `queue`."""
    return f"{prefix}-{name_token(queue)}"


class LoopThread:
    """One asyncio event loop in a daemon thread; `run(coro, timeout)` runs a coroutine on it from any other thread
    and returns its result, raising nats.errors.TimeoutError (an OSError: a Kombu connection error) on timeout.

    A process has one (`process_loop()`), shared by all its NATS clients: under gevent (the API) threads are
    greenlets of one OS thread, where asyncio allows only one running loop."""

    def __init__(self, name: str = "nats-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float, watch: set | None = None):
        """The result of `coro`, run on the loop. With `watch`, the future is in that set while it runs, so whoever
        learns that the connection it uses is lost can cancel it (ConnectionClosedError here) rather than leave it
        to its timeout."""
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise nats.errors.ConnectionClosedError
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if watch is not None:
            watch.add(future)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise nats.errors.TimeoutError from None
        except FutureCancelled:
            raise nats.errors.ConnectionClosedError from None
        finally:
            if watch is not None:
                watch.discard(future)


_process_loop: tuple[int, LoopThread] | None = None
_process_loop_lock = threading.Lock()


def process_loop() -> LoopThread:
    """This process's loop thread, started on first use (again in a forked child: threads do not survive a fork)."""
    global _process_loop
    with _process_loop_lock:
        if _process_loop is None or _process_loop[0] != os.getpid():
            _process_loop = (os.getpid(), LoopThread())
        return _process_loop[1]
