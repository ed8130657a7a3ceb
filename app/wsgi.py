"""WSGI entry point for gunicorn (`collab-bus api` uses it): one app per worker process."""

from app import create_app

app = create_app()
