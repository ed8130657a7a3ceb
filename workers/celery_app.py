"""The workers' Celery app: `celery -A workers.celery_app worker -Q delivery` runs it as is."""

from __future__ import annotations

import sys

from celery.signals import worker_ready

from app.broker import make_celery
from app.config import Settings

settings = Settings.from_env()
celery_app = make_celery(settings, name="collab_bus")
celery_app.conf.include = ["workers.delivery", "workers.maintenance"]


@worker_ready.connect
def announce_ready(sender=None, **_) -> None:
    """Print one line when the worker consumes, whatever LOG_LEVEL is (operators and scripts wait for it)."""
    sys.__stdout__.write(f"collab-bus worker {getattr(sender, 'hostname', '')} ready\n")  # past Celery's redirect
    sys.__stdout__.flush()
