"""Fencing a former Redis master as soon as the sentinels have switched to a new one.

After a manual `SENTINEL FAILOVER` (and whenever a master the sentinels gave up on is still reachable), the former
master goes on as a master until the sentinels convert it to a replica, about 10 s later. A process of the bus that
stays connected to it meanwhile writes tasks nobody reads; one that reconnects reaches the new master: workers and
API nodes split between the two, and deliveries stall until the conversion. The Redis guidelines for Sentinel
clients say to listen for `+switch-master`; `SwitchFence` does, and once every sentinel names the new master it
closes the former master's client connections but the sentinels' own (what the sentinels' conversion does later;
theirs are left open, since a sentinel converts only a server it has stayed connected to for 8 s), so every process
reconnects through the sentinels to the new master at once. What the former master
took meanwhile is lost with its conversion; those messages are still `accepted` in the database, and each worker's
reconnection sweeps the outbox (workers/consumer.py).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

AGREEMENT_WAIT = 5.0  # s to wait for every sentinel to name the new master before fencing the former one anyway


class SwitchFence(threading.Thread):
    """A daemon thread, subscribed to `+switch-master` on one of `sentinels` at a time, fencing the former master of
    `master_name` after each switch. `sentinel_options` and `master_options` are redis-py connection keywords
    (passwords, timeouts) for the sentinels and for the master."""

    def __init__(self, sentinels: list[tuple[str, int]], master_name: str, sentinel_options: dict,
                 master_options: dict):
        super().__init__(name="sentinel-switch-fence", daemon=True)
        self.sentinels = sentinels
        self.master_name = master_name
        self.sentinel_options = {"socket_connect_timeout": 2, **sentinel_options, "socket_timeout": None,
                                 "health_check_interval": 10}  # listening blocks; a dead link is found by pings
        self.master_options = {"socket_connect_timeout": 2, "socket_timeout": 2, **master_options}

    def run(self) -> None:
        """Listen on each sentinel in turn (the next when one fails) for as long as the process lives."""
        while True:
            for host, port in self.sentinels:
                try:
                    self._listen(redis.Redis(host=host, port=port, **self.sentinel_options))
                except RedisError as exc:
                    log.debug("sentinel %s:%s: %s; listening on the next one", host, port, exc)
            time.sleep(1)

    def _listen(self, sentinel: redis.Redis) -> None:
        pubsub = sentinel.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe("+switch-master")
            for message in pubsub.listen():
                name, old_host, old_port, new_host, new_port = message["data"].decode().split()
                if name == self.master_name:
                    self.fence((old_host, int(old_port)), (new_host, int(new_port)))
        finally:
            pubsub.close()

    def fence(self, former: tuple[str, int], new: tuple[str, int]) -> None:
        """Once every sentinel names `new` (or after AGREEMENT_WAIT s), close the client connections of `former`."""
        deadline = time.monotonic() + AGREEMENT_WAIT
        while time.monotonic() < deadline and not self._sentinels_agree_on(new):
            time.sleep(0.1)
        try:
            former_master = redis.Redis(host=former[0], port=former[1], **self.master_options)
            if former_master.info("replication").get("role") != "master":
                return  # converted already (or crashed and back as a replica): the sentinels closed its clients
            closed = _close_clients_but_sentinels(former_master)
        except RedisError as exc:  # down (nothing to fence), or the bus's Redis user may not use CLIENT
            level = logging.INFO if isinstance(exc, RedisConnectionError) else logging.WARNING
            log.log(level, "the sentinels switched %s to %s:%s; former master %s:%s not fenced: %s", self.master_name,
                    *new, *former, exc)
            return
        log.log(logging.WARNING if closed else logging.INFO,
                "the sentinels switched %s to %s:%s: closed %d client connection(s) to the former master %s:%s, so "
                "every process reconnects to the new one", self.master_name, *new, closed, *former)

    def _sentinels_agree_on(self, new: tuple[str, int]) -> bool:
        for host, port in self.sentinels:
            try:
                client = redis.Redis(host=host, port=port, **{**self.sentinel_options, "socket_timeout": 1})
                named = client.sentinel_get_master_addr_by_name(self.master_name)
            except RedisError:
                continue  # a sentinel that does not answer has no say
            if named is None or (_text(named[0]), int(named[1])) != new:
                return False
        return True


def _close_clients_but_sentinels(server: redis.Redis) -> int:
    """Close every client connection of `server` (normal and pub/sub) except this one and the sentinels' (named
    `sentinel-<id>-cmd` / `-pubsub`); how many were closed."""
    closed = 0
    for kind in ("normal", "pubsub"):
        for client in server.client_list(_type=kind):
            if client.get("name", "").startswith("sentinel-"):
                continue
            try:
                closed += server.client_kill_filter(_id=client["id"], skipme=True)
            except RedisError:
                pass  # gone meanwhile
    return closed


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
