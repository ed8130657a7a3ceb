"""A workaround for kombu's Redis transport, and the check that it still fits the installed kombu.

The workaround replaces a private method (`kombu.transport.redis.Channel.close`) and relies on two other private
details (`Channel._brpop_read`, the `Channel._in_poll` flag). It was checked on the kombu releases in
`KOMBU_CHECKED`, which pyproject.toml pins; on any other release, or when those methods are not the ones checked,
the worker refuses to start with one line instead of running with a patch that may no longer do what it says.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import textwrap

from app.config_fields import ConfigError

# The kombu releases the workaround was checked on; pyproject.toml pins `kombu[redis]` to the same range.
KOMBU_CHECKED = ">=5.7.0,<5.8"

# sha256 of the (dedented) source of each private method the workaround relies on, as kombu 5.7.0 ships it.
# After checking the workaround against a new kombu, add that release's digests here and widen KOMBU_CHECKED.
CHECKED_SOURCES = {
    "close": {"8b98e8d4dc50ba001745ade1ee3935b4c6c072f6392dcf768a4fbeba60669a0b"},
    "_brpop_read": {"f073dbcb18d71759b81a2ddefaeb09111dc3d9c02a85cba70499432f3d6449c4"},
}

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
