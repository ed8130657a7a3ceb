"""The workers' Celery app: `celery -A workers.celery_app worker -Q delivery` runs it as is."""

from __future__ import annotations

from app.broker import make_celery
from app.config import Settings

settings = Settings.from_env()
celery_app = make_celery(settings, name="collab_bus")
celery_app.conf.include = ["workers.delivery", "workers.maintenance"]
