"""Limits kept in this process: a token bucket per caller, a failure counter per client address, and a cap on
what one key may hold at once."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

MAX_TRACKED = 100_000  # callers remembered at once; the least recently seen are forgotten first


class RateLimiter:
    """A token bucket per key: `rate` requests per second on average, bursts of up to `burst`.

    `take(key)` returns 0 when the request may go on, else the seconds to wait before one would.
    """

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one request of `key`'s allowance; 0 if there was one, else the wait until there is."""
        now = self.clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 if tokens >= 1 else tokens, now)
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
            return wait


class FailureLimiter:
    """Counts failures (failed authentications) per key in a sliding `window`; past `limit` the key is blocked
    until its oldest counted failure leaves the window."""

    def __init__(self, limit: int, window: float = 60.0, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        stamps = [t for t in self._failures.pop(key, []) if now - t < self.window]
        if stamps:
            self._failures[key] = stamps
        return stamps

    def blocked_for(self, key: str) -> float:
        """0 when `key` may try again, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            stamps = self._recent(key, now)
            return stamps[-self.limit] + self.window - now if len(stamps) >= self.limit else 0.0

    def fail(self, key: str) -> None:
        """Count one failure of `key`."""
        now = self.clock()
        with self._lock:
            self._failures[key] = [*self._recent(key, now), now]
            if len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)


class ConcurrencyLimiter:
    """At most `limit` holders at once per key (e.g. sockets of one address still waiting to authenticate)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        """Take one of `key`'s places; False (nothing taken) when all `limit` are held."""
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self.limit:
                return False
            self._held[key] = held + 1
            return True

    def release(self, key: str) -> None:
        """Give back one place of `key` taken by `acquire`."""
        with self._lock:
            held = self._held.get(key, 0) - 1
            if held > 0:
                self._held[key] = held
            else:
                self._held.pop(key, None)
