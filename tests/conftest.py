"""Shared fixtures: real redis-server and rabbitmq-server, the bus as real processes, a migrated SQLite database."""

from __future__ import annotations

import uuid

import pytest

from app.config import Settings
from app.db import Database
from app.migrate import upgrade
from tests.servers import BusProcess, RabbitMQServer, RedisServer, bus_client


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    server = RedisServer()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def rabbitmq_server():
    """A real rabbitmq-server node (and its epmd) on free loopback ports for the whole session."""
    server = RabbitMQServer()
    yield server
    server.cleanup()


@pytest.fixture(scope="session", params=["embedded", "redis", "rabbitmq"])
def bus(request):
    """The bus as real processes: `embedded` (collab-bus up), and collab-bus api + worker on `redis` (redis-server)
    and on `rabbitmq` (rabbitmq-server, a virtual host of its own)."""
    if request.param == "redis":
        process = BusProcess("redis", redis_url=request.getfixturevalue("redis_server").url)
    elif request.param == "rabbitmq":
        process = BusProcess("rabbitmq", rabbitmq=request.getfixturevalue("rabbitmq_server"))
    else:
        process = BusProcess(request.param)
    yield process
    process.cleanup()


@pytest.fixture
def client(bus):
    """An HTTP client for the bus under test."""
    with bus_client(bus.url, timeout=10) as http:
        yield http


@pytest.fixture
def unique():
    """A function making ids unique to this test, so tests sharing one bus never collide."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


@pytest.fixture
def db(tmp_path):
    """A migrated SQLite database in a temporary directory, for plain calls into app.services."""
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    upgrade(settings)
    database = Database(settings.database_url)
    yield database
    database.dispose()
