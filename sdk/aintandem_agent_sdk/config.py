"""Tunable behaviour of a ContainerAgent: timeouts, heartbeats, reconnection and retries."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

from aintandem_agent_sdk.errors import ConfigurationError

__all__ = ["Backoff", "ContainerAgentConfig", "RetryPolicy"]


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off with jitter: attempt n waits about initial·multiplier^(n-1), at most maximum.

    `jitter` is the fraction (0–1) by which each delay is randomly shortened or lengthened, so that many
    agents reconnecting after the same outage do not all knock at once.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"invalid back-off {self}: need 0 < initial <= maximum, multiplier >= 1, "
                                     f"0 <= jitter <= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


@dataclass(frozen=True)
class RetryPolicy:
    """How REST calls (sends, registration, REST acks) are retried on connection errors, 429 and 5xx answers.

    A call is tried at most `max_attempts` times. Sends carry an Idempotency-Key, so a retry never makes
    a duplicate message.
    """

    max_attempts: int = 6
    backoff: Backoff = Backoff(initial=0.2, maximum=5.0)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass
class ContainerAgentConfig:
    """Everything about a ContainerAgent that has a sensible default.

    - `workspace`, `metadata`: sent when the sandbox registers (`workspace` defaults to the WORKSPACE environment
      variable, which the bus sets in managed sandboxes, else "default").
    - `token`: bearer token sent with every call (default: the BUS_TOKEN environment variable).
    - `request_timeout`: seconds for one HTTP call; `connect_timeout`: seconds `start()` may take
      (registering and opening the socket, retried while the bus is not up yet).
    - `heartbeat_interval`: seconds between heartbeats on the socket (keep it below the bus's
      HEARTBEAT_TIMEOUT / 3, 10 s by default).
    - `reconnect`: back-off between reconnection attempts after the socket drops.
    - `retry`: retry policy of REST calls.
    - `cursor_file`: where the last processed seq is kept so a restarted container resumes where it
      stopped (default: the BUS_CURSOR_FILE environment variable; None keeps it in memory only).
    - `max_concurrent_handlers`: how many messages are handled at once (1 = strictly in mailbox order).
    """

    workspace: str = field(default_factory=lambda: _env("WORKSPACE") or "default")
    metadata: dict[str, Any] = field(default_factory=dict)
    token: str | None = field(default_factory=lambda: _env("BUS_TOKEN"))
    request_timeout: float = 10.0
    connect_timeout: float = 30.0
    heartbeat_interval: float = 10.0
    reconnect: Backoff = Backoff()
    retry: RetryPolicy = RetryPolicy()
    cursor_file: str | None = field(default_factory=lambda: _env("BUS_CURSOR_FILE"))
    max_concurrent_handlers: int = 1

    def __post_init__(self) -> None:
        for name in ("request_timeout", "connect_timeout", "heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"ContainerAgentConfig.{name} must be positive")
        if self.max_concurrent_handlers < 1:
            raise ConfigurationError("ContainerAgentConfig.max_concurrent_handlers must be at least 1")
