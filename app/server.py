"""The production API server: gunicorn running the bus's Flask app, configured from Settings."""

from __future__ import annotations

import logging
import resource
import signal
import threading

from gunicorn.app.base import BaseApplication

from app import green, multiprocess_metrics
from app.config import ConfigError, Settings

log = logging.getLogger(__name__)

GOING_AWAY_WAIT = 3.0  # seconds of the graceful timeout given to sockets closed with 1001 to finish closing


class _Gunicorn(BaseApplication):
    """gunicorn serving the Flask app `create_app(settings)` builds in each worker process, after the fork: the
    workers run on the Settings the master was given (they inherit the object), never on the environment again."""

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
        # gevent (the default): an open socket costs greenlets (its handler, simple-websocket's reader, the
        # mailbox streamer), not OS threads, so one process holds thousands; gthread: a thread slot each.
        self.cfg.set("worker_class", settings.api_worker_class)
        self.cfg.set("worker_connections", settings.api_worker_connections)
        self.cfg.set("timeout", 60)
        self.cfg.set("graceful_timeout", 5)
        # Idle kept-alive connections stay open longer than clients keep them in their pools (httpx: 5 s; a load
        # balancer: often 60 s). With gunicorn's default of 2 s, a client reusing a connection just as gunicorn
        # closed it got a reset or an empty response, and nothing was logged.
        self.cfg.set("keepalive", settings.http_keepalive_timeout)
        self.cfg.set("loglevel", settings.log_level.lower())
        self.cfg.set("control_socket_disable", True)  # unused, and one path per user: API processes would share it
        self.cfg.set("accesslog", "-" if settings.log_level == "DEBUG" else None)
        self.cfg.set("post_worker_init", close_sockets_on_sigterm)
        self.cfg.set("child_exit", _child_exit)
        if self.tls:
            self.cfg.set("certfile", self.tls[0])
            self.cfg.set("keyfile", self.tls[1])

    def load(self):
        from app.composition import create_app  # in the worker: after the metrics directory is exported

        app = create_app(self.settings)
        if green.is_patched():  # gevent: most sockets read by their handler, no reader greenlet each
            from app.ws.connections import green_server_options

            app.config["SOCK_SERVER_OPTIONS"] = {**app.config.get("SOCK_SERVER_OPTIONS", {}), **green_server_options()}
        return app


def close_sockets_on_sigterm(worker) -> None:
    """gunicorn `post_worker_init` hook: at the start of the worker's graceful stop (SIGTERM), stop accepting and
    close every open socket with 1001 "going away", so clients tell a planned restart from a network fault."""
    sockets = worker.wsgi.extensions["bus"].sockets
    handle_exit = worker.handle_exit

    def on_sigterm(sig, frame):
        handle_exit(sig, frame)
        if hasattr(worker, "set_accept_enabled"):  # gthread: no new socket lands on this worker from now on
            worker.set_accept_enabled(False)
        elif green.is_patched():  # gevent: the same at once (its run loop would only stop within a second)
            _stop_accepting_gevent()
        if green.is_patched():  # the handler may run in gevent's hub, where starting a thread would block
            import gevent

            gevent.spawn(sockets.going_away, GOING_AWAY_WAIT)
        else:
            threading.Thread(target=sockets.going_away, args=(GOING_AWAY_WAIT,), name="ws-going-away",
                             daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)


def _stop_accepting_gevent() -> None:
    """Stop this gevent worker's servers accepting, so reconnecting clients land on another worker (after a
    SIGHUP reload: the new ones) or, behind a balancer, on another node, rather than on this stopping one.

    The connections the kernel already queued on the listening socket are taken and served, then this process's
    copy of the socket is closed at once, with no pause between the two: once the master and every worker have
    closed theirs (gunicorn's master closes its own first), the kernel refuses new connections, which a balancer
    retries elsewhere, instead of queueing them for a worker that never accepts them and resetting them when it
    exits (a 502 for a request the balancer had already sent). gunicorn keeps its StreamServers in a local of its
    run loop, so they are found among the live objects (once, at the stop). Never blocks."""
    import gc

    from gevent.server import StreamServer

    for candidate in gc.get_objects():
        if isinstance(candidate, StreamServer):
            candidate.stop_accepting()
            _serve_queued_and_close(candidate)


def _serve_queued_and_close(server) -> None:
    """Accept and hand to `server`'s handler every connection already queued on its listening socket, then close
    this process's copy of that socket."""
    try:
        while not server.full():
            try:
                accepted = server.do_read()
            except BlockingIOError:
                break
            if not accepted:
                break
            server.do_handle(*accepted)
    except OSError as exc:  # the socket is gone already: nothing was queued for this worker
        log.debug("taking the queued connections at stop: %s", exc)
    finally:
        server.socket.close()


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (one descriptor per socket; gunicorn's workers
    inherit it) and log it, with a warning when it is below `wanted` connections; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + 1024)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    if soft < wanted:
        log.warning("open-files limit %d (ulimit -n) is below API_WORKER_CONNECTIONS=%d: each process holds at "
                    "most about %d sockets; raise the hard limit (systemd LimitNOFILE=, docker --ulimit nofile=)",
                    soft, wanted, soft - 64)
    else:
        log.info("open-files limit %d (ulimit -n)", soft)
    return soft


def _child_exit(server, worker) -> None:
    multiprocess_metrics.worker_exited(worker.pid)


def serve(settings: Settings, *, processes: int, threads: int, tls: tuple[str, str] | None = None) -> None:
    """Serve the API under gunicorn until it is stopped (SIGTERM: graceful stop). Its processes share their
    metrics (app.multiprocess_metrics), so every scrape of /metrics reports all of them."""
    if settings.api_worker_class == "gevent" and not green.is_patched():
        raise ConfigError("API_WORKER_CLASS=gevent needs the process patched by gevent before it imports anything "
                          "(run `collab-bus api`, which does; or set API_WORKER_CLASS=gthread)")
    raise_open_files_limit(settings.api_worker_connections)
    metrics_directory = multiprocess_metrics.prepare(settings)
    try:
        _Gunicorn(settings, processes, threads, tls).run()
    finally:
        metrics_directory.remove()
