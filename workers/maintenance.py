"""Periodic upkeep run by beat: outbox sweep, pushing unacknowledged entries again, TTL expiry, purging expired
idempotency keys, reconciling managed sandboxes with the container engine."""

from __future__ import annotations

import logging

from celery import shared_task

from app.runtime import RuntimeFailure
from app.services import idempotency, messages, reconciler, redelivery, registry, skills
from workers.context import worker_context

log = logging.getLogger(__name__)


@shared_task(name="workers.maintenance.sweep_outbox", bind=True)
def sweep_outbox(self, older_than: float | None = None) -> int:
    """Enqueue delivery again for messages accepted more than `older_than` seconds ago (default:
    OUTBOX_SWEEP_AFTER) but not routed."""
    ctx = worker_context(self.app)
    after = ctx.settings.outbox_sweep_after if older_than is None else older_than
    stale = messages.unrouted(ctx.db, older_than=after)
    for message_id, priority in stale:
        ctx.delivery.enqueue(message_id, priority)
    if stale:
        log.info("outbox sweep: re-enqueued %d message(s)", len(stale))
    return len(stale)


@shared_task(name="workers.maintenance.sweep_unacked", bind=True)
def sweep_unacked(self) -> int:
    """Push again the due, unacknowledged entries of connected recipients; dead-letter those out of attempts; route
    again the capability-routed requests of agents that went offline before their ACK."""
    ctx = worker_context(self.app)
    result = redelivery.sweep_unacked(ctx.db, ctx.policy)
    ctx.announce(result.all_notifications())
    rerouted, events = skills.reroute_orphaned(ctx.db, ctx.policy.stale_after)
    for message_id, priority in rerouted:
        ctx.delivery.enqueue(message_id, priority)
    ctx.announce(events)
    if rerouted:
        log.info("redelivery sweep: %d capability-routed request(s) taken back from offline agents", len(rerouted))
    if result.redeliveries or result.notifications:
        log.info("redelivery sweep: %d pushed again, %d dead-lettered", len(result.redeliveries),
                 len(result.notifications))
    return len(result.redeliveries)


@shared_task(name="workers.maintenance.sweep_expired", bind=True)
def sweep_expired(self) -> int:
    """Dead-letter `expired` what outlived its ttl without an ACK (or without being routed)."""
    ctx = worker_context(self.app)
    result = redelivery.sweep_expired(ctx.db)
    ctx.announce(result.notifications)
    if result.notifications:
        log.info("expiry sweep: %d dead-lettered", len(result.notifications))
    return len(result.notifications)


@shared_task(name="workers.maintenance.sweep_heartbeats", bind=True)
def sweep_heartbeats(self) -> int:
    """Mark offline the sandboxes silent for HEARTBEAT_TIMEOUT; their entries wait without using attempts."""
    ctx = worker_context(self.app)
    events = registry.sweep_silent(ctx.db, ctx.settings.heartbeat_timeout)
    ctx.announce(events)
    if events:
        log.info("heartbeat sweep: %d sandbox(es) offline", len(events))
    return len(events)


@shared_task(name="workers.maintenance.purge_idempotency_keys", bind=True)
def purge_idempotency_keys(self) -> int:
    """Delete the Idempotency-Key records older than IDEMPOTENCY_WINDOW; their keys may already be reused."""
    ctx = worker_context(self.app)
    purged = idempotency.purge_expired(ctx.db, ctx.settings.idempotency_window)
    if purged:
        log.info("idempotency purge: %d expired key(s) deleted", purged)
    return purged


@shared_task(name="workers.maintenance.reconcile_sandboxes", bind=True)
def reconcile_sandboxes(self) -> int:
    """Compare managed sandboxes with the engine's containers (app.services.reconciler); enqueue what needs
    converging. Returns how many sandboxes or containers it acted on."""
    ctx = worker_context(self.app)
    settings = ctx.settings
    config = reconciler.ReconcileConfig(settings.bus_instance, settings.lifecycle_state_timeout,
                                        settings.orphan_grace_seconds)
    try:
        report = reconciler.reconcile(ctx.db, ctx.runtime, config, ctx.notifier.publish)
    except RuntimeFailure as exc:
        log.warning("reconciler: %s", exc.message)
        return 0
    for sandbox_id in report.converge:
        ctx.lifecycle_queue.converge(sandbox_id)
    if report:
        log.info("reconciler: converging %s, marked %s, timed out %s, stopped idle %s, removed orphans %s",
                 report.converge, report.marked, report.timed_out, report.idle_stopped,
                 [c[:12] for c in report.orphans_removed])
    return len(report.converge) + len(report.marked) + len(report.timed_out) + len(report.orphans_removed)
