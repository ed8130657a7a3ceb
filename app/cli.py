"""The `collab-bus` command: run the bus (embedded or as separate processes) and manage its database."""

from __future__ import annotations

import logging
import os
import sys

import click
from sqlalchemy.exc import DBAPIError

from app.config import ConfigError, Settings
from app.multiprocess_metrics import keep_single_process

EPILOG_UP = """\b
Examples:
  collab-bus up                                  # http://127.0.0.1:8000, data in ./data
  collab-bus up --port 9000 --data-dir /tmp/bus
"""


class BusGroup(click.Group):
    """A click group that reports configuration errors as one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"collab-bus: configuration error: {exc}", err=True)
            sys.exit(2)
        except DBAPIError as exc:
            click.echo(f"collab-bus: database error: {str(exc.orig).splitlines()[0]} ({_safe_url(exc)})", err=True)
            sys.exit(1)
        except OSError as exc:  # e.g. a DATA_DIR that cannot be created, a port taken
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"collab-bus: error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)


def _safe_url(exc: DBAPIError) -> str:
    """The failing database URL without its password, for error messages."""
    try:
        return Settings.from_env().database_url.split("@")[-1]
    except ConfigError:
        return "DATABASE_URL"


def _settings(**overrides) -> Settings:
    """Settings from the environment, with CLI options written back so every component agrees."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    settings = Settings.from_env()
    from app.logs import configure

    configure(settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


@click.group(cls=BusGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """AInTandem Collaboration Bus.

    Configuration comes from environment variables (DATABASE_URL, MESSAGE_BACKEND, REDIS_URL,
    BROKER_URL, LOG_LEVEL, ...; see the README). Run `collab-bus COMMAND --help` for each command.
    """


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


def _bootstrap_admin_key(settings: Settings) -> None:
    """Create the first admin API key when none exists (print it once, keep it 0600 in DATA_DIR), or register
    ADMIN_API_KEY; warn loudly when authentication is off."""
    if not settings.auth_enabled:
        click.echo("collab-bus: WARNING: AUTH_ENABLED=false: every caller is an admin. Local trials only.", err=True)
        return
    from app.db import Database
    from app.services.auth import ensure_admin_key

    key_file = settings.data_dir / "admin-api-key"
    database = Database(settings.database_url)
    try:
        secret = ensure_admin_key(database, settings.admin_api_key, key_file)
    finally:
        database.dispose()
    if secret:
        click.echo(f"collab-bus: created the first admin API key (shown once; also in {key_file}, mode 0600):\n"
                   f"  {secret}\n"
                   "  use it as `Authorization: Bearer <key>`; `collab-bus keys create` makes more keys")


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


@main.command(epilog=EPILOG_UP)
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", envvar="PORT", default=8000, type=int, show_default=True, help="Port to listen on.")
@click.option("--data-dir", envvar="DATA_DIR", default="data", show_default=True,
              help="Directory for the SQLite database and beat schedule.")
@click.option("--worker-threads", default=4, show_default=True, type=click.IntRange(min=1),
              help="Delivery threads of the embedded worker.")
@_with_tls
def up(host: str, port: int, data_dir: str, worker_threads: int, certfile: str | None, keyfile: str | None) -> None:
    """Run API, worker and beat in one process (in-memory broker, SQLite): no server to install.

    Migrates the database first. Stop with Ctrl-C.
    """
    settings = _settings(HOST=host, PORT=port, DATA_DIR=data_dir)
    keep_single_process()  # one process: its metrics stay in memory
    if settings.broker_kind != "memory":
        raise ConfigError("`collab-bus up` runs on the in-memory broker; use `collab-bus api` and `collab-bus worker` "
                          f"for {settings.broker_kind}")
    tls = _tls(certfile, keyfile)
    from app.embedded import EmbeddedBus

    bus = EmbeddedBus(settings, worker_threads=worker_threads, ssl_context=tls)
    _bootstrap_admin_key(settings)
    click.echo(f"Collaboration Bus listening on {bus.url}  (database {settings.database_url}; Ctrl-C stops)")
    bus.serve_until_signal()


@main.command()
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", envvar="PORT", default=8000, type=int, show_default=True, help="Port to listen on.")
@click.option("--workers", "processes", envvar="API_WORKERS", default=1, show_default=True, type=click.IntRange(min=1),
              help="gunicorn worker processes.")
@click.option("--threads", envvar="API_THREADS", default=100, show_default=True, type=click.IntRange(min=1),
              help="Threads per process with API_WORKER_CLASS=gthread (each open WebSocket holds one).")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Upgrade the database schema first.")
@_with_tls
def api(host: str, port: int, processes: int, threads: int, migrate: bool, certfile: str | None,
        keyfile: str | None) -> None:
    """Run the REST + WebSocket API under gunicorn (gevent worker), for a Redis or RabbitMQ broker.

    \b
    Example:
      MESSAGE_BACKEND=redis REDIS_URL=redis://127.0.0.1:6379/0 collab-bus api --port 8000
    """
    settings = _settings(HOST=host, PORT=port)
    if settings.broker_kind == "memory":
        raise ConfigError("`collab-bus api` needs a shared broker (MESSAGE_BACKEND=redis or rabbitmq); "
                          "for a single process use `collab-bus up`")
    if migrate:
        from app.migrate import upgrade

        upgrade(settings)
    from app.broker import upgrade_redis_layout

    upgrade_redis_layout(settings)  # tasks an earlier bus left under the former Redis key names (":")
    tls = _tls(certfile, keyfile)
    _bootstrap_admin_key(settings)
    from app.server import serve

    serve(settings, processes=processes, threads=threads, tls=tls)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--queues", "-Q", default="delivery,lifecycle,maintenance", show_default=True, help="Queues to consume.")
@click.option("--concurrency", "-c", default=4, show_default=True, type=click.IntRange(min=1), help="Worker threads.")
@click.option("--metrics-port", envvar="WORKER_METRICS_PORT", type=int, default=None,
              help="Serve this worker's Prometheus metrics on http://HOST:PORT/metrics (HOST: --metrics-host).")
@click.option("--metrics-host", envvar="WORKER_METRICS_HOST", default=None, show_default="127.0.0.1",
              help="Address --metrics-port listens on (0.0.0.0: every interface).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, concurrency: int, metrics_port: int | None, metrics_host: str | None,
           celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker (a thin wrapper over `celery -A workers.celery_app worker`).

    Extra arguments go to `celery worker` unchanged.

    \b
    Example:
      MESSAGE_BACKEND=redis collab-bus worker -c 8 --hostname w1@%h
    """
    settings = _settings(WORKER_METRICS_HOST=metrics_host)
    keep_single_process()  # one process: its metrics stay in memory
    from celery.bin.celery import celery as celery_command

    import workers.celery_app  # noqa: F401 - loaded here, not by Celery's CLI, so its refusals are one line
    if metrics_port:
        _serve_worker_metrics(settings.worker_metrics_host, metrics_port)

    # Not celery_app.worker_main(): it drops the exit status, and a worker stopped by an unrecoverable error
    # must not exit 0 (a supervisor restarting failed workers would leave it dead).
    status = celery_command.main(["-A", "workers.celery_app:celery_app", "worker", "-Q", queues, "-P", "threads",
                                  "-c", str(concurrency), "-l", settings.log_level, *celery_args],
                                 standalone_mode=False)
    sys.exit(status if isinstance(status, int) else 0)


def _serve_worker_metrics(host: str, port: int) -> None:
    """Serve this worker's registry on http://host:port/metrics from a background thread."""
    from prometheus_client import start_http_server

    from app.metrics import REGISTRY

    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"collab-bus worker: metrics on http://{f'[{host}]' if ':' in host else host}:{port}/metrics")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat (periodic maintenance such as the outbox sweep); run exactly one per deployment."""
    settings = _settings()
    keep_single_process()  # one process: its metrics stay in memory
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from workers.celery_app import celery_app

    celery_app.start(["beat", "-l", settings.log_level, "-s", str(settings.data_dir / "celerybeat-schedule"),
                      *celery_args])


@main.group()
def db() -> None:
    """Database schema migrations (Alembic) on DATABASE_URL."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from app.migrate import upgrade

    upgrade(_settings(), revision)
    click.echo(f"database at {revision}")


@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (`base` drops every table)."""
    from app.migrate import downgrade

    downgrade(_settings(), revision)
    click.echo(f"database at {revision}")


@db.command("current")
def db_current() -> None:
    """Show the database's current revision."""
    from app.migrate import current

    current(_settings())


@main.group()
def keys() -> None:
    """Manage API keys (admin, operator, viewer, registrar). Keys are stored hashed; a secret is shown once."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "operator", "viewer", "registrar"]),
              help="What the key may do (see the README's permission table).")
@click.option("--name", required=True, help="Who or what holds the key (shown in listings and the audit trail).")
@click.option("--workspace", default=None, help="For registrar keys: the one workspace it may register sandboxes in.")
def keys_create(role: str, name: str, workspace: str | None) -> None:
    """Create a key and print its secret (only now: it is not stored)."""
    from app.services import audit, auth

    with _database() as database:
        info, secret = auth.create_key(database, name, role, workspace)
        audit.record_now(database, audit.Actor("cli", "admin"), "key.created", target=f"key:{info['id']}",
                         name=name, role=role, workspace=workspace)
    click.echo(f"created key {info['id']} ({role}{', workspace ' + workspace if workspace else ''}) for {name}:")
    click.echo(secret)


@keys.command("list")
@click.option("--active", is_flag=True, help="Hide revoked keys.")
def keys_list(active: bool) -> None:
    """List keys: id, role, workspace, name, prefix, created, last used, revoked."""
    from app.services import auth

    with _database() as database:
        rows = auth.list_keys(database, include_revoked=not active)
    click.echo(f"{'id':>4}  {'role':<9}  {'workspace':<12}  {'prefix':<12}  {'created':<20}  {'last used':<20}  "
               f"{'revoked':<20}  name")
    for key in rows:
        click.echo(f"{key['id']:>4}  {key['role']:<9}  {key['workspace'] or '-':<12}  {key['prefix']:<12}  "
                   f"{_short(key['created_at']):<20}  {_short(key['last_used_at']):<20}  "
                   f"{_short(key['revoked_at']):<20}  {key['name']}")


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke KEY (its id, name or secret prefix): it stops working at once."""
    from app.errors import BusError
    from app.services import audit, auth

    with _database() as database:
        try:
            info = auth.revoke_key(database, key)
        except BusError as exc:
            raise click.ClickException(exc.message) from None
        audit.record_now(database, audit.Actor("cli", "admin"), "key.revoked", target=f"key:{info['id']}",
                         name=info["name"], role=info["role"])
    click.echo(f"revoked key {info['id']} ({info['role']}) of {info['name']}")


def _short(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else "-"


class _database:
    """The configured database, migrated, as a context manager (for the management commands)."""

    def __enter__(self):
        from app.db import Database
        from app.migrate import upgrade

        settings = _settings()
        upgrade(settings)
        self.database = Database(settings.database_url)
        return self.database

    def __exit__(self, *exc_info) -> None:
        self.database.dispose()


from app import cli_ops  # noqa: E402,F401  (registers the operator commands)

if __name__ == "__main__":
    # `python -m app.cli` runs this file as __main__, a module apart from `app.cli`, the one cli_ops registers
    # its commands on: run that one's group, so every command is there.
    from app.cli import main as registered_main

    registered_main()
