"""Prometheus metrics of the API (all its processes), of a worker, or of both (`collab-bus up`).

Counters move as notifications are published (`MetricsNotifier` wraps the notifier every API process and
worker uses), so the numbers follow what the bus announced: messages accepted, entries delivered,
redeliveries, dead letters. Open sockets move as the hub subscribes and unsubscribes them; the other gauges
(sandboxes, queue depths) are read when scraped. Under `collab-bus api` the processes share their metrics
(prometheus-client's multiprocess mode, see app.multiprocess_metrics) and every scrape reports their sum.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from app.services.events import MESSAGE_ACCEPTED, MESSAGE_DEAD_LETTERED, MESSAGE_REFUSED, MESSAGE_REROUTED, unbatched
from app.services.ports import Notifier

log = logging.getLogger(__name__)

# prometheus_client chose its mode when first imported, from this variable (set for `collab-bus api` only).
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

MESSAGES_ACCEPTED = Counter("collab_bus_messages_accepted", "Messages accepted (durable), by type.",
                            ["message_type"], registry=REGISTRY)
ENTRIES_DELIVERED = Counter("collab_bus_entries_delivered", "Mailbox entries created (one per recipient), by type.",
                            ["message_type"], registry=REGISTRY)
ENTRIES_ACKED = Counter("collab_bus_entries_acked", "Mailbox entries acknowledged by their recipient.",
                        registry=REGISTRY)
TOPIC_MESSAGES = Counter("collab_bus_topic_messages_accepted", "Topic messages accepted, by the topic's first word "
                         "(a bounded label set).", ["topic_root"], registry=REGISTRY)
GUARD_REFUSALS = Counter("collab_bus_guard_refusals", "Sends a runaway guard refused, by guard (hop_limit, pair_rate, "
                         "trace_budget).", ["guard"], registry=REGISTRY)
REROUTED = Counter("collab_bus_requests_rerouted", "Capability-routed requests taken back from an agent that went "
                   "offline before its ACK and routed again.", registry=REGISTRY)
DEAD_LETTERS = Counter("collab_bus_dead_letters", "Messages dead-lettered, by reason.", ["reason"], registry=REGISTRY)
REDELIVERIES = Counter("collab_bus_redeliveries", "Unacknowledged entries pushed again.", registry=REGISTRY)
AUTH_FAILURES = Counter("collab_bus_auth_failures", "Failed authentications (missing, invalid, expired, revoked).",
                        registry=REGISTRY)
RATE_LIMITED = Counter("collab_bus_rate_limited", "Requests refused with 429 by a rate limit.", registry=REGISTRY)
DELIVERY_LATENCY = Histogram("collab_bus_delivery_latency_seconds",
                             "From acceptance to the entry in the recipient's mailbox (pushed when connected).",
                             buckets=LATENCY_BUCKETS, registry=REGISTRY)
ACK_LATENCY = Histogram("collab_bus_ack_latency_seconds", "From the entry in the mailbox to the recipient's ACK.",
                        buckets=LATENCY_BUCKETS, registry=REGISTRY)
OPEN_WEBSOCKETS = Gauge("collab_bus_open_websockets", "WebSockets open on the API (all its processes).",
                        multiprocess_mode="livesum", registry=REGISTRY)


def count(notification: dict) -> None:
    """Move the counters for one published notification (each one a batch carries)."""
    for item in unbatched(notification):
        _count_one(item)


def _count_one(notification: dict) -> None:
    kind = notification.get("kind")
    if kind == "entries":
        message = notification["message"]
        recipients = len(notification.get("recipients") or [])
        ENTRIES_DELIVERED.labels(message["message_type"]).inc(recipients)
        if recipients and message.get("timestamp"):
            DELIVERY_LATENCY.observe(max(0.0, time.time() - float(message["timestamp"])))
    elif kind == "redeliver":
        REDELIVERIES.inc()
    elif kind == "event":
        event = notification["event"]
        if event["event"] == MESSAGE_ACCEPTED:
            MESSAGES_ACCEPTED.labels(event["data"].get("message_type") or "unknown").inc()
            if event["data"].get("topic"):
                TOPIC_MESSAGES.labels(event["data"]["topic"].split(".", 1)[0]).inc()
        elif event["event"] == MESSAGE_DEAD_LETTERED:
            DEAD_LETTERS.labels(event["data"].get("reason") or "unknown").inc()
        elif event["event"] == MESSAGE_REFUSED:
            GUARD_REFUSALS.labels(event["data"].get("guard") or "unknown").inc()
        elif event["event"] == MESSAGE_REROUTED:
            REROUTED.inc()


class MetricsNotifier:
    """A Notifier that counts what it publishes, then hands it to the real one."""

    def __init__(self, inner: Notifier):
        self.inner = inner

    def publish(self, notification: dict) -> None:
        """Count, then publish `notification`."""
        try:
            count(notification)
        except Exception:  # metrics never break delivery
            log.exception("could not count a notification")
        self.inner.publish(notification)

    def close(self) -> None:
        """Close the wrapped notifier."""
        close = getattr(self.inner, "close", None)
        if close:
            close()


class GaugeCollector:
    """Gauges read at scrape time from `read()`: {name: (help, {label_value or None: value}, label_name)}."""

    def __init__(self, read: Callable[[], dict]):
        self.read = read

    def collect(self):
        """Yield one gauge family per entry of `read()` (errors are logged, and those gauges left out)."""
        try:
            gauges = self.read()
        except Exception as exc:
            log.warning("could not read gauges for /metrics: %s", exc)
            return
        for name, (help_text, samples, label) in gauges.items():
            family = GaugeMetricFamily(name, help_text, labels=[label] if label else None)
            for label_value, value in samples.items():
                family.add_metric([label_value] if label else [], value)
            yield family


# How ProcessGroupCollector combines one sample per process; the others (CPU, memory) are summed.
_COMBINE = {"process_start_time_seconds": min, "process_max_fds": min, "process_open_fds": max}


class ProcessGroupCollector:
    """The process_* metrics of a gunicorn server as a whole: its master and its live workers (CPU seconds and
    memory summed; the earliest start time; the most open file descriptors and the lowest limit, so their ratio
    is at least every process's). Collected in a gunicorn worker: the master is its parent."""

    def collect(self):
        """Yield one family per process metric, combined over the server's processes."""
        families: dict[str, Metric] = {}
        values: dict[str, list[float]] = {}
        for pid in _server_processes():
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                families.setdefault(family.name, family)
                values.setdefault(family.name, []).extend(sample.value for sample in family.samples)
        for name, family in families.items():
            merged = Metric(name, family.documentation, family.type)
            merged.add_sample(family.samples[0].name, {}, _COMBINE.get(name, sum)(values[name]))
            yield merged


def _server_processes() -> list[int]:
    """This process's parent (the gunicorn master) and the parent's children (its workers, this one included)."""
    master = os.getppid()
    try:
        with open(f"/proc/{master}/task/{master}/children") as children:
            return [master, *(int(pid) for pid in children.read().split())]
    except OSError:
        return [master, os.getpid()]


def exposition(extra: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The Prometheus text of the bus's metrics (plus `extra`'s) and its content type: this process's, or, in
    multiprocess mode, those of every API process (counters and histograms summed, open sockets of the live
    processes, process_* of the whole server)."""
    body = generate_latest(_multiprocess_registry() if MULTIPROCESS else REGISTRY)
    if extra is not None:
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST


def _multiprocess_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(ProcessGroupCollector())
    return registry


def observe_ack(waited: float) -> None:
    """Count a first ACK of an entry that waited `waited` seconds in the mailbox."""
    ENTRIES_ACKED.inc()
    ACK_LATENCY.observe(max(0.0, waited))
