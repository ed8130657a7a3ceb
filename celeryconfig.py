"""Celery settings of the bus (`celery inspect conf` lists them; names starting with `_` are not settings).

The broker URL is not here: `app.broker.make_celery` sets it from the bus's Settings
(MESSAGE_BACKEND / REDIS_URL / BROKER_URL), together with the broker-specific transport options.
The knobs an operator may turn are read through the same Settings (app/config.py): CELERY_PREFETCH_MULTIPLIER,
CELERY_TASK_EVENTS, DELIVERY_MAX_RETRIES, OUTBOX_SWEEP_INTERVAL, REDELIVERY_SWEEP_INTERVAL.
"""

from kombu import Exchange as _Exchange
from kombu import Queue as _Queue

from app.config import Settings as _Settings

_settings = _Settings.from_env()

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
# A deliver task failing on a database error is retried this many times (backoff 1, 2, 4 ... capped at 10 s,
# full jitter) before its message is dead-lettered `undeliverable`.
task_annotations = {"workers.delivery.deliver": {"max_retries": _settings.delivery_max_retries}}
worker_prefetch_multiplier = _settings.celery_prefetch_multiplier
worker_send_task_events = _settings.celery_task_events
task_send_sent_event = worker_send_task_events
broker_connection_retry_on_startup = True
worker_hijack_root_logger = False
enable_utc = True
timezone = "UTC"

_outbox_every = _settings.outbox_sweep_interval
_redelivery_every = _settings.redelivery_sweep_interval
_idempotency_purge_every = 300.0  # expired keys are harmless until purged: they are replaced on reuse
beat_schedule = {
    "sweep-outbox": {"task": "workers.maintenance.sweep_outbox", "schedule": _outbox_every,
                     "options": {"expires": _outbox_every}},
    "sweep-unacked": {"task": "workers.maintenance.sweep_unacked", "schedule": _redelivery_every,
                      "options": {"expires": _redelivery_every}},
    "sweep-expired": {"task": "workers.maintenance.sweep_expired", "schedule": _redelivery_every,
                      "options": {"expires": _redelivery_every}},
    "sweep-heartbeats": {"task": "workers.maintenance.sweep_heartbeats", "schedule": _redelivery_every,
                         "options": {"expires": _redelivery_every}},
    "purge-idempotency-keys": {"task": "workers.maintenance.purge_idempotency_keys",
                               "schedule": _idempotency_purge_every, "options": {"expires": _idempotency_purge_every}},
}
