"""The Collaboration Bus server.

`app.composition` puts a process together from its Settings (`create_app(settings)` builds the Flask app: REST,
WebSockets, the web GUI); the `collab-bus` command (app.cli) runs the processes. This package module imports
nothing, so `collab-bus api` can patch the standard library for gevent before anything else is imported
(app/cli/__init__.py, app/green.py).
"""
