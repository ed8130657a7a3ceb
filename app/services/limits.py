"""Rate limits kept in this process: a token bucket per caller, and a failure counter per client address."""

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
