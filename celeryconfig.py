"""Celery settings of the bus (`celery inspect conf` lists them; names starting with `_` are not settings).

The broker URL is not here: `app.broker.make_celery` sets it from the bus's Settings
(MESSAGE_BACKEND / REDIS_URL / BROKER_URL), together with the broker-specific transport options.
So are the knobs an operator may turn (`app.broker.tunable_celery_settings`): CELERY_PREFETCH_MULTIPLIER,
CELERY_TASK_EVENTS, DELIVERY_MAX_RETRIES, OUTBOX_SWEEP_INTERVAL, REDELIVERY_SWEEP_INTERVAL. This file imports
nothing of the project.
"""

from kombu import Exchange as _Exchange
from kombu import Queue as _Queue

# Messages on queues survive broker restarts; protocol priority 0-9 maps onto RabbitMQ's x-max-priority.
_priority = {"x-max-priority": 10}
task_queues = (
    _Queue("delivery", _Exchange("delivery", type="direct"), routing_key="delivery", queue_arguments=_priority),
    _Queue("lifecycle", _Exchange("lifecycle", type="direct"), routing_key="lifecycle", queue_arguments=_priority),
    _Queue("maintenance", _Exchange("maintenance", type="direct"), routing_key="maintenance"),
)
task_default_queue = "delivery"
task_routes = {
    "workers.delivery.*": {"queue": "delivery", "routing_key": "delivery"},
    "workers.maintenance.*": {"queue": "maintenance", "routing_key": "maintenance"},
    "workers.lifecycle.*": {"queue": "lifecycle", "routing_key": "lifecycle"},
}

# A task is acknowledged after it ran, and put back if its worker dies: deliveries are idempotent.
task_acks_late = True
task_reject_on_worker_lost = True
task_ignore_result = True
task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
task_default_priority = 4  # protocol priority 5 on Redis' 0-highest scale
broker_connection_retry_on_startup = True
# Reconnects within about a second of the broker's return, then sweeps the outbox at once (workers/consumer.py).
worker_consumer = "workers.consumer:QuickReconnectConsumer"
worker_hijack_root_logger = False
enable_utc = True
timezone = "UTC"
