"""Settings from the environment, the `collab-bus` command line, and the Alembic migration chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.config import ConfigError, Settings
from app.migrate import downgrade, upgrade

CLI = str(Path(sys.executable).parent / "collab-bus")


def test_defaults_follow_the_architecture_document():
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///data/collab-bus.db"
    assert settings.message_backend == "memory" and settings.broker.name == "memory"
    assert (settings.host, settings.port, settings.max_content_bytes) == ("127.0.0.1", 8000, 256 * 1024)


def test_socket_settings_default_to_pings_every_25s_and_a_short_auth_grace():
    settings = Settings.from_env({})
    assert (settings.ws_ping_interval, settings.auth_frame_timeout) == (25.0, 3.0)
    assert settings.max_unauthenticated_sockets_per_address == 10
    assert Settings.from_env({"WS_PING_INTERVAL": "0"}).ws_ping_interval == 0  # no pings


def test_data_dir_moves_the_default_database():
    assert Settings.from_env({"DATA_DIR": "/tmp/bus"}).database_url == "sqlite:////tmp/bus/collab-bus.db"


def test_broker_url_comes_from_backend_unless_overridden():
    redis = Settings.from_env({"MESSAGE_BACKEND": "redis", "REDIS_URL": "redis://h:1/2"})
    assert redis.broker_url == "redis://h:1/2" and redis.broker.name == "redis"
    rabbit = Settings.from_env({"MESSAGE_BACKEND": "rabbitmq"})
    assert rabbit.broker.name == "rabbitmq"
    override = Settings.from_env({"MESSAGE_BACKEND": "redis", "BROKER_URL": "amqp://x//"})
    assert override.broker_url == "amqp://x//" and override.broker.name == "rabbitmq"
    nats = Settings.from_env({"MESSAGE_BACKEND": "nats", "NATS_URL": "nats://u:pw@n1:4222, nats://n2:4222",
                              "NATS_REPLICAS": "3", "NATS_PREFIX": "b1"})
    assert nats.broker.name == "nats" and nats.broker.servers() == ["nats://u:pw@n1:4222", "nats://n2:4222"]
    assert nats.broker.shown_url() == "nats://u:***@n1:4222,nats://n2:4222"
    celery = nats.broker.celery_settings()
    assert celery["broker_url"] == "nats://u:pw@n1:4222"
    assert {key: celery["broker_transport_options"][key] for key in ("servers", "prefix", "replicas")} == {
        "servers": ["nats://u:pw@n1:4222", "nats://n2:4222"], "prefix": "b1", "replicas": 3}


@pytest.mark.parametrize("env, mentions", [
    ({"MESSAGE_BACKEND": "kafka"}, "MESSAGE_BACKEND"),
    ({"MESSAGE_BACKEND": "nats", "NATS_URL": "http://n1:4222"}, "NATS_URL"),
    ({"MESSAGE_BACKEND": "nats", "NATS_REPLICAS": "0"}, "NATS_REPLICAS"),
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ({"EDITION": "gold"}, "EDITION"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"MAX_CONTENT_BYTES": "0"}, "MAX_CONTENT_BYTES"),
    ({"BROKER_URL": "localhost"}, "BROKER_URL"),
    ({"IDEMPOTENCY_WINDOW": "0"}, "IDEMPOTENCY_WINDOW"),
    ({"IDEMPOTENCY_WINDOW": "1d"}, "IDEMPOTENCY_WINDOW"),
    ({"BROKER_URL": "kafka://broker:9092"}, "BROKER_URL"),  # was taken for the in-memory broker
    ({"MESSAGE_BACKEND": "redis", "REDIS_URL": "http://cache:6379"}, "REDIS_URL"),
    ({"ADMIN_API_KEY": "short-key"}, "ADMIN_API_KEY"),
    ({"ADMIN_API_KEY": "a key with spaces in it 0123456789"}, "ADMIN_API_KEY"),
    ({"ADMIN_API_KEY": "clé-secrète-0123456789abcdefghij"}, "ADMIN_API_KEY"),
    ({"ADMIN_API_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}, "ADMIN_API_KEY"),  # a JWT
    ({"JWT_LEEWAY": "-1"}, "JWT_LEEWAY"),
    ({"TRUSTED_PROXIES": "many"}, "TRUSTED_PROXIES"),
    ({"TRUSTED_PROXIES": "50"}, "TRUSTED_PROXIES"),
    ({"HEARTBEAT_TIMEOUT": "nan"}, "HEARTBEAT_TIMEOUT"),
    ({"DELIVERY_MAX_RETRIES": "many"}, "DELIVERY_MAX_RETRIES"),
    ({"CELERY_PREFETCH_MULTIPLIER": "0"}, "CELERY_PREFETCH_MULTIPLIER"),
    ({"CELERY_TASK_EVENTS": "sometimes"}, "CELERY_TASK_EVENTS"),
    ({"OUTBOX_SWEEP_INTERVAL": "15s"}, "OUTBOX_SWEEP_INTERVAL"),
    ({"REDELIVERY_SWEEP_INTERVAL": "0"}, "REDELIVERY_SWEEP_INTERVAL"),
    ({"WS_PING_INTERVAL": "-1"}, "WS_PING_INTERVAL must be zero or more"),
    ({"AUTH_FRAME_TIMEOUT": "0"}, "AUTH_FRAME_TIMEOUT must be positive"),
    ({"MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS": "0"}, "MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS"),
])
def test_bad_configuration_is_one_clear_error(env, mentions):
    with pytest.raises(ConfigError, match=mentions):
        Settings.from_env(env)


def test_the_api_server_keeps_idle_connections_for_http_keepalive_timeout():
    from app.server import _Gunicorn

    assert _Gunicorn(Settings.from_env({}), 1, 1, None).cfg.keepalive == 75  # above httpx's 5 s pool expiry
    assert _Gunicorn(Settings.from_env({"HTTP_KEEPALIVE_TIMEOUT": "120"}), 1, 1, None).cfg.keepalive == 120
    for bad in ("-1", "long"):
        with pytest.raises(ConfigError, match="HTTP_KEEPALIVE_TIMEOUT"):
            Settings.from_env({"HTTP_KEEPALIVE_TIMEOUT": bad})


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_bad_configuration_prints_one_line_and_exits_2(tmp_path):
    result = run_cli("up", "--data-dir", str(tmp_path), env={"MESSAGE_BACKEND": "kafka"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "collab-bus: configuration error: MESSAGE_BACKEND must be one of memory, redis, rabbitmq, nats; got 'kafka'"]


@pytest.mark.parametrize("command", [["worker"], ["beat"]])
def test_celery_settings_are_checked_like_every_other(command, tmp_path):
    """celeryconfig reads its knobs through Settings: a bad value is the one-line error, not a traceback."""
    result = run_cli(*command, env={"DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "redis",
                                    "CELERY_PREFETCH_MULTIPLIER": "four"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "collab-bus: configuration error: CELERY_PREFETCH_MULTIPLIER must be an integer, got 'four'"]


def test_celery_conf_holds_settings_only():
    """celeryconfig's imports and private names are not Celery settings (`celery inspect conf` lists the rest)."""
    from app.broker import make_celery

    table = make_celery(Settings.from_env({})).conf.table(with_defaults=False)
    assert not {"os", "Exchange", "Queue", "Settings"} & set(table)
    assert table["task_annotations"] == {"workers.delivery.deliver": {"max_retries": 20},
                                         "workers.delivery.deliver_batch": {"max_retries": 20}}


def test_cli_api_refuses_the_in_memory_broker():
    result = run_cli("api", "--no-migrate", env={"MESSAGE_BACKEND": "memory"})
    assert result.returncode == 2 and "collab-bus up" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [[], ["up"], ["api"], ["worker"], ["beat"], ["db"], ["db", "upgrade"]])
def test_every_command_explains_itself(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0 and "Usage: collab-bus" in result.stdout
    assert len(result.stdout.splitlines()) > 4


def test_db_commands_walk_the_migration_chain(tmp_path):
    env = {"DATA_DIR": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    current = run_cli("db", "current", env=env)
    assert "(head)" in current.stdout, current.stdout + current.stderr
    assert run_cli("db", "downgrade", "base", env=env).returncode == 0
    tables = inspect(create_engine(f"sqlite:///{tmp_path / 'collab-bus.db'}")).get_table_names()
    assert tables == ["alembic_version"]


def test_migration_creates_every_table_in_wal_mode(tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path / "nested")})
    upgrade(settings)
    from app.db import Database

    database = Database(settings.database_url)
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    names = set(inspect(database.engine).get_table_names())
    assert {"sandboxes", "messages", "mailbox_entries", "dead_letters"} <= names
    downgrade(settings, "base")
    upgrade(settings)
    database.dispose()


def test_python_dash_m_runs_every_command(tmp_path):
    """`python -m app.cli` has the same commands as `collab-bus`: keys and the operator commands included."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "ADMIN_API_KEY": ""}
    help_text = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True,
                               env=env, timeout=60).stdout
    for command in ("keys", "send", "tail", "sandboxes", "dlq", "status"):
        assert f"  {command} " in help_text, help_text
    migrated = subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], capture_output=True, text=True,
                              env=env, timeout=60)
    assert migrated.returncode == 0, migrated.stderr  # `keys` opens an existing database only, never creates one
    created = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--role", "viewer", "--name", "ci"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    listed = subprocess.run([sys.executable, "-m", "app.cli", "keys", "list"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert listed.returncode == 0 and " viewer " in listed.stdout and listed.stdout.rstrip().endswith("ci")


@pytest.mark.parametrize("args, env, says", [
    (["up"], {"DATA_DIR": "/proc/no-such-dir"}, "collab-bus: error: No such file or directory (/proc/no-such-dir)"),
    (["up", "--worker-threads", "0"], {}, "'--worker-threads': 0 is not in the range x>=1"),
    (["api", "--no-migrate"], {"MESSAGE_BACKEND": "redis", "API_WORKERS": "0"}, "'--workers': 0 is not in the range"),
    (["worker", "-c", "0"], {"MESSAGE_BACKEND": "redis"}, "'--concurrency' / '-c': 0 is not in the range"),
])
def test_values_that_cannot_work_are_refused_at_start_in_one_line(args, env, says, tmp_path):
    result = run_cli(*args, env={"DATA_DIR": str(tmp_path), **env})
    assert result.returncode in (1, 2) and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_tls_pair_that_does_not_load_is_refused_at_start(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = run_cli("up", "--data-dir", str(tmp_path), "--certfile", str(junk), "--keyfile", str(junk))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"collab-bus: configuration error: TLS certificate {junk} and key {junk} do not load")
