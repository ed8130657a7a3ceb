"""Private helpers of app/brokers/nats_transport.py: the asyncio loop thread a synchronous Kombu connection calls
into, and the mapping of Kombu queue/exchange names onto NATS stream, consumer and subject names."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
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


class LoopThread:
    """One asyncio event loop in a daemon thread; `run(coro, timeout)` runs a coroutine on it from any other thread
    and returns its result, raising nats.errors.TimeoutError (an OSError: a Kombu connection error) on timeout."""

    def __init__(self, name: str = "kombu-nats-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float):
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise nats.errors.ConnectionClosedError
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise nats.errors.TimeoutError from None

    def stop(self, timeout: float = 5) -> None:
        """Stop the loop and join its thread (pending tasks are cancelled)."""
        if self.loop.is_closed():
            return

        async def _cancel_all():
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # let them finish, so none is destroyed pending

        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout)
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
