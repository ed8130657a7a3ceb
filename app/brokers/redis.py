"""Redis (Kombu's Redis transport): a reversed priority scale kept as one list per priority step, the visibility
timeout that gives a dead worker's tasks to another, and the key layout of earlier versions to upgrade."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.brokers.base import BUS_QUEUES, PROTOCOL_MAX_PRIORITY, Broker

if TYPE_CHECKING:
    from kombu import Connection

    from app.brokers.redis_events import RedisEventLog
    from app.config import Settings


class RedisBroker(Broker):
    """Redis, with Kombu's default key separator, so that Celery tools started with the broker URL alone (Flower,
    `celery inspect`, `celery events`) name and parse the keys as the bus does (app/redis_layout.py)."""

    name = "redis"
    schemes = ("redis", "rediss", "redis+socket")
    url_setting = "REDIS_URL"

    @classmethod
    def implied_url(cls, settings: Settings) -> str:
        """REDIS_URL."""
        return settings.redis_url

    def priority(self, priority: int) -> int:
        """Celery on Redis pops priority 0 first: the protocol's scale reversed (9, the highest, becomes 0)."""
        return PROTOCOL_MAX_PRIORITY - super().priority(priority)

    def transport_options(self) -> dict:
        """The reconnection waits, one list per priority step, and REDIS_VISIBILITY_TIMEOUT with its restore period
        (`_restore_options`)."""
        return {**super().transport_options(), "priority_steps": list(range(PROTOCOL_MAX_PRIORITY + 1)),
                "queue_order_strategy": "priority", **_restore_options(self.settings.redis_visibility_timeout)}

    def celery_settings(self) -> dict:
        """The base settings; first makes kombu's Redis channels reuse their redis-py client (`reuse_redis_clients`
        in app/brokers/kombu_redis.py), so this process's Celery publishes do not build one per task."""
        from app.brokers.kombu_redis import reuse_redis_clients

        reuse_redis_clients()
        return super().celery_settings()

    def connection(self, **options) -> Connection:
        """A new Kombu connection (the base one); first makes kombu's Redis channels reuse their redis-py client
        (`reuse_redis_clients`), so the fanout's publishes do not build one per notification."""
        from app.brokers.kombu_redis import reuse_redis_clients

        reuse_redis_clients()
        return super().connection(**options)

    def queue_report(self, timeout: float = 2.0) -> dict:
        """`{"queues": {queue: {"messages", "by_priority_step"}}, "unacked": n}`: Kombu keeps priority step N of
        queue Q in the list `Q\\x06\\x16N` (step 0 is plain `Q`; `redis_layout.queue_key`), and tasks taken but not
        acknowledged in `unacked`."""
        from app.redis_layout import queue_key

        steps, prefix = self._layout()
        client = self._client(timeout)
        try:
            depths = {}
            for queue in BUS_QUEUES:
                keys = [queue_key(queue, step, prefix) for step in steps]
                with client.pipeline() as pipe:
                    for key in keys:
                        pipe.llen(key)
                    sizes = pipe.execute()
                depths[queue] = {"messages": sum(sizes),
                                 "by_priority_step": {str(step): n for step, n in zip(steps, sizes, strict=True) if n}}
            return {"queues": depths, "unacked": client.hlen(prefix + "unacked")}
        finally:
            client.close()

    def event_log(self) -> RedisEventLog:
        """One Redis stream every node shares, `<key prefix><FANOUT_EXCHANGE>.events` in the broker's database,
        bounded to about the last 10,000 events: an events socket resumes on any API node, and after a restart."""
        from app.brokers.redis_events import RedisEventLog

        prefix = self._layout()[1]
        return RedisEventLog(lambda: self._client(2.0), f"{prefix}{self.settings.fanout_exchange}.events")

    def prepare_worker(self) -> None:
        """Apply the workaround for kombu's Redis transport (app/brokers/kombu_redis.py); KombuMismatch (one line) on a
        kombu it was not checked on."""
        from app.brokers.kombu_redis import close_redis_channels_when_the_broker_is_gone

        close_redis_channels_when_the_broker_is_gone()

    def upgrade(self, timeout: float = 5.0) -> str:
        """Bring the keys an earlier bus left in Redis (":" separator) to Kombu's layout: tasks still waiting under
        `delivery:3` etc. move to their current lists, binding members are rewritten; return what changed (one
        line). Unavailable (one line) when Redis cannot be reached."""
        from redis.exceptions import RedisError

        from app.errors import Unavailable
        from app.redis_layout import upgrade_former_layout

        steps, prefix = self._layout()
        try:
            client = self._client(timeout)
            try:
                return upgrade_former_layout(client, BUS_QUEUES, steps, prefix).summary()
            finally:
                client.close()
        except RedisError as exc:
            raise Unavailable(f"cannot upgrade the Redis key layout (the broker of REDIS_URL or BROKER_URL): {exc}",
                              code="broker_unavailable") from None

    def _layout(self) -> tuple[list[int], str]:
        """The priority steps and the key prefix the transport options give."""
        options = self.transport_options()
        return options["priority_steps"], options.get("global_keyprefix", "")

    def _client(self, timeout: float):
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=timeout, socket_timeout=timeout)


def _restore_options(visibility_timeout: float) -> dict:
    """Kombu's Redis transport puts a task taken but never acknowledged (its worker died) back on its queue once
    it is `visibility_timeout` seconds old. It looks for such tasks every `unacked_restore_interval` x
    `unacked_restore_throttle` seconds (10 x 10 by default): keep that near a quarter of the timeout (at most
    the default), so the task of a killed worker runs again within about 1.25 x the timeout."""
    period = min(100.0, max(1.0, visibility_timeout / 4))
    interval = min(10.0, period)
    return {"visibility_timeout": visibility_timeout, "unacked_restore_interval": interval,
            "unacked_restore_throttle": max(1, round(period / interval))}
