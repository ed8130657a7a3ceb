"""Domain logic of the bus as plain functions over a `Database`: no Flask, no Celery, testable with plain calls."""
