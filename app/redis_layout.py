"""Names of the bus's keys in Redis (Kombu's transport, default separator) and the one-shot upgrade from the layout
of earlier versions (run by `collab-bus db upgrade`, app.brokers.redis.RedisBroker.upgrade).

The bus uses Kombu's own separator (`\\x06\\x16`), so Flower, `celery inspect` and `celery events`, started with
the broker URL alone, read and write the same keys as the bus. Earlier versions set it to ":". That separator
appears in two places: priority step N of queue Q is the list `Q<sep>N` (step 0 is plain `Q`), and every member
of a `_kombu.binding.<exchange>` (and `_kombu.binding_permanent.<exchange>`) set is
`routing_key<sep>pattern<sep>queue`. A member written with another separator makes Kombu fail every publish to
that exchange (ValueError: not enough values to unpack; e.g. a worker's replies to `celery inspect`), so the
upgrade rewrites those members and moves the tasks still waiting under the former list names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kombu.transport.redis import Channel

log = logging.getLogger(__name__)

SEP = Channel.sep
FORMER_SEP = ":"
BINDINGS = "_kombu.binding."
BINDING_SETS = (BINDINGS, "_kombu.binding_permanent.")  # Kombu 5.7 keeps the members of durable bindings twice

# Moves up to ARGV[1] tasks from list KEYS[1] to the popping end of KEYS[2] (Kombu LPUSHes and BRPOPs), newest
# first, so they keep their order and go before the tasks queued there since. A batch is atomic: several
# processes may run the upgrade at once.
_MOVE_BATCH = """
local moved = 0
while moved < tonumber(ARGV[1]) do
  local task = redis.call('LPOP', KEYS[1])
  if not task then break end
  redis.call('RPUSH', KEYS[2], task)
  moved = moved + 1
end
return moved
"""


def queue_key(queue: str, step: int, prefix: str = "") -> str:
    """The Redis list holding priority step `step` of `queue` (Kombu's `_q_for_pri`)."""
    return prefix + (f"{queue}{SEP}{step}" if step else queue)


@dataclass
class LayoutUpgrade:
    """What `upgrade_former_layout` changed: tasks moved per former list name, binding members rewritten."""

    moved: dict[str, int] = field(default_factory=dict)
    bindings: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.moved or self.bindings)

    def summary(self) -> str:
        """One line for the operator: what was moved and rewritten, or that nothing was left to upgrade."""
        if not self.changed:
            return "Redis key layout up to date (nothing left under the former ':' names)"
        where = ", ".join(f"{key}: {n}" for key, n in self.moved.items()) or "none"
        return (f"Redis key layout upgraded: moved {sum(self.moved.values())} task(s) queued under the former ':' "
                f"names ({where}), rewrote {self.bindings} binding(s)")


def upgrade_former_layout(client, queues, steps, prefix: str = "", batch: int = 1000) -> LayoutUpgrade:
    """Move the tasks waiting in `Q:N` lists to `queue_key(Q, N)` (in order, before the newer tasks there),
    and rewrite `_kombu.binding.*` members written with ":" in Kombu's separator. Idempotent; safe to run from
    several processes at once. `client` is a redis-py client."""
    result = LayoutUpgrade()
    move = client.register_script(_MOVE_BATCH)
    for queue in queues:
        for step in (s for s in steps if s):
            former = prefix + f"{queue}{FORMER_SEP}{step}"
            while moved := move(keys=[former, queue_key(queue, step, prefix)], args=[batch]):
                result.moved[former] = result.moved.get(former, 0) + moved
    for kind in BINDING_SETS:
        for key in client.scan_iter(match=prefix + kind + "*", count=500):
            result.bindings += _rewrite_bindings(client, key)
    return result


def _rewrite_bindings(client, key) -> int:
    """Rewrite the members of binding set `key` that lack Kombu's separator; drop those that are no binding."""
    rewritten = 0
    for member in client.smembers(key):
        text = member.decode(errors="replace")
        if SEP in text:
            continue
        parts = text.split(FORMER_SEP)
        with client.pipeline(transaction=True) as pipe:
            pipe.srem(key, member)
            if len(parts) == 3:
                pipe.sadd(key, SEP.join(parts))
            removed = pipe.execute()[0]
        if not removed:
            continue  # another process rewrote it first
        rewritten += 1
        if len(parts) != 3:
            log.warning("dropped %r from %s: not a binding Kombu can read", text, key.decode(errors="replace"))
    return rewritten
