"""The state of a ContainerAgent's socket (private; exported by aintandem_agent_sdk.container)."""

from __future__ import annotations

from enum import Enum
from typing import Awaitable, Callable, Union


class ConnectionStatus(str, Enum):
    """The state of the agent's socket, as reported to status callbacks."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


StatusCallback = Callable[[ConnectionStatus, str], Union[None, Awaitable[None]]]
