"""The state of a ContainerAgent's socket and who hears about it (private; exported by
aintandem_agent_sdk.container)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

log = logging.getLogger("aintandem_agent_sdk")


class ConnectionStatus(str, Enum):
    """The state of the agent's socket, as reported to status callbacks."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


StatusCallback = Callable[[ConnectionStatus, str], None | Awaitable[None]]


class StatusReporter:
    """The current ConnectionStatus, and the callbacks (plain or async) that hear every change.

    A callback that raises is logged and does not stop the others."""

    def __init__(self, first: StatusCallback | None = None):
        self.status = ConnectionStatus.DISCONNECTED
        self._listeners: list[StatusCallback] = [first] if first else []

    def add(self, callback: StatusCallback) -> None:
        """Call `callback(status, detail)` on every change from now on."""
        self._listeners.append(callback)

    async def set(self, status: ConnectionStatus, detail: str) -> None:
        """Record `status` and tell every callback, with `detail` saying why."""
        self.status = status
        for callback in list(self._listeners):
            try:
                result = callback(status, detail)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("status callback %r failed", callback)
