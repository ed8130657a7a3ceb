"""The per-process objects the HTTP and WebSocket layers share, reachable as `bus()` inside a request."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from app.config import Settings
from app.db import Database
from app.services.ports import DeliveryQueue, Notifier
from app.services.redelivery import RedeliveryPolicy
from app.ws.hub import Hub


@dataclass
class BusContext:
    """Settings, database, delivery queue, notifier, socket hub and redelivery policy of one API process."""

    settings: Settings
    db: Database
    delivery: DeliveryQueue
    notifier: Notifier
    hub: Hub
    policy: RedeliveryPolicy = field(default_factory=RedeliveryPolicy)
    background: list = field(default_factory=list)


def bus() -> BusContext:
    """The BusContext of the current Flask app."""
    return current_app.extensions["bus"]
