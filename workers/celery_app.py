"""The workers' Celery app: `celery -A workers.celery_app worker -Q delivery` runs it as is."""

from __future__ import annotations

import logging
import sys

from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready

from app.broker import make_celery
from app.config import Settings


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


settings = Settings.from_env()
if settings.log_level != "DEBUG":  # LOG_LEVEL=DEBUG shows every line
    for _name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(_name).addFilter(QuietRoutineSweeps())
settings.broker.prepare_worker()  # e.g. the kombu workaround on Redis; ConfigError (one line) when it cannot be
celery_app = make_celery(settings, name="collab_bus")
celery_app.conf.include = ["workers.delivery", "workers.lifecycle", "workers.maintenance", "workers.engine_events"]


@worker_ready.connect
def announce_ready(sender=None, **_) -> None:
    """Print one line when the worker consumes, whatever LOG_LEVEL is (operators and scripts wait for it)."""
    sys.__stdout__.write(f"collab-bus worker {getattr(sender, 'hostname', '')} ready\n")  # past Celery's redirect
    sys.__stdout__.flush()


@after_setup_logger.connect
@after_setup_task_logger.connect
def use_log_format(logger=None, **_) -> None:
    """Celery sets up its own log handlers: give them LOG_FORMAT's formatter (JSON lines with LOG_FORMAT=json)."""
    from app.logs import use_formatter

    if logger is not None:
        use_formatter(logger, settings.log_format)
