"""RabbitMQ (Kombu's py-amqp transport): native priorities (x-max-priority) and a capped dead-letter queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.brokers.base import BUS_QUEUES, Broker

if TYPE_CHECKING:
    from kombu import Exchange, Queue

    from app.config import Settings

DEAD_LETTER_QUEUE_LENGTH = 10_000  # records the dead-letter queue keeps; the oldest go first


class RabbitMQBroker(Broker):
    """RabbitMQ: priorities as the protocol numbers them, queue depths and consumers by a passive declare."""

    name = "rabbitmq"
    schemes = ("amqp", "amqps", "pyamqp")
    url_setting = "RABBITMQ_URL"

    @classmethod
    def implied_url(cls, settings: Settings) -> str:
        """RABBITMQ_URL."""
        return settings.rabbitmq_url

    def queue_report(self, timeout: float = 2.0) -> dict:
        """`{"queues": {queue: {"messages", "consumers"} or None}}` (None: not declared yet, by a passive declare)."""
        from amqp.exceptions import NotFound

        depths = {}
        with self.connection(connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            for queue in BUS_QUEUES:
                channel = connection.channel()
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                    depths[queue] = {"messages": declared.message_count, "consumers": declared.consumer_count}
                except NotFound:
                    depths[queue] = None  # declared by the first worker or send
                finally:
                    try:
                        channel.close()
                    except Exception:  # a channel closed by NotFound
                        pass
        return {"queues": depths}

    def dead_letter_queue(self, exchange: Exchange) -> Queue:
        """The durable queue named like `exchange` that keeps the latest DEAD_LETTER_QUEUE_LENGTH records, every
        reason (routing key `#`), dropping the oldest when full."""
        from kombu import Queue

        return Queue(exchange.name, exchange, routing_key="#", durable=True,
                     queue_arguments={"x-max-length": DEAD_LETTER_QUEUE_LENGTH, "x-overflow": "drop-head"})
