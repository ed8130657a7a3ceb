"""The kinds of broker the bus runs on, one module each, and the registry that picks one from a broker URL.

`Settings.broker` hands out the `Broker` (app/brokers/base.py) of the configured URL; the rest of the bus asks it
what differs between kinds and never compares kind names.

Adding a kind: write one module here with a `Broker` subclass (its `name`, URL `schemes`, `url_setting`,
`implied_url`, and the methods whose defaults do not fit it), then add the class to `KINDS` below. Nothing else
changes: MESSAGE_BACKEND accepts its name, its URL schemes are recognised, and /api/v1/configuration may report it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.brokers.base import BUS_QUEUES, PROTOCOL_MAX_PRIORITY, Broker
from app.brokers.memory import MemoryBroker
from app.brokers.nats import NatsBroker
from app.brokers.rabbitmq import RabbitMQBroker
from app.brokers.redis import RedisBroker
from app.brokers.redis_sentinel import RedisSentinelBroker

if TYPE_CHECKING:
    from app.config import Settings

__all__ = ["BUS_QUEUES", "KINDS", "NAMES", "PROTOCOL_MAX_PRIORITY", "Broker", "broker_for", "kind_for_url",
           "kind_named", "known_schemes"]

KINDS: tuple[type[Broker], ...] = (MemoryBroker, RedisBroker, RedisSentinelBroker, RabbitMQBroker, NatsBroker)
"""Every kind, in the order MESSAGE_BACKEND lists them."""
NAMES = tuple(kind.name for kind in KINDS if kind.selectable)
"""The kinds MESSAGE_BACKEND may name."""
_BY_NAME = {kind.name: kind for kind in KINDS}
_BY_SCHEME = {scheme: kind for kind in KINDS for scheme in kind.schemes}


def kind_named(name: str) -> type[Broker]:
    """The kind MESSAGE_BACKEND `name` selects (one of NAMES; KeyError otherwise)."""
    return _BY_NAME[name]


def kind_for_url(url: str) -> type[Broker] | None:
    """The kind whose scheme `url` has; None when no kind takes it."""
    return _BY_SCHEME.get(url.split("://", 1)[0]) if "://" in url else None


def known_schemes() -> list[str]:
    """Every broker URL scheme, those of the shared kinds first (for an error message)."""
    return [scheme for kind in sorted(KINDS, key=lambda kind: not kind.shared) for scheme in kind.schemes]


def broker_for(settings: Settings) -> Broker:
    """The broker of `settings.broker_url`; ValueError when no kind takes its scheme (Settings.validate refuses
    such a URL first)."""
    kind = kind_for_url(settings.broker_url)
    if kind is None:
        raise ValueError(f"no broker kind takes {settings.broker_url!r}")
    return kind(settings)
