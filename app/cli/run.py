"""The commands that run the bus: `up` (everything in one process), `api`, `worker` and `beat`."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from app.cli.banner import check_listen, host_port, print_banner
from app.cli.database_name import describe_database
from app.cli.process import settings as _settings
from app.config import ConfigError, Settings
from app.multiprocess_metrics import keep_single_process

if TYPE_CHECKING:
    from app.db import Database

EPILOG_UP = """\b
Examples:
  collab-bus up                                  # http://127.0.0.1:8000, data in ./data
  collab-bus up --port 9000 --data-dir /tmp/bus
  HOST=0.0.0.0 PORT=9000 DATA_DIR=/tmp/bus collab-bus up     # what `make run PORT=9000 ...` runs
\b
Started off the defaults, it prints the `export ...` line that lets another shell's collab-bus, SDK and
examples find it.
"""

HOST_OPTION = click.option("--host", default=None, show_default="127.0.0.1",
                           help="Address to listen on (env HOST; 0.0.0.0: every address).")
PORT_OPTION = click.option("--port", default=None, metavar="PORT", show_default="8000",
                           help="Port to listen on (env PORT).")


def _tls(certfile: str | None, keyfile: str | None) -> tuple[str, str] | None:
    """The (certificate, key) pair to serve HTTPS/WSS with, or None for plain HTTP."""
    if bool(certfile) != bool(keyfile):
        raise ConfigError("--certfile and --keyfile go together")
    for path in (certfile, keyfile):
        if path and not os.path.isfile(path):
            raise ConfigError(f"TLS file {path} does not exist")
    if not certfile:
        return None
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS certificate {certfile} and key {keyfile} do not load as a PEM pair: {exc}") from None
    return certfile, keyfile


def _bootstrap_admin_key(settings: Settings, database: Database | None = None) -> str:
    """Create the first admin API key when none exists (print it once, keep it 0600 in DATA_DIR), or register
    ADMIN_API_KEY; warn loudly when authentication is off. Return where the admin key is, for the banner.

    On `database` when given (the embedded bus's own), else on a Database of its own, closed before returning (the
    API's master process forks its workers after this: they must not share its connections)."""
    if not settings.auth_enabled:
        click.echo("collab-bus: WARNING: AUTH_ENABLED=false: every caller is an admin. Local trials only.", err=True)
        return "none: AUTH_ENABLED=false"
    from app.db import Database
    from app.services.auth import ensure_admin_key

    key_file = (settings.data_dir / "admin-api-key").resolve()
    own = database is None
    database = Database(settings.database_url) if own else database
    try:
        secret = ensure_admin_key(database, settings.admin_api_key, key_file)
    finally:
        if own:
            database.dispose()
    if secret:
        click.echo(f"collab-bus: created the first admin API key (shown once; also in {key_file}, mode 0600):\n"
                   f"  {secret}\n"
                   "  use it as `Authorization: Bearer <key>`; `collab-bus keys create` makes more keys")
    if settings.admin_api_key:
        return "ADMIN_API_KEY, as set in the environment"
    if key_file.exists():
        return str(key_file)
    return (f"not in {key_file} (an admin key exists; `collab-bus keys create --role admin --name NAME` "
            "makes another)")


TLS_OPTIONS = [
    click.option("--certfile", envvar="TLS_CERTFILE", type=click.Path(dir_okay=False),
                 help="PEM certificate: serve HTTPS and WSS (with --keyfile)."),
    click.option("--keyfile", envvar="TLS_KEYFILE", type=click.Path(dir_okay=False),
                 help="PEM private key of --certfile."),
]


def _with_tls(command):
    for option in reversed(TLS_OPTIONS):
        command = option(command)
    return command


@click.command(epilog=EPILOG_UP)
@HOST_OPTION
@PORT_OPTION
@click.option("--data-dir", envvar="DATA_DIR", default="data", show_default=True,
              help="Directory for the SQLite database, the admin key and the beat schedule (env DATA_DIR).")
@click.option("--worker-threads", default=4, show_default=True, type=click.IntRange(min=1),
              help="Delivery threads of the embedded worker.")
@_with_tls
def up(host: str | None, port: str | None, data_dir: str, worker_threads: int, certfile: str | None,
       keyfile: str | None) -> None:
    """Run API, worker and beat in one process (in-memory broker, SQLite): no server to install.

    Migrates the database first (creating it on the first start). Stop with Ctrl-C.
    """
    settings = _settings(HOST=host, PORT=port, DATA_DIR=data_dir)
    keep_single_process()  # one process: its metrics stay in memory
    if settings.broker.shared:
        raise ConfigError("`collab-bus up` runs on the in-memory broker; use `collab-bus api` and `collab-bus worker` "
                          f"for {settings.broker.name}")
    tls = _tls(certfile, keyfile)
    check_listen(settings.host, settings.port)
    from app.embedded import EmbeddedBus

    bus = EmbeddedBus(settings, worker_threads=worker_threads, ssl_context=tls)
    admin_key = _bootstrap_admin_key(settings, bus.components.db)
    print_banner(f"Collaboration Bus listening on {bus.url}  (database {describe_database(settings)}; Ctrl-C stops)",
                 settings, bus.scheme, admin_key)
    bus.serve_until_signal()


@click.command()
@HOST_OPTION
@PORT_OPTION
@click.option("--workers", "processes", envvar="API_WORKERS", default=1, show_default=True, type=click.IntRange(min=1),
              help="gunicorn worker processes.")
@click.option("--threads", envvar="API_THREADS", default=100, show_default=True, type=click.IntRange(min=1),
              help="Threads per process with API_WORKER_CLASS=gthread (each open WebSocket holds one).")
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Upgrade the database schema first (creating the database when there is none).")
@_with_tls
def api(host: str | None, port: str | None, processes: int, threads: int, migrate: bool, certfile: str | None,
        keyfile: str | None) -> None:
    """Run the REST + WebSocket API under gunicorn (gevent worker), for a Redis or RabbitMQ broker.

    \b
    Example:
      MESSAGE_BACKEND=redis REDIS_URL=redis://127.0.0.1:6379/0 collab-bus api --port 8000
    \b
    Upgrading from an earlier version on Redis: run `collab-bus db upgrade` once first (it also moves the tasks
    the earlier version left under its former Redis key names).
    """
    settings = _settings(HOST=host, PORT=port)
    if not settings.broker.shared:
        raise ConfigError("`collab-bus api` needs a shared broker (MESSAGE_BACKEND=redis or rabbitmq); "
                          "for a single process use `collab-bus up`")
    tls = _tls(certfile, keyfile)
    check_listen(settings.host, settings.port)
    if migrate:
        from app.migrate import upgrade

        upgrade(settings)
    admin_key = _bootstrap_admin_key(settings)
    scheme = "https" if tls else "http"
    print_banner(f"Collaboration Bus API starting on {scheme}://{host_port(settings.host, settings.port)}  (database "
                 f"{describe_database(settings)}; broker {settings.broker.name}; {processes} process(es))",
                 settings, scheme, admin_key)
    from app.server import serve

    serve(settings, processes=processes, threads=threads, tls=tls)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--queues", "-Q", default="delivery,lifecycle,maintenance", show_default=True, help="Queues to consume.")
@click.option("--concurrency", "-c", default=4, show_default=True, type=click.IntRange(min=1), help="Worker threads.")
@click.option("--metrics-port", envvar="WORKER_METRICS_PORT", type=int, default=None,
              help="Serve this worker's Prometheus metrics on http://HOST:PORT/metrics (HOST: --metrics-host).")
@click.option("--metrics-host", envvar="WORKER_METRICS_HOST", default=None, show_default="127.0.0.1",
              help="Address --metrics-port listens on (0.0.0.0: every interface).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, concurrency: int, metrics_port: int | None, metrics_host: str | None,
           celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker (a thin wrapper over `celery -A workers.celery_app worker`, on the settings read here).

    Extra arguments go to `celery worker` unchanged.

    \b
    Example:
      MESSAGE_BACKEND=redis collab-bus worker -c 8 --hostname w1@%h
    """
    settings = _settings(WORKER_METRICS_HOST=metrics_host)
    keep_single_process()  # one process: its metrics stay in memory
    celery = _celery_app(settings)  # before Celery's CLI, so its refusals are one line
    if metrics_port:
        _serve_worker_metrics(settings.worker_metrics_host, metrics_port)

    # Not celery.worker_main(): it drops the exit status, and a worker stopped by an unrecoverable error
    # must not exit 0 (a supervisor restarting failed workers would leave it dead).
    status = _run_celery(celery, ["worker", "-Q", queues, "-P", "threads", "-c", str(concurrency),
                                  "-l", settings.log_level, *celery_args])
    sys.exit(status if isinstance(status, int) else 0)


def _celery_app(settings: Settings):
    """The Celery app of a worker or beat process, initialised from `settings` (workers.bootstrap)."""
    from app.components import Components
    from workers.bootstrap import celery_init_app

    return celery_init_app(Components(settings))


def _run_celery(celery, argv: list[str]):
    """Run Celery's command line on the app object `celery`, given as the default of its -A option as
    `Celery.start` does, but returning the command's exit status (`-A workers.celery_app` would read the settings
    from the environment again). Prefork children, if asked for, inherit the app with the fork."""
    from celery.bin.celery import celery as celery_command

    app_option = next(option for option in celery_command.params if option.name == "app")  # -A/--app
    app_option.default = celery
    try:
        return celery_command.main(argv, standalone_mode=False)
    finally:
        app_option.default = None


def _serve_worker_metrics(host: str, port: int) -> None:
    """Serve this worker's registry on http://host:port/metrics from a background thread."""
    from prometheus_client import start_http_server

    from app.metrics import REGISTRY

    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"collab-bus worker: metrics on http://{f'[{host}]' if ':' in host else host}:{port}/metrics")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat (periodic maintenance such as the outbox sweep); run exactly one per deployment."""
    settings = _settings()
    keep_single_process()  # one process: its metrics stay in memory
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery = _celery_app(settings)
    celery.start(["beat", "-l", settings.log_level, "-s", str(settings.data_dir / "celerybeat-schedule"),
                  *celery_args])

