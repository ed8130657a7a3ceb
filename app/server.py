"""The production API server: gunicorn running `app.wsgi:app`, configured from Settings."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from app.config import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, processes: int, threads: int, tls: tuple[str, str] | None):
        self.settings = settings
        self.processes = processes
        self.threads = threads
        self.tls = tls
        super().__init__()

    def load_config(self):
        settings = self.settings
        self.cfg.set("bind", f"{settings.host}:{settings.port}")
        self.cfg.set("workers", self.processes)
        self.cfg.set("threads", self.threads)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("timeout", 60)
        self.cfg.set("graceful_timeout", 5)
        # Idle kept-alive connections stay open longer than clients keep them in their pools (httpx: 5 s; a load
        # balancer: often 60 s). With gunicorn's default of 2 s, a client reusing a connection just as gunicorn
        # closed it got a reset or an empty response, and nothing was logged.
        self.cfg.set("keepalive", settings.http_keepalive_timeout)
        self.cfg.set("loglevel", settings.log_level.lower())
        self.cfg.set("accesslog", "-" if settings.log_level == "DEBUG" else None)
        if self.tls:
            self.cfg.set("certfile", self.tls[0])
            self.cfg.set("keyfile", self.tls[1])

    def load(self):
        from app.wsgi import app

        return app


def serve(settings: Settings, *, processes: int, threads: int, tls: tuple[str, str] | None = None) -> None:
    """Serve the API under gunicorn until it is stopped (SIGTERM: graceful stop)."""
    _Gunicorn(settings, processes, threads, tls).run()
