"""One measured phase against a running bus: fresh sandboxes, a receiver that ACKs, sender processes, CPU.

`run_phase()` registers a receiver and one sender sandbox per connection, opens the receiver's mailbox
socket, sends, waits until every accepted message arrived (or nothing arrived for a while), and returns a
PhaseResult with rates, latencies, answers and CPU per process kind.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from harness.cpu import CpuMeter
from harness.report import fmt, percentile, print_table
from harness.senders import SendPlan, run_senders
from harness.traffic import MailboxReceiver, register


@dataclass
class PhaseResult:
    """Figures of one phase. Latencies are send -> arrival at the receiver, in ms; `msgs_per_s` is messages
    received / (last arrival - first send); `send_per_s` accepted messages / sending time."""

    label: str
    planned: int
    accepted: int
    received: int
    lost: int
    duplicates: int
    msgs_per_s: float | None
    send_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    accept_p50_ms: float | None
    answers: Counter
    item_errors: Counter
    cpu_ms_per_msg: dict[str, float | None]
    cpu_pct: dict[str, float | None]
    unavailable: str | None = None
    notes: list[str] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (send time, latency ms) by send time

    @property
    def refused(self) -> int:
        """Requests not answered 202/accepted (statuses, connection errors)."""
        return sum(n for kind, n in self.answers.items() if kind not in ("202", "accepted"))


def run_phase(bus, label: str, method: str, count: int, connections: int, rate: float | None = None,
              procs: int = 1, batch_size: int = 50, window: int = 32, timeout: float = 120.0,
              message_type: str = "notification", ack: bool = True) -> PhaseResult:
    """Measure one phase on `bus` (a BenchBus): `count` messages by `method` ("rest", "batch", "socket")
    from `connections` client connections in `procs` sender processes, paced at `rate` or unpaced."""
    suffix = uuid.uuid4().hex[:8]
    receiver = register(bus.url, f"bench-receiver-{suffix}")
    senders = tuple(register(bus.url, f"bench-sender-{suffix}-{n}") for n in range(connections))
    plan = SendPlan(method=method, base_url=bus.url, ws_url=bus.ws_url, senders=senders,
                    receiver=receiver.sandbox_id, count=count, rate=rate, batch_size=batch_size, window=window,
                    message_type=message_type, time_limit=timeout)
    inbox = MailboxReceiver(bus.ws_url, receiver, ack=ack)
    inbox.start()
    meter = CpuMeter(bus.process_kinds())
    own_cpu = [0.0]

    def started(children) -> None:
        meter.start()
        own_cpu[0] = time.process_time()

    try:
        log = run_senders(plan, procs, on_ready=started)
        inbox.wait_for_all(set(log.sent_at), time.monotonic() + timeout)
        meter.stop()
        own = time.process_time() - own_cpu[0]
        time.sleep(0.2)  # a moment for late duplicates
    finally:
        inbox.halt()
    result = summarize(label, count, log, inbox, meter)
    result.cpu_ms_per_msg["client"] = 1000 * (own + log.cpu_seconds) / result.received if result.received else None
    result.cpu_pct["client"] = 100 * (own + log.cpu_seconds) / meter.wall
    if rate and result.send_per_s and result.send_per_s < 0.95 * rate:
        result.notes.append(f"the bus accepted only {result.send_per_s:.0f} of the paced {rate:g} msg/s, so "
                            "these latencies include queueing")
    return result


def summarize(label: str, planned: int, log, inbox: MailboxReceiver, meter: CpuMeter) -> PhaseResult:
    """Turn a merged SendLog, the receiver's records and the CPU meter into a PhaseResult."""
    expected = set(log.sent_at)
    timeline = sorted((log.sent_at[i], (inbox.arrived[i] - log.sent_at[i]) * 1000)
                      for i in expected if i in inbox.arrived)
    latencies = [ms for _, ms in timeline]
    received = len(latencies)
    first_send = min(log.sent_at.values(), default=None)
    last_arrival = max((inbox.arrived[i] for i in expected if i in inbox.arrived), default=None)
    elapsed = (last_arrival - first_send) if received else None
    send_elapsed = (log.finished_at - first_send) if first_send is not None else None
    notes = [text for text in (log.first_error, inbox.error) if text]
    if inbox.other_frames:
        notes.append(f"{inbox.other_frames} other frame(s) on the receiver's socket")
    if inbox.error_frames:
        notes.append(f"receiver got error frames: {dict(inbox.error_frames)}")
    return PhaseResult(
        label=label, planned=planned, accepted=len(expected), received=received,
        lost=len(inbox.missing(expected)), duplicates=inbox.duplicates,
        msgs_per_s=received / elapsed if elapsed else None,
        send_per_s=len(expected) / send_elapsed if send_elapsed else None,
        p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=None),
        accept_p50_ms=percentile(log.accept_ms, 50), answers=log.answers, item_errors=log.item_errors,
        cpu_ms_per_msg={k: meter.ms_per(k, received) for k in meter.seconds},
        cpu_pct={k: meter.percent(k) for k in meter.seconds},
        unavailable=log.unavailable, notes=notes, timeline=timeline)


def bus_cpu_ms(result: PhaseResult) -> float | None:
    """CPU ms per message of the bus's own processes (API + worker, or the embedded process)."""
    values = [v for k, v in result.cpu_ms_per_msg.items() if k in ("bus", "api", "worker") and v is not None]
    return sum(values) if values else None


PHASE_COLUMNS = [("phase", -30), ("msgs", 6), ("send/s", 7), ("msg/s", 7), ("p50 ms", 7), ("p99 ms", 7),
                 ("max ms", 7), ("acc p50", 7), ("lost", 5), ("dup", 4), ("refused", 7), ("bus cpu", 7),
                 ("cpu ms/msg by process", -40)]


def print_phases(results: list[PhaseResult], title: str | None = None) -> None:
    """The phases as one table, then each phase's notes."""
    rows = []
    for r in results:
        per_kind = " ".join(f"{k} {fmt(v, 2)}" for k, v in r.cpu_ms_per_msg.items())
        rows.append([r.label, r.received, fmt(r.send_per_s, 0), fmt(r.msgs_per_s, 0), fmt(r.p50_ms),
                     fmt(r.p99_ms), fmt(r.max_ms), fmt(r.accept_p50_ms), r.lost, r.duplicates,
                     r.refused + sum(r.item_errors.values()), fmt(bus_cpu_ms(r), 2), per_kind])
    print_table(PHASE_COLUMNS, rows, title)
    for r in results:
        if r.unavailable:
            print(f"  {r.label}: {r.unavailable}")
        for note in r.notes:
            print(f"  {r.label}: note: {note}")
        if r.item_errors:
            print(f"  {r.label}: per-item errors {dict(r.item_errors)}")
        if r.refused:
            print(f"  {r.label}: answers {dict(r.answers)}")
