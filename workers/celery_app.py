"""The workers' Celery app for the stock Celery tools: `celery -A workers.celery_app worker -Q delivery` runs it as
is, and so do `celery -A workers.celery_app inspect ...`, `control`, `events` and Flower.

Those tools know nothing of the bus's settings, so this module reads them from the environment, the only place a
process of the bus does so on import; `collab-bus worker` and `beat` never import it (they initialise their app
from the Settings the command read: workers.bootstrap.celery_init_app).
"""

from __future__ import annotations

from app.components import Components
from app.config import Settings
from workers.bootstrap import celery_init_app

celery_app = celery_init_app(Components(Settings.from_env()))
