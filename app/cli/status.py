"""`collab-bus status`: the bus at a glance, from its API, the broker and the Celery workers of the environment."""

from __future__ import annotations

import sys

import click

from app.cli.client import Bus, OpsError, bus_command, reason
from app.cli.dlq import count
from app.cli.output import json_out
from app.config import Settings

EXIT_DEGRADED = 3  # the bus answers, but something it needs does not


EPILOG_STATUS = """\b
Examples:
  collab-bus status
  MESSAGE_BACKEND=redis REDIS_URL=redis://10.0.0.5:6379/0 collab-bus status --url http://10.0.0.5:8000
  collab-bus status --json

\b
Exit status: 0 all is well; 1 the bus does not answer; 3 the bus answers but is not ready, a call was
refused, the broker is unreachable or no worker answered.
"""


def _workers(settings: Settings, timeout: float) -> dict:
    """Celery workers of the broker of `settings` answering ping within `timeout`, with the queues each consumes."""
    from app.broker import make_celery

    celery = make_celery(settings)
    pongs = celery.control.inspect(timeout=timeout).ping() or {}
    queues = {}
    if pongs:  # ask exactly those: the answer comes as soon as each has replied
        queues = celery.control.inspect(timeout=timeout, destination=list(pongs), limit=len(pongs)
                                        ).active_queues() or {}
    return {name: sorted(q["name"] for q in queues.get(name, [])) for name in sorted(pongs)}


@bus_command("status", epilog=EPILOG_STATUS)
@click.option("--inspect-timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds to wait for Celery workers to answer ping.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def status(bus: Bus, inspect_timeout: float, as_json: bool) -> None:
    """The bus at a glance: API health and readiness, sandboxes, dead letters, broker, workers, queue depths.

    The API is asked over --url; the broker and the Celery workers are those of the environment (MESSAGE_BACKEND,
    REDIS_URL, RABBITMQ_URL, BROKER_URL), as `collab-bus worker` would use them.
    """
    report: dict = {"url": bus.url}
    problems: list[str] = []
    lines: list[tuple[str, str]] = []

    # The API itself: down is fatal.
    try:
        health = bus.request("GET", "/healthz")
    except OpsError as exc:
        if as_json:
            json_out({**report, "up": False, "error": exc.message})
        raise OpsError(f"bus DOWN: {exc.message}") from None
    report["up"] = True
    lines.append(("bus", f"{bus.url} up ({health.json().get('status', 'ok')})"))

    ready = bus.request("GET", "/readyz", allow=tuple(range(400, 600)))
    if ready.status_code == 404:
        report["ready"] = None
        lines.append(("ready", "no /readyz on this bus"))
    else:
        try:
            detail = ready.json()
        except ValueError:
            detail = {"status": ready.text.strip()[:100]}
        report["ready"] = ready.status_code == 200
        report["readiness"] = detail
        text = "ready" if ready.status_code == 200 else f"NOT READY ({ready.status_code})"
        checks = None
        if isinstance(detail, dict):  # 200 {"status", "checks"}; 503 an error body with the checks as details
            error = detail.get("error") if isinstance(detail.get("error"), dict) else {}
            checks = detail.get("checks") or error.get("details")
            if error.get("message"):
                text += f" {error['message']}"
        if isinstance(checks, dict) and checks:
            text += ": " + ", ".join(f"{k} {v if not isinstance(v, dict) else v.get('status', v)}"
                                     for k, v in checks.items())
        lines.append(("ready", text))
        if ready.status_code != 200:
            problems.append("not ready")

    # What the API knows (needs a token that may read sandboxes and dead letters).
    try:
        listed = bus.get("/api/v1/sandboxes")["sandboxes"]
        online = sum(1 for s in listed if s["status"] == "online")
        report["sandboxes"] = {"registered": len(listed), "online": online}
        lines.append(("sandboxes", f"{len(listed)} registered, {online} online"))
    except OpsError as exc:
        report["sandboxes"] = {"error": exc.message}
        lines.append(("sandboxes", f"unknown: {exc.message}"))
        problems.append("sandboxes")
    try:
        dead = count(bus, {})
        report["dead_letters"] = dead
        lines.append(("dead letters", str(dead)))
    except OpsError as exc:
        report["dead_letters"] = {"error": exc.message}
        lines.append(("dead letters", f"unknown: {exc.message}"))
        problems.append("dead letters")

    # The broker and workers of the environment.
    settings = Settings.from_env()
    broker = settings.broker
    kind = broker.name
    report["broker"] = {"kind": kind, "url": broker.shown_url()}
    if not broker.shared:
        lines.append(("broker", f"{broker.describe()}: embedded worker (in the API process)"))
        report["workers"] = "embedded"
    else:
        try:
            broker.reachable(inspect_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is reported as one line
            report["broker"]["reachable"] = False
            report["broker"]["error"] = reason(exc)
            lines.append(("broker", f"{kind} {broker.shown_url()} UNREACHABLE: {reason(exc)}"))
            problems.append("broker")
        else:
            report["broker"]["reachable"] = True
            lines.append(("broker", f"{kind} {broker.shown_url()} reachable"))
            try:
                workers = _workers(settings, inspect_timeout)
            except Exception as exc:  # noqa: BLE001
                workers = {}
                lines.append(("workers", f"inspect failed: {reason(exc)}"))
            report["workers"] = workers
            if workers:
                lines.append(("workers", f"{len(workers)} answered ping"))
                for name, queues in workers.items():
                    lines.append(("", f"{name}: consumes {', '.join(queues) or '(no queue)'}"))
            else:
                lines.append(("workers", f"NONE answered ping within {inspect_timeout:g} s"))
                problems.append("workers")
            try:
                depths = broker.queue_report(inspect_timeout)
                report["queue_depths"] = depths
                for queue, depth in depths["queues"].items():
                    if depth is None:
                        text = "not declared yet"
                    else:
                        text = f"{depth['messages']} waiting"
                        if depth.get("by_priority_step"):
                            text += " (by priority step: " + ", ".join(
                                f"{step} {n}" for step, n in depth["by_priority_step"].items()) + ")"
                        if "consumers" in depth:
                            text += f", {depth['consumers']} consumer{'s' if depth['consumers'] != 1 else ''}"
                    lines.append((f"queue {queue}", text))
                if "unacked" in depths:
                    lines.append(("in progress", f"{depths['unacked']} task(s) taken by workers, not yet acknowledged"))
            except Exception as exc:  # noqa: BLE001
                lines.append(("queues", f"depths unavailable: {reason(exc)}"))
    report["problems"] = problems
    if as_json:
        json_out(report)
    else:
        width = max(len(label) for label, _ in lines) + 2
        for label, text in lines:
            click.echo(f"{(label + ':') if label else '':<{width}}{text}")
        if problems:
            click.echo(f"DEGRADED: {', '.join(problems)}")
    if problems:
        sys.exit(EXIT_DEGRADED)
