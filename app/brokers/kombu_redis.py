"""A workaround for kombu's Redis transport, and the check that it still fits the installed kombu; and one
saving on its publish path.

The workaround replaces a private method (`kombu.transport.redis.Channel.close`) and relies on two other private
details (`Channel._brpop_read`, the `Channel._in_poll` flag). It was checked on the kombu releases in
`KOMBU_CHECKED`, which pyproject.toml pins; on any other release, or when those methods are not the ones checked,
the worker refuses to start with one line instead of running with a patch that may no longer do what it says.

The saving (`reuse_redis_clients`) replaces `Channel.conn_or_acquire`, which built a redis-py client for every
publish. It is applied only on a checked kombu whose methods are the ones checked; elsewhere kombu is left as it
is (slower, never wrong), so it never stops a process from starting.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import textwrap
from contextlib import contextmanager

from app.config_fields import ConfigError

# The kombu releases the workaround was checked on; pyproject.toml pins `kombu[redis]` to the same range.
KOMBU_CHECKED = ">=5.7.0,<5.8"

# sha256 of the (dedented) source of each private method the workaround relies on, as kombu 5.7.0 ships it.
# After checking the workaround against a new kombu, add that release's digests here and widen KOMBU_CHECKED.
CHECKED_SOURCES = {
    "close": {"8b98e8d4dc50ba001745ade1ee3935b4c6c072f6392dcf768a4fbeba60669a0b"},
    "_brpop_read": {"f073dbcb18d71759b81a2ddefaeb09111dc3d9c02a85cba70499432f3d6449c4"},
}
# The same for the methods `reuse_redis_clients` replaces (conn_or_acquire) and relies on (_create_client).
REUSE_CHECKED_SOURCES = {
    "conn_or_acquire": {"01ab44dd770603a6dc5f20cd7d893fb4faec3346299b37c75a5bb1fb3c29ba57"},
    "_create_client": {"376ef74d24a416599d9e95a8e4c83f43dcefcd3154710d354d12ae11414628b9"},
}
_SHARED_CLIENT = "_collab_bus_client"  # the channel attribute holding the client conn_or_acquire hands out

_ADVICE = ("install the locked versions (requirements/runtime.txt) or re-check the workaround in "
           "app/brokers/kombu_redis.py")


class KombuMismatch(ConfigError):
    """The installed kombu is not one the Redis-transport workaround was checked on (a one-line refusal)."""


def source_digest(function) -> str | None:
    """sha256 of `function`'s dedented source, or None when Python cannot read its source."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(textwrap.dedent(source).encode()).hexdigest()


def check_kombu_redis(version: str, channel: type) -> None:
    """Raise KombuMismatch unless kombu `version` is in KOMBU_CHECKED and `channel` (kombu's Redis Channel) has
    the `_in_poll` flag and the `close` and `_brpop_read` methods, source for source, that the workaround was
    checked on."""
    from packaging.specifiers import SpecifierSet  # kombu's Redis transport depends on packaging itself

    if not SpecifierSet(KOMBU_CHECKED).contains(version, prereleases=True):
        raise KombuMismatch(f"kombu {version} is not a release the Redis-transport workaround was checked on "
                            f"(kombu{KOMBU_CHECKED}): {_ADVICE}")
    if not hasattr(channel, "_in_poll"):
        raise KombuMismatch(f"kombu {version}'s Redis Channel has no _in_poll flag: {_ADVICE}")
    for name, digests in CHECKED_SOURCES.items():
        if source_digest(getattr(channel, name, None)) not in digests:
            raise KombuMismatch(f"kombu {version}'s Redis Channel.{name} is not the one the Redis-transport "
                                f"workaround was checked on: {_ADVICE}")


def close_redis_channels_when_the_broker_is_gone() -> None:
    """Work around a kombu (5.7.0) Redis-transport bug that stops a worker when Redis goes away under load.

    On a lost connection Celery first `collect()`s the broker connection, which closes the channel; if a BRPOP
    is pending, `Channel.close()` reads its reply first and, the broker being gone, raises before closing
    anything (it only expects `Empty` there). `collect()` ignores that and drops the transport's client; the
    second close, from `connection.close()`, then restores the unacknowledged messages through a client it can no
    longer build and raises AttributeError ('NoneType' object has no attribute 'hostname'), which Celery treats
    as unrecoverable: the worker shuts down. Reading the pending reply here, and ignoring connection errors as it
    does `Empty`, lets the first close finish. Messages it cannot restore stay in Redis' unacked set and come
    back after the visibility timeout; the outbox sweep covers what was never routed.

    Raises KombuMismatch (before patching anything) when the installed kombu is not one this was checked on.
    """
    import kombu
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if getattr(channel.close, "_collab_bus_patched", False):
        return
    check_kombu_redis(kombu.__version__, channel)
    original = channel.close

    @functools.wraps(original)  # __wrapped__: the checked original, which inspect.getsource reads
    def close(self):
        if self._in_poll:
            try:
                self._brpop_read()
            except kombu_redis.Empty:
                pass
            except self.connection_errors:
                pass  # the broker is gone: there is no reply to read (_brpop_read reset _in_poll)
        original(self)

    close._collab_bus_patched = True
    channel.close = close


def reuse_redis_clients() -> None:
    """Make kombu's Redis channels (Sentinel's too) run their commands through one redis-py client per channel
    and connection pool, built on first use, instead of a new client for every publish, queue bind or purge
    (kombu's `conn_or_acquire`: each client copies redis-py's response callbacks into a case-insensitive dict,
    about 2% of the API's and the workers' CPU per message).

    Nothing else changes: the per-call clients were all built on the channel's one pool (`Channel.pool`) and
    kept no state of their own (no single connection; closing one was a no-op), and a redis-py client without
    a single connection is safe to share between threads (and greenlets): every command takes a connection
    from the pool and gives it back. When the channel drops its pool (closed, after a fork) the next call builds
    a client on the new one. A client the caller passes is used as before.

    Idempotent. On a kombu outside KOMBU_CHECKED, or whose `conn_or_acquire` or `_create_client` is not the one
    checked, kombu is left as it is.
    """
    import kombu
    from kombu.transport import redis as kombu_redis
    from packaging.specifiers import SpecifierSet

    channel = kombu_redis.Channel
    original = channel.conn_or_acquire
    if getattr(original, "_collab_bus_patched", False):
        return
    if not SpecifierSet(KOMBU_CHECKED).contains(kombu.__version__, prereleases=True) or any(
            source_digest(getattr(channel, name, None)) not in digests
            for name, digests in REUSE_CHECKED_SOURCES.items()):
        return

    @functools.wraps(original)  # __wrapped__: the checked original, which inspect.getsource reads
    @contextmanager
    def conn_or_acquire(self, client=None):
        yield client or _shared_client(self)

    conn_or_acquire._collab_bus_patched = True
    channel.conn_or_acquire = conn_or_acquire


def _shared_client(channel):
    """The client `channel` hands out: the one built on its current pool, else a new one (kept). Two callers that
    race here both get a working client on that pool; one of them is kept."""
    pool = channel.pool
    client = channel.__dict__.get(_SHARED_CLIENT)
    if client is None or client.connection_pool is not pool:
        client = channel._create_client()
        setattr(channel, _SHARED_CLIENT, client)
    return client
