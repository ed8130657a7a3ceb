"""Private helper of app/brokers/nats_transport.py: the dead-letter path of a queue's stream.

A queue's consumer delivers a message at most `max_deliveries` times (a task that kills its worker each time, or
is never acknowledged). JetStream then stops delivering it, leaves it in the work-queue stream and publishes the
advisory `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`. Every channel consuming the queue listens
for it and moves the message to the dead-letter stream `<prefix>-dead-letters` (subject `<prefix>.dead.<stream>`,
the last DEAD_LETTERS_KEPT, file storage): copied first, with the message id `<stream>:<seq>` so that the copies of
several listeners are one, then deleted from its queue. An advisory no process heard (none consumed the queue then)
leaves the message in its stream, where the queue report counts it.
"""

from __future__ import annotations

import json
import logging

import nats.js.errors
from nats.js import api

log = logging.getLogger(__name__)

DEAD_LETTERS_KEPT = 10_000


def advisory_subject(stream: str) -> str:
    """The subject of the max-deliveries advisories of the consumer `stream` of stream `stream`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{stream}"


class DeadLetters:
    """Moves the messages JetStream gave up on to the dead-letter stream (made on first use)."""

    def __init__(self, js, prefix: str, storage: str, replicas: int):
        self._js = js
        self._stream = f"{prefix}-dead-letters"
        self._subject = f"{prefix}.dead"
        self._storage = api.StorageType.FILE if storage == "file" else api.StorageType.MEMORY
        self._replicas = replicas
        self._made = False

    async def on_advisory(self, msg) -> None:
        """Handle one advisory (a core NATS message callback): errors are logged, never raised."""
        try:
            advisory = json.loads(msg.data)
            await self.move(advisory["stream"], int(advisory["stream_seq"]), advisory.get("deliveries"))
        except Exception as exc:  # noqa: BLE001 - the message stays in its stream
            log.warning("could not dead-letter a message JetStream gave up on: %s", exc)

    async def move(self, stream: str, seq: int, deliveries: int | None = None) -> None:
        """Copy message `seq` of `stream` to the dead-letter stream, then delete it from `stream`; nothing when
        another listener moved it already."""
        try:
            held = await self._js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            return  # moved by another listener
        await self._ensure_stream()
        headers = {"Nats-Msg-Id": f"{stream}:{seq}", "Collab-Queue-Stream": stream,
                   "Collab-Deliveries": str(deliveries or "")}
        await self._js.publish(f"{self._subject}.{stream}", held.data or b"", headers=headers)
        try:
            await self._js.delete_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            return
        log.warning("dead-lettered message %d of %s after %s deliveries to %s", seq, stream, deliveries or "max",
                    self._stream)

    async def _ensure_stream(self) -> None:
        if self._made:
            return
        try:
            await self._js.add_stream(api.StreamConfig(
                name=self._stream, subjects=[f"{self._subject}.>"], storage=self._storage,
                num_replicas=self._replicas, max_msgs=DEAD_LETTERS_KEPT, discard=api.DiscardPolicy.OLD))
        except nats.js.errors.BadRequestError:  # exists with other settings: keep it as it is
            pass
        self._made = True
