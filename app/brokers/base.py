"""`Broker`: what one kind of broker answers for, the way Kombu has a `Transport` class per kind.

Everything that differs between brokers lives in a subclass of `Broker`, one module per kind (app/brokers/); the rest
of the bus asks the object `Settings.broker` hands out and never compares kind names. The defaults below are those
of a broker that separate processes share and that keeps nothing beyond Celery's queues.

Kombu and Redis are imported inside the methods that use them: `app.config` imports this package, and reading the
configuration (every CLI command) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from kombu import Connection, Exchange, Queue

    from app.config import Settings
    from app.services.event_log import EventLogPort

PROTOCOL_MAX_PRIORITY = 9  # the protocol's priorities run 0-9, 9 highest
RECONNECT_WAITS = {"interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}
"""Seconds between rounds of attempts to reach a lost broker: 0.2, 0.4, then 0.5 (Kombu's defaults: 2, 4, 6 … 30,
which would leave a process idle for seconds after a broker blip or a failover ended). Kombu reads them from the
transport options when it (re)connects a connection's default channel; the worker's consumer applies them to its
own reconnection (workers/consumer.py)."""
BUS_QUEUES = ("delivery", "lifecycle", "maintenance")  # the Celery queues of the bus (celeryconfig.task_queues)


class Broker:
    """One kind of broker, built from the `Settings` whose broker URL points at it (`Settings.broker`).

    Class attributes say what the kind is; methods answer what the bus needs from it: Celery's configuration,
    Kombu connections (the fanout between API nodes), the priority scale, the queue report, readiness, the
    dead-letter queue, and the preparation of worker processes and of upgrades.
    """

    name: ClassVar[str]
    """How the kind is shown (`collab-bus status`, the API banner, /api/v1/configuration) and the MESSAGE_BACKEND
    value that selects it."""
    schemes: ClassVar[tuple[str, ...]]
    """The broker URL schemes of this kind (`redis` for `redis://…`)."""
    url_setting: ClassVar[str]
    """The environment variable that holds the broker URL when MESSAGE_BACKEND names this kind."""
    shared: ClassVar[bool] = True
    """Separate processes (`collab-bus api`, `worker`, `beat`, on several machines) reach the same broker. False:
    the broker lives inside one process, which runs API, worker and beat together (`collab-bus up`)."""
    selectable: ClassVar[bool] = True
    """MESSAGE_BACKEND may name this kind. False: a kind another kind's URL setting leads to by its scheme (Redis
    Sentinel: MESSAGE_BACKEND=redis with a `sentinel://` REDIS_URL)."""
    no_remote_control: ClassVar[str | None] = None
    """Why Celery's remote control (`celery inspect`: the workers that answer) does not work on this kind; None
    when it does."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.broker_url

    @classmethod
    def implied_url(cls, settings: Settings) -> str:
        """The broker URL when MESSAGE_BACKEND names this kind and BROKER_URL is not set."""
        raise NotImplementedError

    def describe(self) -> str:
        """The kind as one phrase for people (`collab-bus status`)."""
        return self.name

    def shown_url(self) -> str:
        """The broker URL as it may be shown (status, logs): its password masked."""
        return masked_url(self.url)

    def priority(self, priority: int) -> int:
        """The broker's form of protocol `priority` (0-9, 9 highest; values outside are clamped). Here: the same
        number, higher is more urgent."""
        return max(0, min(PROTOCOL_MAX_PRIORITY, int(priority)))

    def transport_options(self) -> dict:
        """Kombu's transport options for this broker (Celery's `broker_transport_options`, every connection). Here:
        RECONNECT_WAITS, so a process is back within about half a second of its broker's return."""
        return dict(RECONNECT_WAITS)

    def celery_settings(self) -> dict:
        """The Celery settings of this broker: its URL and transport options, and what else the kind needs."""
        return {"broker_url": self.url, "broker_transport_options": self.transport_options()}

    def connection(self, **options) -> Connection:
        """A new (not yet connected) Kombu connection to the broker with its transport options; `options` go to
        `kombu.Connection` (e.g. `connect_timeout`)."""
        from kombu import Connection

        return Connection(self.url, transport_options=self.transport_options(), **options)

    def reachable(self, timeout: float = 2.0) -> None:
        """Return when the broker answers within `timeout` seconds; raise its connection error otherwise (/readyz,
        `collab-bus status`)."""
        with self.connection(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    def queue_report(self, timeout: float = 2.0) -> dict:
        """What waits in each bus queue, as `{"queues": {queue: {"messages": n, …} or None}, …}` (None: the queue is
        not declared yet); `{}` when the kind cannot tell. Raises the broker's error when it is unreachable."""
        return {}

    def queue_depths(self, timeout: float = 2.0) -> dict[str, int]:
        """Tasks waiting in each bus queue, all priorities together (/metrics, the collaboration status); empty when
        the kind cannot tell. Raises the broker's error when it is unreachable."""
        queues = self.queue_report(timeout).get("queues", {})
        return {queue: (depth or {}).get("messages", 0) for queue, depth in queues.items()}

    def dead_letter_queue(self, exchange: Exchange) -> Queue | None:
        """The queue bound to the dead-letter `exchange` that keeps the latest dead-letter records on the broker
        for broker-side tools, declared with the exchange by whoever publishes; None: no such queue (tools bind
        their own to the exchange)."""
        return None

    def event_log(self) -> EventLogPort:
        """The log of system events for the events sockets (`/ws/events?since=`) and for publishers to stamp
        events in. Here: one per process (`EventLog`), so an events socket resumes only on the API process that
        served it, within that process's life."""
        from app.services.event_log import EventLog

        return EventLog()

    def prepare_worker(self) -> None:
        """Make this process fit to run a Celery worker on the broker (workers/bootstrap.py calls it first); raise
        ConfigError (one line) when it cannot be."""

    def upgrade(self, timeout: float = 5.0) -> str | None:
        """Bring what an earlier version of the bus left in the broker to this version's layout (`collab-bus db
        upgrade`); return one line saying what changed, None when the kind keeps nothing to upgrade. Raises
        Unavailable when the broker cannot be reached."""
        return None


def masked_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***`."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
