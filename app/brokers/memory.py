"""The in-memory broker (Kombu's `memory://` transport): one process runs API, worker and beat (`collab-bus up`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.brokers.base import Broker

if TYPE_CHECKING:
    from app.config import Settings


class MemoryBroker(Broker):
    """Kombu's in-memory transport: nothing to reach, nothing to share, nothing to count."""

    name = "memory"
    schemes = ("memory",)
    url_setting = "BROKER_URL"
    shared = False
    no_remote_control = "the in-memory broker has no remote control (embedded mode)"

    @classmethod
    def implied_url(cls, settings: Settings) -> str:
        """Kombu's in-memory transport."""
        return "memory://localhost/"

    def describe(self) -> str:
        """`in-memory (MESSAGE_BACKEND=memory)`."""
        return "in-memory (MESSAGE_BACKEND=memory)"

    def transport_options(self) -> dict:
        """A short poll: the embedded worker picks a task up within 5 ms."""
        return {"polling_interval": 0.005}

    def celery_settings(self) -> dict:
        """One process holds everything: no remote control or heartbeats to poll for."""
        return {**super().celery_settings(), "worker_enable_remote_control": False, "broker_heartbeat": 0}

    def reachable(self, timeout: float = 2.0) -> None:
        """Always: the broker is in this process."""
