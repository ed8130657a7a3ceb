"""The guard of the kombu Redis-transport workaround (app/brokers/kombu_redis.py).

The workaround replaces a private kombu method; on a kombu release it was not checked on, or one whose patched
methods changed, the bus must refuse to start with one line rather than run a patch that may no longer fit.
These are unit-level checks of the guard: the refusal comes before any broker connection (none is needed).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import kombu
import pytest
from kombu.transport import redis as kombu_redis
from packaging.requirements import Requirement

from app.brokers.kombu_redis import (
    KOMBU_CHECKED,
    REUSE_CHECKED_SOURCES,
    KombuMismatch,
    check_kombu_redis,
    reuse_redis_clients,
    source_digest,
)

ROOT = Path(__file__).resolve().parent.parent
# What kombu ships, whether or not this process has applied the workaround already.
PRISTINE_CLOSE = inspect.unwrap(kombu_redis.Channel.close)


def test_the_installed_kombu_is_one_the_workaround_was_checked_on():
    check_kombu_redis(kombu.__version__, kombu_redis.Channel)


def test_pyproject_pins_kombu_to_the_checked_releases():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (kombu_requirement,) = [Requirement(d) for d in dependencies if Requirement(d).name == "kombu"]
    assert kombu_requirement.specifier == Requirement(f"kombu{KOMBU_CHECKED}").specifier
    assert "redis" in kombu_requirement.extras


@pytest.mark.parametrize("version", ["5.6.3", "5.8.0", "6.0.0", "5.8.0rc1"])
def test_a_kombu_release_outside_the_checked_range_is_refused(version):
    refusal = rf"^kombu {version} is not a release .*checked on \(kombu{KOMBU_CHECKED}\)"
    with pytest.raises(KombuMismatch, match=refusal):
        check_kombu_redis(version, kombu_redis.Channel)


def test_a_changed_close_is_refused():
    class Altered(kombu_redis.Channel):
        def close(self):  # kombu fixed or rewrote it: the workaround must be checked again
            PRISTINE_CLOSE(self)

    with pytest.raises(KombuMismatch, match=r"Redis Channel\.close is not the one"):
        check_kombu_redis(kombu.__version__, Altered)


def test_a_changed_brpop_read_is_refused():
    class Altered(kombu_redis.Channel):
        close = PRISTINE_CLOSE

        def _brpop_read(self, **options):
            return False

    with pytest.raises(KombuMismatch, match=r"Redis Channel\._brpop_read is not the one"):
        check_kombu_redis(kombu.__version__, Altered)


def test_a_channel_without_the_in_poll_flag_is_refused():
    class NoFlag:
        close = PRISTINE_CLOSE
        _brpop_read = kombu_redis.Channel._brpop_read

    with pytest.raises(KombuMismatch, match=r"has no _in_poll flag"):
        check_kombu_redis(kombu.__version__, NoFlag)


# Run `collab-bus ARGS` in a fresh interpreter after ALTERATION changed the imported kombu.
ALTERED_CLI = """
import sys
import kombu
import kombu.transport.redis as kombu_redis
{alteration}
from app.cli import main
sys.argv = ["collab-bus", *sys.argv[1:]]
main()
"""

ALTERATIONS = {
    "close_replaced": "def close(self):\n    pass\nkombu_redis.Channel.close = close",
    "newer_kombu": "kombu.__version__ = '5.8.0'",
}


@pytest.mark.parametrize("command", ["worker", "beat"])
@pytest.mark.parametrize("alteration", sorted(ALTERATIONS))
def test_collab_bus_refuses_to_start_in_one_line(tmp_path, alteration, command):
    """A worker (or beat) on Redis with an altered kombu exits 2 with one `collab-bus: ...` line, before it
    connects anywhere (the Redis URL points at a port nothing listens on)."""
    env = {**os.environ, "MESSAGE_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:9/0",
           "DATA_DIR": str(tmp_path), "LOG_LEVEL": "INFO"}
    code = ALTERED_CLI.format(alteration=ALTERATIONS[alteration])
    try:
        done = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"collab-bus {command} started on an altered kombu instead of refusing:\n{exc.stderr!r}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("collab-bus: "), done.stderr
    assert "kombu" in lines[0] and "app/brokers/kombu_redis.py" in lines[0]


def test_collab_bus_worker_applies_the_workaround_on_the_checked_kombu(tmp_path):
    """On the locked kombu the same start-up path patches Channel.close (and the check passes)."""
    code = ("import os, kombu.transport.redis as r; os.environ['MESSAGE_BACKEND'] = 'redis'\n"
            "import workers.celery_app\n"
            "assert r.Channel.close._collab_bus_patched\n")
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0", "DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------- reuse_redis_clients (a saving only)

def test_reused_clients_serve_every_call_of_a_channel_until_its_pool_changes(redis_server):
    """Once applied, a channel hands out one client built on its pool (not one per publish); a message still goes
    through Redis and back; a client the caller passes is used as is; a channel that dropped its pool (closed,
    forked) gets a client on the new pool."""
    import uuid

    import redis

    reuse_redis_clients()
    assert kombu_redis.Channel.conn_or_acquire._collab_bus_patched
    with kombu.Connection(redis_server.url) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        given = redis.Redis(connection_pool=channel.pool)
        with channel.conn_or_acquire(given) as client:
            assert client is given
        queue = conn.SimpleQueue(f"reuse-{uuid.uuid4().hex}")
        try:
            queue.put({"n": 1})
            received = queue.get(timeout=5)
            assert received.payload == {"n": 1}
            received.ack()
        finally:
            queue.queue.delete()
            queue.close()
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool


def test_the_reuse_keeps_the_checked_sources_readable():
    """Applied (twice: idempotent), the patched conn_or_acquire still reads as kombu's original, so the digests
    stay comparable in this process."""
    reuse_redis_clients()
    reuse_redis_clients()
    for name, digests in REUSE_CHECKED_SOURCES.items():
        assert source_digest(getattr(kombu_redis.Channel, name)) in digests


REUSE_ALTERATIONS = {
    "newer_kombu": "kombu.__version__ = '5.8.0'",
    "create_client_replaced": "kombu_redis.Channel._create_client = lambda self, asynchronous=False: None",
}


@pytest.mark.parametrize("alteration", sorted(REUSE_ALTERATIONS))
def test_the_reuse_leaves_an_unchecked_kombu_alone(alteration):
    """On a kombu it was not checked on, reuse_redis_clients changes nothing (and raises nothing)."""
    code = ("import kombu, kombu.transport.redis as kombu_redis\n"
            f"{REUSE_ALTERATIONS[alteration]}\n"
            "original = kombu_redis.Channel.conn_or_acquire\n"
            "from app.brokers.kombu_redis import reuse_redis_clients\n"
            "reuse_redis_clients()\n"
            "assert kombu_redis.Channel.conn_or_acquire is original\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
