"""A process's Celery app made the bus's worker (and beat) from the Settings it was given, as Flask's
`celery_init_app` pattern does: `collab-bus worker` / `beat` and the embedded bus call `celery_init_app` with the
Components their command built; workers/celery_app.py calls it with Components from the environment, for the
stock Celery tools. The tasks (`shared_task`) find their WorkerContext through the app that runs them."""

from __future__ import annotations

import logging
import sys

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready

from app.components import Components
from workers.context import WorkerContext, attach

TASK_MODULES = ["workers.delivery", "workers.lifecycle", "workers.maintenance", "workers.engine_events"]
_LOG_FORMAT_RECEIVER = "collab-bus-log-format"


class QuietRoutineSweeps(logging.Filter):
    """Drops Celery's INFO lines about maintenance sweeps that did nothing ("Sending due task", "received",
    "succeeded …: 0"): the sweeps run every second and log what they did when they act. Errors always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        text = record.getMessage()
        if "workers.maintenance." not in text:
            return True
        routine = text.endswith(" received") or "Sending due task" in text
        return not (routine or ("succeeded in" in text and text.endswith(": 0")))


def celery_init_app(components: Components) -> Celery:
    """`components`' Celery app, made fit to run the bus's tasks and beat's schedule on their Settings: the broker
    prepared for a worker (e.g. the kombu workaround on Redis; ConfigError, one line, when it cannot be), the task
    modules included, the WorkerContext its tasks use attached, Celery's log handlers given LOG_FORMAT's formatter,
    the routine sweep lines left out of the logs (except at LOG_LEVEL=DEBUG), and the app made the default one
    (Celery's worker threads fall back to it). Nothing is read from the environment."""
    settings = components.settings
    settings.broker.prepare_worker()
    if settings.log_level != "DEBUG":  # LOG_LEVEL=DEBUG shows every line
        for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
            logger = logging.getLogger(name)
            if not any(isinstance(existing, QuietRoutineSweeps) for existing in logger.filters):
                logger.addFilter(QuietRoutineSweeps())
    _use_log_format(settings.log_format)
    celery = components.celery
    celery.conf.include = TASK_MODULES
    attach(celery, WorkerContext(components))
    celery.set_default()
    return celery


def _use_log_format(log_format: str) -> None:
    """Celery sets up its own log handlers: give them `log_format`'s formatter (JSON lines with LOG_FORMAT=json)."""
    from app.logs import use_formatter

    def use_log_format(logger=None, **_) -> None:
        if logger is not None:
            use_formatter(logger, log_format)

    for signal in (after_setup_logger, after_setup_task_logger):
        signal.disconnect(dispatch_uid=_LOG_FORMAT_RECEIVER)
        signal.connect(use_log_format, weak=False, dispatch_uid=_LOG_FORMAT_RECEIVER)


@worker_ready.connect
def announce_ready(sender=None, **_) -> None:
    """Print one line when the worker consumes, whatever LOG_LEVEL is (operators and scripts wait for it)."""
    sys.__stdout__.write(f"collab-bus worker {getattr(sender, 'hostname', '')} ready\n")  # past Celery's redirect
    sys.__stdout__.flush()
