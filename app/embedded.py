"""Embedded mode: API, Celery worker and beat in one process, on Kombu's in-memory transport and SQLite."""

from __future__ import annotations

import logging
import signal
import threading

from app.brokers import BUS_QUEUES
from app.config import Settings

log = logging.getLogger(__name__)

GOING_AWAY_WAIT = 3.0  # seconds a stop waits for the sockets it closed with 1001 to finish their closing handshake


class EmbeddedBus:
    """The whole bus in one process: `start()` brings up worker, beat and HTTP server; `stop()` ends them."""

    def __init__(self, settings: Settings, *, worker_threads: int = 4, ssl_context: tuple[str, str] | None = None):
        """Migrate the database and build API, worker and beat on one Components of `settings` (app.composition):
        one database engine, one notifier and one Celery app for the whole process."""
        from werkzeug.serving import make_server

        from app.components import Components
        from app.composition import create_app
        from app.migrate import upgrade
        from workers.bootstrap import celery_init_app

        self.settings = settings
        upgrade(settings)
        self.components = components = Components(settings)
        # celery_init_app also makes it the default app: Celery's worker threads find "the current app" through a
        # thread-local that only the main thread has set, and elsewhere fall back to the default app; a task's
        # retry is sent through it, so it must be this app, or retries fail to publish and the task is rejected.
        self.celery = celery_init_app(components)
        self.celery.loader.import_default_modules()
        self.app = create_app(components)
        self.server = make_server(settings.host, settings.port, self.app, threaded=True, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context else "http"
        self.worker = self.celery.WorkController(
            pool="threads", concurrency=worker_threads, queues=list(BUS_QUEUES), loglevel=settings.log_level,
            without_heartbeat=True, without_mingle=True, without_gossip=True, hostname="embedded@localhost",
        )
        from celery.beat import EmbeddedService

        self.beat = EmbeddedService(self.celery, thread=True, max_interval=5,
                                    schedule_filename=str(settings.data_dir / "celerybeat-schedule"))
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        """The base URL the HTTP server listens on."""
        return f"{self.scheme}://{self.settings.host}:{self.server.server_port}"

    def start(self) -> None:
        """Start worker and beat threads, then the HTTP server thread."""
        threading.Thread(target=self.worker.start, name="celery-worker", daemon=True).start()
        self.beat.start()
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        log.info("collab-bus up: %s (broker %s, database %s)", self.url, self.settings.broker_url,
                 self.settings.database_url)

    def stop(self) -> None:
        """Stop accepting connections, close every open socket with 1001 "going away", let the worker finish its
        current tasks, stop beat."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("collab-bus: shutting down")
        self.server.shutdown()
        self.app.extensions["bus"].sockets.going_away(GOING_AWAY_WAIT)
        self.beat.stop()
        self.worker.stop(in_sighandler=False)

    def serve_until_signal(self) -> None:
        """Run until SIGINT or SIGTERM."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        while not done.wait(1):
            pass
        self.stop()
