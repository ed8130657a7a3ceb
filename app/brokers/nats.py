"""NATS JetStream (our own Kombu transport, app/brokers/nats_transport.py): Celery's queues as JetStream work-queue
streams, the fanout between API nodes on core NATS subjects, the event log in a bounded stream.

URL: NATS_URL, one or more `nats://host:port` joined by commas (`nats://:token@h:4222` or `nats://user:pw@h:4222`
with credentials). Kombu takes one URL, so the broker URL Celery sees is the first server and the transport option
`servers` carries them all; the NATS client tries them in turn whenever it (re)connects.

Durability: every stream of the bus is file-backed (`storage=file`) with NATS_REPLICAS copies (3 on a 3-server
cluster: it survives losing one server). A publish is acknowledged once the stream's leader (with R3, a quorum)
holds the message in its log, not once it is on disk: the servers' `jetstream { sync_interval }` decides when that
happens (2 minutes by default: Jepsen lost acknowledged writes of NATS 2.12.1 with it when servers crashed
together). Run the servers with `sync_interval: always` where that window matters (docker/compose.enterprise.yaml
and the tests do); either way the bus's database stays the source of truth, and the outbox sweep sends again what
it accepted but a NATS fault lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.brokers.base import BUS_QUEUES, Broker, masked_url

if TYPE_CHECKING:
    from kombu import Connection

    from app.brokers.nats_events import NatsEventLog
    from app.config import Settings

TRANSPORT = "app.brokers.nats_transport:Transport"


class NatsBroker(Broker):
    """NATS with JetStream: streams and consumers per Celery queue, each `nats_replicas` copies, an ack wait of
    NATS_ACK_WAIT seconds as the visibility timeout; no priorities (each queue is FIFO)."""

    name = "nats"
    schemes = ("nats", "tls")
    url_setting = "NATS_URL"

    @classmethod
    def implied_url(cls, settings: Settings) -> str:
        """NATS_URL."""
        return settings.nats_url

    def describe(self) -> str:
        """`nats (N servers, streams RK)`."""
        servers = len(self.servers())
        return f"{self.name} ({servers} server{'s' if servers > 1 else ''}, streams R{self.settings.nats_replicas})"

    def servers(self) -> list[str]:
        """The server URLs NATS_URL lists, in its order."""
        return [url.strip() for url in self.url.replace(";", ",").split(",") if url.strip()]

    def shown_url(self) -> str:
        """The URL with every password masked, server by server."""
        return ",".join(masked_url(url) for url in self.servers())

    def transport_options(self) -> dict:
        """The reconnection waits, every server, the stream prefix, replicas and the ack wait."""
        return {**super().transport_options(), "servers": self.servers(), "prefix": self.settings.nats_prefix,
                "replicas": self.settings.nats_replicas, "visibility_timeout": self.settings.nats_ack_wait}

    def celery_settings(self) -> dict:
        """The first server as Celery's broker URL (its scheme picks the transport), all of them in the transport
        options."""
        _register_transport()
        return {"broker_url": self.servers()[0], "broker_transport_options": self.transport_options()}

    def connection(self, **options) -> Connection:
        """A new Kombu connection over the NATS transport (not yet connected)."""
        from kombu import Connection

        _register_transport()
        return Connection(self.servers()[0], transport_options=self.transport_options(), **options)

    def reachable(self, timeout: float = 2.0) -> None:
        """Return when a server answers, JetStream has a quorum (its account info comes back) and the stream of the
        delivery queue, once made, has a leader; raise the NATS error otherwise (/readyz shows it)."""
        from app.brokers._nats_admin import check_streams
        from app.brokers._nats_loop import stream_name

        check_streams(self.servers(), timeout, [stream_name(self.settings.nats_prefix, "delivery")])

    def queue_report(self, timeout: float = 2.0) -> dict:
        """`{"queues": {queue: {"messages", "unacked", "redelivered", "stored", "replicas", "leader"} or None}}`
        (None: the queue's stream is not created yet), from each queue's stream and consumer info."""
        from app.brokers._nats_admin import queue_report

        return {"queues": queue_report(self.servers(), self.settings.nats_prefix, BUS_QUEUES, timeout)}

    def event_log(self) -> NatsEventLog:
        """One JetStream stream every node shares, `<prefix>-events`, bounded to the last 10,000 events: an events
        socket resumes on any API node, and after a restart."""
        from app.brokers.nats_events import NatsEventLog

        prefix = self.settings.nats_prefix
        return NatsEventLog(self.servers(), f"{prefix}-events", f"{prefix}.events",
                            replicas=self.settings.nats_replicas)


def _register_transport() -> None:
    """Register the `nats` (and `tls`) alias of the transport in Kombu's table (importing it does)."""
    import kombu.transport

    import app.brokers.nats_transport  # noqa: F401 - registers `nats`

    kombu.transport.TRANSPORT_ALIASES.setdefault("tls", TRANSPORT)
