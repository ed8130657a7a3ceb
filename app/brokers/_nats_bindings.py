"""Private helper of app/brokers/nats_transport.py: the bindings of direct/topic exchanges, kept in a JetStream
key-value bucket (one key per exchange, a JSON list of [routing_key, pattern, queue]) so that a process publishing
to an exchange routes to the queues another process bound, as the Redis transport keeps them in Redis."""

from __future__ import annotations

import json

import nats.js.errors
from nats.js import api

from app.brokers._nats_loop import name_token


class BindingStore:
    """The bucket `bucket` (file storage, `replicas`), opened or created on first use: a server just started, or a
    cluster electing its leaders, may not answer JetStream yet when the connection is made."""

    def __init__(self, js, bucket: str, replicas: int):
        self.js = js
        self.bucket = bucket
        self.replicas = replicas
        self._kv = None

    async def _open(self):
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    bucket=self.bucket, storage=api.StorageType.FILE, replicas=self.replicas)
        return self._kv

    async def get(self, exchange: str) -> list[list[str]]:
        """The bindings of `exchange` ([] if none)."""
        kv = await self._open()
        try:
            entry = await kv.get(name_token(exchange))
        except nats.js.errors.KeyNotFoundError:
            return []
        return json.loads(entry.value or b"[]")

    async def add(self, exchange: str, binding: tuple[str, str, str]) -> None:
        """Add `binding` (routing_key, pattern, queue) to `exchange`'s list."""
        await self._change(exchange, lambda table: table if list(binding) in table else [*table, list(binding)])

    async def remove(self, exchange: str, queue: str) -> None:
        """Remove every binding of `queue` from `exchange`'s list (a queue deleted)."""
        await self._change(exchange, lambda table: [binding for binding in table if binding[2] != queue])

    async def _change(self, exchange: str, change) -> None:
        """Replace `exchange`'s list by `change(list)`, with compare-and-set on the revision (another process may
        bind at the same time)."""
        key = name_token(exchange)
        kv = await self._open()
        for _ in range(20):
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                entry = None
            table = json.loads(entry.value or b"[]") if entry else []
            changed = change(table)
            if changed == table and entry is not None or not changed and entry is None:
                return
            try:
                if entry is None:
                    await kv.create(key, json.dumps(changed).encode())
                else:
                    await kv.update(key, json.dumps(changed).encode(), last=entry.revision)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise nats.js.errors.Error(f"could not change the bindings of {exchange}")
