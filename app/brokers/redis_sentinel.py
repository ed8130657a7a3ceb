"""Redis behind Sentinel (Kombu's `sentinel://` transport): the Redis kind, with the master found through the
sentinels each time a connection is made, so that the bus follows a failover.

URL: Celery's form, one `sentinel://host:port` per sentinel joined by `;` (`sentinel://:pw@h1:26379/0;…` for a
master with a password and database 0), with REDIS_SENTINEL_MASTER naming the monitored master and
REDIS_SENTINEL_PASSWORD the sentinels' own password, if they have one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from app.brokers.base import masked_url
from app.brokers.redis import RedisBroker

if TYPE_CHECKING:
    from redis import Redis

    from app.config import Settings

SENTINEL_PORT = 26379  # Sentinel's own port, when a URL names none
_fence = None  # this process's SwitchFence, once a worker or beat was prepared


class RedisSentinelBroker(RedisBroker):
    """Redis whose master the sentinels name: Celery, the fanout between API nodes, the queue report and the event
    log all reach the master through them, and reconnect to the new master after a failover."""

    name = "redis-sentinel"
    schemes = ("sentinel",)
    url_setting = "REDIS_URL"
    selectable = False  # MESSAGE_BACKEND=redis with a sentinel:// REDIS_URL selects it

    @classmethod
    def implied_url(cls, settings: Settings) -> str:
        """REDIS_URL."""
        return settings.redis_url

    def describe(self) -> str:
        """`redis-sentinel (master <name>)`."""
        return f"{self.name} (master {self.settings.redis_sentinel_master})"

    def transport_options(self) -> dict:
        """The Redis kind's, with the master's name and the sentinels' password (Kombu's `master_name` and
        `sentinel_kwargs`)."""
        options = {**super().transport_options(), "master_name": self.settings.redis_sentinel_master}
        if self.settings.redis_sentinel_password:
            options["sentinel_kwargs"] = {"password": self.settings.redis_sentinel_password}
        return options

    def prepare_worker(self) -> None:
        """The Redis kind's preparation, and a thread that fences a former master as soon as the sentinels switch
        (app/brokers/sentinel_fence.py), so no process of the bus stays on it after a manual failover."""
        super().prepare_worker()
        global _fence
        if _fence is None:
            from app.brokers.sentinel_fence import SwitchFence

            _fence = SwitchFence(self.sentinels(), self.settings.redis_sentinel_master, self._sentinel_credentials(),
                                 self._master_credentials())
            _fence.start()

    def sentinels(self) -> list[tuple[str, int]]:
        """(host, port) of each sentinel the URL names, in its order."""
        return [(part.hostname or "127.0.0.1", part.port or SENTINEL_PORT) for part in self._parts()]

    def shown_url(self) -> str:
        """The URL with every password masked, sentinel by sentinel."""
        return ";".join(masked_url(url) for url in self.url.split(";"))

    def _client(self, timeout: float) -> Redis:
        """A client of the current master: it asks the sentinels again whenever it (re)connects, and drops its
        connections when the server it reached is no longer the master (redis-py's SentinelConnectionPool)."""
        from redis.sentinel import Sentinel

        timeouts = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
        sentinel = Sentinel(self.sentinels(), sentinel_kwargs={**timeouts, **self._sentinel_credentials()},
                            db=_database(self._parts()[0].path), **timeouts, **self._master_credentials())
        return sentinel.master_for(self.settings.redis_sentinel_master)

    def _parts(self):
        return [urlsplit(url) for url in self.url.split(";") if url.strip()]

    def _master_credentials(self) -> dict:
        """The master's user name and password: those of the URL's first entry (Kombu reads them there too)."""
        first = self._parts()[0]
        return {"username": unquote(first.username) if first.username else None,
                "password": unquote(first.password) if first.password else None}

    def _sentinel_credentials(self) -> dict:
        """The sentinels' password (REDIS_SENTINEL_PASSWORD), if they have one."""
        password = self.settings.redis_sentinel_password
        return {"password": password} if password else {}


def _database(path: str) -> int:
    """The database number of a URL path (`/3` -> 3; none -> 0)."""
    number = path.strip("/")
    return int(number) if number.isdigit() else 0

