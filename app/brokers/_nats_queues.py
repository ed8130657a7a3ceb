"""Private helper of app/brokers/nats_transport.py: what a Kombu queue is on JetStream, as a mixin of its Channel.

A queue is a work-queue stream with one durable pull consumer (app/brokers/_nats_admin.py `declare_queue`), made
when a message is first put or fetched, so a queue only ever bound to fanout exchanges (Celery's pidbox, the bus's
fanout listeners) gets none. Deleting a queue deletes its stream and the bindings other processes route by.
"""

from __future__ import annotations

import nats.js.errors
from kombu.transport.base import to_rabbitmq_queue_arguments

from app.brokers._nats_admin import declare_queue


class QueueStreams:
    """Kombu's queue operations of the virtual channel (declare, exists, delete, size, purge) on streams; the
    Channel provides `_nats` (its Transport), `_run`, `_stream`, `_subject` and the transport options."""

    def prepare_queue_arguments(self, arguments, **kwargs):
        """A queue's `expires` and `message_ttl` as x-arguments (as Kombu's AMQP and MongoDB transports): read by
        `_new_queue`."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _new_queue(self, queue, **kwargs):
        """Note the declaration; the stream is made when a message is first put or fetched (`_ensure_stream`)."""
        if kwargs.get("auto_delete") or kwargs.get("exclusive"):
            self._auto_delete.add(queue)
        self._declared.add(queue)
        self._nats.max_ages[queue] = _max_age(kwargs.get("arguments") or {})

    def _ensure_stream(self, queue):
        if queue in self._nats.known_queues:
            return
        self._run(declare_queue(self._nats.js, self._stream(queue), self._subject(queue), self.storage,
                                int(self.replicas), float(self.visibility_timeout), int(self.max_deliveries),
                                self._nats.max_ages.get(queue)))
        self._nats.known_queues.add(queue)

    def _has_queue(self, queue, **kwargs):
        if queue in self._declared or queue in self._nats.known_queues:
            return True
        try:
            self._run(self._nats.js.stream_info(self._stream(queue)))
        except nats.js.errors.NotFoundError:
            return False
        return True

    def queue_delete(self, queue, if_unused=False, if_empty=False, **kwargs):
        """Delete the queue's stream and its bindings (also those kept for other processes)."""
        if if_empty and self._size(queue):
            return
        for exchange, _, _ in self.state.queue_bindings(queue):
            if self.typeof(exchange).type != "fanout":
                self._run(self._nats.bindings.remove(exchange, queue))
                self._nats.forget_bindings(exchange)
        self.state.queue_bindings_delete(queue)
        for exchange in self.state.exchanges.values():  # else a publish routes to it again, making a new stream
            exchange["table"] = [binding for binding in exchange.get("table") or [] if binding[2] != queue]
        self._delete(queue)

    def _delete(self, queue, *args, **kwargs):
        self._nats.known_queues.discard(queue)
        self._declared.discard(queue)
        self._auto_delete.discard(queue)
        self._subs.pop(queue, None)
        self._fanout_buffers.pop(queue, None)
        try:
            self._run(self._nats.js.delete_stream(self._stream(queue)))
        except nats.js.errors.NotFoundError:
            pass

    def _size(self, queue):
        """Messages ready in `queue`: not yet delivered to its consumer (unacked ones are not counted)."""
        if queue in self._fanout_buffers:
            return len(self._fanout_buffers[queue])
        stream = self._stream(queue)
        try:
            info = self._run(self._nats.js.consumer_info(stream, stream))
        except nats.js.errors.NotFoundError:
            return 0
        return info.num_pending or 0

    def _purge(self, queue):
        size = self._size(queue)
        if queue in self._fanout_buffers:
            self._fanout_buffers[queue].clear()
            return size
        try:
            self._run(self._nats.js.purge_stream(self._stream(queue)))
        except nats.js.errors.NotFoundError:
            return 0
        return size


def _max_age(arguments: dict) -> float | None:
    """How long a message may wait in a queue declared with `arguments`: its x-message-ttl, else its x-expires
    (ms; Celery's event and reply queues have them): a stream is not deleted when unused, so a queue left behind
    by a killed process keeps no more than that."""
    limit = arguments.get("x-message-ttl") or arguments.get("x-expires")
    return float(limit) / 1000 if limit else None
