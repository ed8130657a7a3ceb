"""Celery side of the bus: the Celery app and tasks that are thin wrappers over app.services."""
