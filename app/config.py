"""Settings: every configuration value of the bus, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.green import WORKER_CLASSES as API_WORKER_CLASSES
from app.token_format import looks_like_jwt

BACKENDS = ("memory", "redis", "rabbitmq")
EDITIONS = ("community", "enterprise")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


BROKER_SCHEMES = {"redis": "redis", "rediss": "redis", "redis+socket": "redis", "amqp": "rabbitmq",
                  "amqps": "rabbitmq", "pyamqp": "rabbitmq", "memory": "memory"}
MIN_ADMIN_KEY_LENGTH = 24
MAX_TRUSTED_PROXIES = 5


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message is one line for the operator."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, zero_ok: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name} must be {'zero or more' if zero_ok else 'positive'}, got {raw}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
    raw = env.get(name) or default
    value = raw.upper() if upper else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The bus's configuration. Build it with `Settings.from_env()`; every field has a documented default."""

    data_dir: Path = Path("data")
    database_url: str = "sqlite:///data/collab-bus.db"
    message_backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    broker_url_override: str | None = None
    edition: str = "community"
    log_level: str = "INFO"
    log_format: str = "text"
    host: str = "127.0.0.1"
    port: int = 8000
    http_keepalive_timeout: int = 75
    api_worker_class: str = "gevent"
    api_worker_connections: int = 20000
    max_content_bytes: int = 256 * 1024
    outbox_sweep_after: float = 30.0
    ack_timeout: float = 30.0
    max_delivery_attempts: int = 5
    max_redelivery_backoff: float = 300.0
    heartbeat_timeout: float = 30.0
    fanout_exchange: str = "collab.notify"
    redis_visibility_timeout: float = 3600.0
    idempotency_window: int = 86400
    max_batch_messages: int = 500
    max_batch_bytes: int = 4 * 1024 * 1024
    max_delivery_backlog: int = 2000
    max_trace_hops: int = 32
    pair_rate_per_minute: int = 600
    trace_message_budget: int = 0
    auth_enabled: bool = True
    auth_jwt_secret: str | None = None
    admin_api_key: str | None = None
    sandbox_token_ttl: int = 86400
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    auth_failure_limit: int = 20
    max_ws_frame_bytes: int | None = None
    max_sockets_per_sandbox: int = 4
    jwt_leeway: float = 30.0
    trusted_proxies: int = 0
    delivery_max_retries: int = 20
    celery_prefetch_multiplier: int = 4
    celery_task_events: bool = False
    outbox_sweep_interval: float = 15.0
    redelivery_sweep_interval: float = 1.0
    ws_ping_interval: float = 25.0
    ws_permessage_deflate: bool = False
    auth_frame_timeout: float = 3.0
    max_unauthenticated_sockets_per_address: int = 10
    worker_metrics_host: str = "127.0.0.1"
    metrics_multiproc_dir: Path | None = None
    managed_sandboxes: bool = False
    docker_host: str | None = None
    sandbox_limit: int = 5
    bus_public_url: str | None = None
    bus_instance: str = "collab-bus"
    default_sandbox_image: str = "aintandem/collab-agent"
    lifecycle_lease_seconds: float = 60.0
    lifecycle_state_timeout: float = 120.0
    container_stop_timeout: float = 10.0
    reconcile_interval: float = 5.0
    orphan_grace_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read the settings from `environ` (default: os.environ); raise ConfigError on a bad value."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("DATA_DIR") or "data")
        values = dict(
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'collab-bus.db'}",
            message_backend=_choice(env, "MESSAGE_BACKEND", "memory", BACKENDS),
            redis_url=env.get("REDIS_URL") or cls.redis_url,
            rabbitmq_url=env.get("RABBITMQ_URL") or cls.rabbitmq_url,
            broker_url_override=env.get("BROKER_URL") or None,
            edition=_choice(env, "EDITION", "community", EDITIONS),
            log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            log_format=_choice(env, "LOG_FORMAT", "text", LOG_FORMATS),
            host=env.get("HOST") or cls.host,
            port=_int(env, "PORT", cls.port, minimum=1),
            http_keepalive_timeout=_int(env, "HTTP_KEEPALIVE_TIMEOUT", cls.http_keepalive_timeout),
            api_worker_class=_choice(env, "API_WORKER_CLASS", cls.api_worker_class, API_WORKER_CLASSES),
            api_worker_connections=_int(env, "API_WORKER_CONNECTIONS", cls.api_worker_connections, minimum=1),
            max_content_bytes=_int(env, "MAX_CONTENT_BYTES", cls.max_content_bytes, minimum=1),
            outbox_sweep_after=_float(env, "OUTBOX_SWEEP_AFTER", cls.outbox_sweep_after),
            ack_timeout=_float(env, "ACK_TIMEOUT", cls.ack_timeout),
            max_delivery_attempts=_int(env, "MAX_DELIVERY_ATTEMPTS", cls.max_delivery_attempts, minimum=1),
            max_redelivery_backoff=_float(env, "MAX_REDELIVERY_BACKOFF", cls.max_redelivery_backoff),
            heartbeat_timeout=_float(env, "HEARTBEAT_TIMEOUT", cls.heartbeat_timeout),
            fanout_exchange=env.get("FANOUT_EXCHANGE") or cls.fanout_exchange,
            redis_visibility_timeout=_float(env, "REDIS_VISIBILITY_TIMEOUT", cls.redis_visibility_timeout),
            idempotency_window=_int(env, "IDEMPOTENCY_WINDOW", cls.idempotency_window, minimum=1),
            max_batch_messages=_int(env, "MAX_BATCH_MESSAGES", cls.max_batch_messages, minimum=1),
            max_batch_bytes=_int(env, "MAX_BATCH_BYTES", cls.max_batch_bytes, minimum=1024),
            max_delivery_backlog=_int(env, "MAX_DELIVERY_BACKLOG", cls.max_delivery_backlog, minimum=0),
            max_trace_hops=_int(env, "MAX_TRACE_HOPS", cls.max_trace_hops, minimum=0),
            pair_rate_per_minute=_int(env, "PAIR_RATE_PER_MINUTE", cls.pair_rate_per_minute, minimum=0),
            trace_message_budget=_int(env, "TRACE_MESSAGE_BUDGET", cls.trace_message_budget, minimum=0),
            auth_enabled=_bool(env, "AUTH_ENABLED", cls.auth_enabled),
            auth_jwt_secret=env.get("AUTH_JWT_SECRET") or None,
            admin_api_key=env.get("ADMIN_API_KEY") or None,
            sandbox_token_ttl=_int(env, "SANDBOX_TOKEN_TTL", cls.sandbox_token_ttl, minimum=60),
            rate_limit_per_second=_float(env, "RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second),
            rate_limit_burst=_int(env, "RATE_LIMIT_BURST", cls.rate_limit_burst, minimum=1),
            auth_failure_limit=_int(env, "AUTH_FAILURE_LIMIT", cls.auth_failure_limit, minimum=1),
            max_ws_frame_bytes=_int(env, "MAX_WS_FRAME_BYTES", 0, minimum=1024) or None,
            max_sockets_per_sandbox=_int(env, "MAX_SOCKETS_PER_SANDBOX", cls.max_sockets_per_sandbox, minimum=1),
            jwt_leeway=_float(env, "JWT_LEEWAY", cls.jwt_leeway, zero_ok=True),
            trusted_proxies=_int(env, "TRUSTED_PROXIES", cls.trusted_proxies),
            delivery_max_retries=_int(env, "DELIVERY_MAX_RETRIES", cls.delivery_max_retries),
            celery_prefetch_multiplier=_int(env, "CELERY_PREFETCH_MULTIPLIER", cls.celery_prefetch_multiplier,
                                            minimum=1),
            celery_task_events=_bool(env, "CELERY_TASK_EVENTS", cls.celery_task_events),
            outbox_sweep_interval=_float(env, "OUTBOX_SWEEP_INTERVAL", cls.outbox_sweep_interval),
            redelivery_sweep_interval=_float(env, "REDELIVERY_SWEEP_INTERVAL", cls.redelivery_sweep_interval),
            ws_ping_interval=_float(env, "WS_PING_INTERVAL", cls.ws_ping_interval, zero_ok=True),
            ws_permessage_deflate=_bool(env, "WS_PERMESSAGE_DEFLATE", cls.ws_permessage_deflate),
            auth_frame_timeout=_float(env, "AUTH_FRAME_TIMEOUT", cls.auth_frame_timeout),
            max_unauthenticated_sockets_per_address=_int(env, "MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS",
                                                         cls.max_unauthenticated_sockets_per_address, minimum=1),
            worker_metrics_host=env.get("WORKER_METRICS_HOST") or cls.worker_metrics_host,
            metrics_multiproc_dir=_path(env, "PROMETHEUS_MULTIPROC_DIR"),
            managed_sandboxes=_bool(env, "MANAGED_SANDBOXES", cls.managed_sandboxes),
            docker_host=env.get("DOCKER_HOST") or None,
            sandbox_limit=_int(env, "SANDBOX_LIMIT", cls.sandbox_limit),
            bus_public_url=env.get("BUS_PUBLIC_URL") or None,
            bus_instance=env.get("BUS_INSTANCE") or cls.bus_instance,
            default_sandbox_image=env.get("DEFAULT_SANDBOX_IMAGE") or cls.default_sandbox_image,
            lifecycle_lease_seconds=_float(env, "LIFECYCLE_LEASE_SECONDS", cls.lifecycle_lease_seconds),
            lifecycle_state_timeout=_float(env, "LIFECYCLE_STATE_TIMEOUT", cls.lifecycle_state_timeout),
            container_stop_timeout=_float(env, "CONTAINER_STOP_TIMEOUT", cls.container_stop_timeout, zero_ok=True),
            reconcile_interval=_float(env, "RECONCILE_INTERVAL", cls.reconcile_interval),
            orphan_grace_seconds=_float(env, "ORPHAN_GRACE_SECONDS", cls.orphan_grace_seconds, zero_ok=True),
        )
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError when values contradict each other or cannot work."""
        if self.port > 65535:
            raise ConfigError(f"PORT must be at most 65535, got {self.port}")
        scheme = self.database_url.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ConfigError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {self.database_url!r}")
        if self.auth_jwt_secret is not None and len(self.auth_jwt_secret) < 32:
            raise ConfigError("AUTH_JWT_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        if self.auth_enabled and not self.auth_jwt_secret and not self.database_url.startswith("sqlite"):
            raise ConfigError("AUTH_JWT_SECRET is required with a shared database: every API node must sign and "
                              "check sandbox tokens with the same secret")
        if self.admin_api_key is not None:
            _check_admin_key(self.admin_api_key)
        scheme = self.broker_url.split("://", 1)[0] if "://" in self.broker_url else None
        if scheme not in BROKER_SCHEMES:
            name = "BROKER_URL" if self.broker_url_override else {"redis": "REDIS_URL", "rabbitmq": "RABBITMQ_URL",
                                                                  "memory": "BROKER_URL"}[self.message_backend]
            raise ConfigError(f"{name} must be a broker URL ({', '.join(s + '://' for s in BROKER_SCHEMES)}), "
                              f"got {self.broker_url!r}")
        if self.trusted_proxies > MAX_TRUSTED_PROXIES:
            raise ConfigError(f"TRUSTED_PROXIES is the number of proxies in front of the bus (0-{MAX_TRUSTED_PROXIES}), "
                              f"got {self.trusted_proxies}")

    @property
    def public_url(self) -> str:
        """The bus's address as containers see it (COLLABORATION_BUS_URL): BUS_PUBLIC_URL, else http://HOST:PORT."""
        if self.bus_public_url:
            return self.bus_public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def sandbox_cap(self) -> int | None:
        """How many managed sandboxes the edition allows at once (None: no limit)."""
        return None if self.edition == "enterprise" else self.sandbox_limit

    @property
    def broker_url(self) -> str:
        """The Kombu URL of the broker: BROKER_URL when set, else the one implied by MESSAGE_BACKEND."""
        if self.broker_url_override:
            return self.broker_url_override
        return {"memory": "memory://localhost/", "redis": self.redis_url, "rabbitmq": self.rabbitmq_url}[self.message_backend]

    @property
    def broker_kind(self) -> str:
        """Which kind of broker `broker_url` points at: memory, redis or rabbitmq."""
        return BROKER_SCHEMES[self.broker_url.split("://", 1)[0]]

    @property
    def ws_frame_limit(self) -> int:
        """The largest WebSocket frame a client may send: MAX_WS_FRAME_BYTES, by default the body limit."""
        return self.max_ws_frame_bytes or self.max_content_bytes + 64 * 1024

    @property
    def sqlite_path(self) -> Path | None:
        """The file of a SQLite DATABASE_URL, or None for other databases and in-memory SQLite."""
        if not self.database_url.startswith("sqlite"):
            return None
        path = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        return Path(path) if path and path != ":memory:" else None


def _check_admin_key(key: str) -> None:
    """Refuse an ADMIN_API_KEY that could not be sent or told apart from a sandbox token."""
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        raise ConfigError(f"ADMIN_API_KEY must be at least {MIN_ADMIN_KEY_LENGTH} characters")
    if not all(33 <= ord(char) <= 126 for char in key):
        raise ConfigError("ADMIN_API_KEY must be printable ASCII without spaces (it travels in an HTTP header)")
    if looks_like_jwt(key):
        raise ConfigError("ADMIN_API_KEY must not be a JWT (three base64url parts): sandbox tokens look like that")

