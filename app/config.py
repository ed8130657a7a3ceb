"""Settings: every configuration value of the bus, each declared once below — its environment variable, the kind
of value it takes with its bounds, its default and its help text (see app.config_fields) — and read from the
environment by `Settings.from_env`. docs/configuration.md is generated from these declarations
(`python scripts/config_docs.py`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.brokers import NAMES, Broker, broker_for, kind_for_url, kind_named, known_schemes
from app.config_fields import (
    ADDRESS,
    DELIVERY,
    FLAG,
    LIMITS,
    OBSERVABILITY,
    PATH,
    SANDBOXES,
    SECURITY,
    SERVER,
    SOCKETS,
    STORAGE,
    URL,
    Choice,
    ConfigError,
    Integer,
    Number,
    read_settings,
)
from app.green import WORKER_CLASSES as API_WORKER_CLASSES
from app.token_format import looks_like_jwt

EDITIONS = ("community", "enterprise")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
MIN_ADMIN_KEY_LENGTH = 24
MIN_JWT_SECRET_LENGTH = 32
MAX_TRUSTED_PROXIES = 5
BODY_OVERHEAD_BYTES = 64 * 1024  # room for the envelope around the largest allowed content (a body, a frame)


def _sqlite_in_data_dir(values: dict) -> str:
    """The default DATABASE_URL: the SQLite file collab-bus.db in DATA_DIR."""
    return f"sqlite:///{values['data_dir'] / 'collab-bus.db'}"


@dataclass(frozen=True)
class Settings:
    """The bus's configuration. Build it with `Settings.from_env()`; every field has a documented default."""

    host: str = SERVER.setting(
        "127.0.0.1", ADDRESS, envvar="HOST",
        help="Address `collab-bus up` and `api` listen on (`0.0.0.0`: every interface).")
    port: int = SERVER.setting(8000, Integer(1, 65535), envvar="PORT", help="Port `collab-bus up` and `api` listen on.")
    http_keepalive_timeout: int = SERVER.setting(
        75, Integer(), envvar="HTTP_KEEPALIVE_TIMEOUT",
        help="Seconds `collab-bus api` keeps an idle kept-alive connection open (`0`: none). Keep it above the idle "
             "timeout of your clients and load balancer (httpx: 5 s; load balancers: often 60 s), else a client "
             "reusing a connection just as the server closes it gets a reset.")
    api_worker_class: str = SERVER.setting(
        "gevent", Choice(API_WORKER_CLASSES), envvar="API_WORKER_CLASS",
        help="gunicorn worker of `collab-bus api`: `gevent` (an open socket costs greenlets, not OS threads: "
             "thousands per process) or `gthread` (a thread per open socket, up to `API_THREADS`).")
    api_worker_connections: int = SERVER.setting(
        20000, Integer(1), envvar="API_WORKER_CONNECTIONS",
        help="With `gevent`: most connections (REST and sockets) one API process serves at once (gunicorn's "
             "`worker_connections`). Each socket also needs a file descriptor: raise `ulimit -n` to match.")

    data_dir: Path = STORAGE.setting(
        Path("data"), PATH, envvar="DATA_DIR",
        help="Directory of the default SQLite database, the generated JWT secret and first admin API key, and "
             "beat's schedule.")
    database_url: str = STORAGE.setting(
        "sqlite:///data/collab-bus.db", URL, envvar="DATABASE_URL", default_from=_sqlite_in_data_dir,
        shown_default="`sqlite:///$DATA_DIR/collab-bus.db`",
        help="SQLAlchemy URL of the database: SQLite (WAL mode; one machine) or PostgreSQL "
             "(`postgresql+psycopg://…`; needed by several API nodes).")
    message_backend: str = STORAGE.setting(
        "memory", Choice(NAMES), envvar="MESSAGE_BACKEND",
        help="The broker: `memory` (one process: `collab-bus up`), or `redis`, `rabbitmq` or `nats` for "
             "`collab-bus api`, `worker` and `beat` as separate processes.")
    redis_url: str = STORAGE.setting(
        "redis://127.0.0.1:6379/0", URL, envvar="REDIS_URL",
        help="The broker when `MESSAGE_BACKEND=redis`: `redis://…`, or `sentinel://…` for Redis behind Sentinel "
             "(see REDIS_SENTINEL_MASTER).")
    redis_sentinel_master: str = STORAGE.setting(
        "mymaster", envvar="REDIS_SENTINEL_MASTER",
        help="With a Sentinel REDIS_URL (`sentinel://h1:26379;sentinel://h2:26379;…`, one per sentinel; a password "
             "and database of the master go in the first: `sentinel://:pw@h1:26379/0;…`): the name the sentinels "
             "monitor the master by. The bus asks them for the master whenever it connects, so it follows a "
             "failover.")
    redis_sentinel_password: str | None = STORAGE.setting(
        None, envvar="REDIS_SENTINEL_PASSWORD", secret=True,
        help="The sentinels' own password (their `requirepass`), when they have one.")
    rabbitmq_url: str = STORAGE.setting(
        "amqp://guest:guest@127.0.0.1:5672//", URL, envvar="RABBITMQ_URL",
        help="The broker when `MESSAGE_BACKEND=rabbitmq`.")
    nats_url: str = STORAGE.setting(
        "nats://127.0.0.1:4222", URL, envvar="NATS_URL",
        help="The broker when `MESSAGE_BACKEND=nats`: NATS servers with JetStream, comma-separated "
             "(`nats://n1:4222,nats://n2:4222,nats://n3:4222`); the bus connects to any one that answers and moves "
             "to another when it is lost.")
    nats_prefix: str = STORAGE.setting(
        "collab", envvar="NATS_PREFIX",
        help="With NATS: the prefix of the bus's JetStream streams, key-value buckets and subjects. Buses sharing "
             "one NATS cluster each need their own.")
    nats_replicas: int = STORAGE.setting(
        1, Integer(minimum=1, maximum=5), envvar="NATS_REPLICAS",
        help="With NATS: how many servers keep each of the bus's streams (1 on a single server; 3 on a 3-server "
             "cluster, which then survives losing one). Applies to streams the bus creates.")
    nats_ack_wait: float = STORAGE.setting(
        3600.0, Number(), envvar="NATS_ACK_WAIT",
        help="With NATS: seconds after which JetStream gives a task taken but never acknowledged (its worker died) "
             "to another worker (the ack wait of the bus's consumers). Keep it above the longest time a worker "
             "holds a task, as REDIS_VISIBILITY_TIMEOUT.")
    broker_url_override: str | None = STORAGE.setting(
        None, URL, envvar="BROKER_URL", help="Any Kombu broker URL; overrides the one `MESSAGE_BACKEND` implies.")
    fanout_exchange: str = STORAGE.setting(
        "collab.notify", envvar="FANOUT_EXCHANGE",
        help="Kombu exchange that carries live notifications (new mailbox entries, events) to every API process.")
    redis_visibility_timeout: float = STORAGE.setting(
        3600.0, Number(), envvar="REDIS_VISIBILITY_TIMEOUT",
        help="Seconds after which Redis gives a task taken but never acknowledged (its worker died) to another "
             "worker. Keep it above the longest time a worker holds a task (prefetched + running), else tasks run "
             "twice (harmless: deliveries are idempotent).")

    outbox_sweep_after: float = DELIVERY.setting(
        30.0, Number(), envvar="OUTBOX_SWEEP_AFTER",
        help="Seconds after its acceptance before beat's outbox sweep enqueues a message no worker has routed yet.")
    outbox_sweep_interval: float = DELIVERY.setting(
        15.0, Number(), envvar="OUTBOX_SWEEP_INTERVAL", help="Seconds between the outbox sweeps of beat.")
    ack_timeout: float = DELIVERY.setting(
        30.0, Number(), envvar="ACK_TIMEOUT",
        help="Seconds to wait for the ACK of a `request` or `command` entry before pushing it again.")
    max_delivery_attempts: int = DELIVERY.setting(
        5, Integer(1), envvar="MAX_DELIVERY_ATTEMPTS",
        help="Pushes of an unacknowledged entry before it is dead-lettered `max_attempts`.")
    max_redelivery_backoff: float = DELIVERY.setting(
        300.0, Number(), envvar="MAX_REDELIVERY_BACKOFF",
        help="Cap, in seconds, of the exponentially growing wait between pushes of an unacknowledged entry.")
    redelivery_sweep_interval: float = DELIVERY.setting(
        1.0, Number(), envvar="REDELIVERY_SWEEP_INTERVAL",
        help="Seconds between beat's redelivery, TTL and heartbeat sweeps.")
    heartbeat_timeout: float = DELIVERY.setting(
        30.0, Number(), envvar="HEARTBEAT_TIMEOUT",
        help="Seconds without a heartbeat (a socket `heartbeat` or `ping` frame, or "
             "`POST /api/v1/sandboxes/{id}/heartbeat`) before a sandbox is marked `offline`.")
    direct_delivery: bool = DELIVERY.setting(
        True, FLAG, envvar="DIRECT_DELIVERY",
        help="A direct message to a sandbox with a mailbox socket on the API process that accepts it is routed in the "
             "transaction that stores it and pushed by that process, with no delivery task (unless an earlier "
             "message to that sandbox still awaits one); `false`: every message goes through a worker.")
    idempotency_window: int = DELIVERY.setting(
        86400, Integer(1), envvar="IDEMPOTENCY_WINDOW",
        help="Seconds an `Idempotency-Key` of a send is remembered; beat purges older keys every 5 minutes.")
    delivery_max_retries: int = DELIVERY.setting(
        20, Integer(), envvar="DELIVERY_MAX_RETRIES",
        help="Retries of a `deliver` task that fails on a database error (waits of 1, 2, 4 … up to 10 s, jittered) "
             "before its message is dead-lettered `undeliverable`.")
    celery_prefetch_multiplier: int = DELIVERY.setting(
        4, Integer(1), envvar="CELERY_PREFETCH_MULTIPLIER",
        help="Tasks a worker reserves ahead per thread (Celery's `worker_prefetch_multiplier`).")

    max_content_bytes: int = LIMITS.setting(
        256 * 1024, Integer(1), envvar="MAX_CONTENT_BYTES",
        help="Largest message `content` (compact JSON, in bytes); larger → 413.")
    max_batch_messages: int = LIMITS.setting(
        500, Integer(1), envvar="MAX_BATCH_MESSAGES",
        help="Most messages one `POST /api/v1/messages/batch` may carry; more → 413 `batch_too_large`.")
    max_batch_bytes: int = LIMITS.setting(
        4 * 1024 * 1024, Integer(1024), envvar="MAX_BATCH_BYTES",
        help="Largest body of a batch send, in bytes; larger → 413. Each message's `content` still obeys "
             "`MAX_CONTENT_BYTES`.")
    rate_limit_per_second: float = LIMITS.setting(
        50.0, Number(), envvar="RATE_LIMIT_PER_SECOND",
        help="Requests per second per caller (API key or sandbox); beyond → 429 with `Retry-After`.")
    rate_limit_burst: int = LIMITS.setting(
        100, Integer(1), envvar="RATE_LIMIT_BURST",
        help="Requests a caller may make in a burst above `RATE_LIMIT_PER_SECOND` before it is held to that rate.")
    max_delivery_backlog: int = LIMITS.setting(
        2000, Integer(), envvar="MAX_DELIVERY_BACKLOG",
        help="Accepted messages awaiting a worker beyond which sends get 503 `overloaded` with `Retry-After: 1`, so "
             "what the bus accepts stays deliverable in bounded time when senders outrun the workers; `0`: no limit.")
    max_trace_hops: int = LIMITS.setting(
        32, Integer(), envvar="MAX_TRACE_HOPS",
        help="Runaway guard: a message more than this many hops from its conversation's first message is refused "
             "with 409 `hop_limit` and announced as a `message.refused` event, so a loop between agents stops by "
             "itself; `0`: no limit.")
    pair_rate_per_minute: int = LIMITS.setting(
        600, Integer(), envvar="PAIR_RATE_PER_MINUTE",
        help="Runaway guard: more messages than this from one sandbox to another within a minute are refused with "
             "429 `pair_rate` (the worker dead-letters `pair_rate` those that got past the API nodes' counts); `0`: "
             "no limit.")
    trace_message_budget: int = LIMITS.setting(
        0, Integer(), envvar="TRACE_MESSAGE_BUDGET",
        help="Runaway guard: a conversation (trace) holding this many messages takes no more: 409 `trace_budget` "
             "(dead-lettered `trace_budget` when the worker finds it over); `0`: no limit.")

    auth_enabled: bool = SECURITY.setting(
        True, FLAG, envvar="AUTH_ENABLED",
        help="`false` admits every caller as an admin (local trials only; the bus warns at start).")
    auth_jwt_secret: str | None = SECURITY.setting(
        None, envvar="AUTH_JWT_SECRET", secret=True, shown_default="generated in `$DATA_DIR/jwt-secret`",
        help=f"Secret (≥ {MIN_JWT_SECRET_LENGTH} characters, e.g. `openssl rand -hex 32`) signing sandbox tokens "
             "(HS256). Required with PostgreSQL: every API node must sign and check tokens with the same secret.")
    admin_api_key: str | None = SECURITY.setting(
        None, envvar="ADMIN_API_KEY", secret=True,
        shown_default="generated at the first start (`$DATA_DIR/admin-api-key`)",
        help=f"Presets the admin API key: any value from your secret store of ≥ {MIN_ADMIN_KEY_LENGTH} printable "
             "ASCII characters without spaces, not shaped like a JWT. Listings show its first 4 characters.")
    sandbox_token_ttl: int = SECURITY.setting(
        86400, Integer(60), envvar="SANDBOX_TOKEN_TTL", help="Seconds a sandbox token is valid.")
    jwt_leeway: float = SECURITY.setting(
        30.0, Number(zero_ok=True), envvar="JWT_LEEWAY",
        help="Seconds of clock skew between API nodes tolerated on a sandbox token's `iat` and `exp`.")
    auth_failure_limit: int = SECURITY.setting(
        20, Integer(1), envvar="AUTH_FAILURE_LIMIT",
        help="Failed authentications per client address per minute before its further failures get 429.")
    trusted_proxies: int = SECURITY.setting(
        0, Integer(0, MAX_TRUSTED_PROXIES), envvar="TRUSTED_PROXIES",
        help="Number of reverse proxies in front of the bus whose `X-Forwarded-*` headers are believed (werkzeug's "
             "`ProxyFix`): limits and the audit trail then see the client address the nearest proxy saw. Leave it "
             "`0` when clients reach the bus directly, else they can pick their own address with a header.")

    max_ws_frame_bytes: int | None = SOCKETS.setting(
        None, Integer(1024), envvar="MAX_WS_FRAME_BYTES", shown_default="`MAX_CONTENT_BYTES` + 65536",
        help="Largest frame a socket client may send; larger: close 1009.")
    max_sockets_per_sandbox: int = SOCKETS.setting(
        4, Integer(1), envvar="MAX_SOCKETS_PER_SANDBOX",
        help="Mailbox sockets one sandbox may hold open per API process.")
    ws_ping_interval: float = SOCKETS.setting(
        25.0, Number(zero_ok=True), envvar="WS_PING_INTERVAL",
        help="Seconds between the server's pings on a quiet socket (`0`: no pings). A socket that has not answered "
             "a ping by the next one is dropped: its sandbox goes `offline` and its slot is free again.")
    ws_permessage_deflate: bool = SOCKETS.setting(
        False, FLAG, envvar="WS_PERMESSAGE_DEFLATE",
        help="`true`: sockets accept permessage-deflate compression when the client offers it (smaller frames for "
             "large messages), at about 100 KiB more resident memory per open socket.")
    auth_frame_timeout: float = SOCKETS.setting(
        3.0, Number(), envvar="AUTH_FRAME_TIMEOUT",
        help="Seconds a socket whose handshake carried no token has to send its `auth` frame; then `error` "
             "`unauthorized` (`details.reason` `auth_frame_timeout`) and close 1008, a failed authentication.")
    max_unauthenticated_sockets_per_address: int = SOCKETS.setting(
        10, Integer(1), envvar="MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS",
        help="Sockets one client address may hold per API process while they wait for their `auth` frame; more → "
             "429 `too_many_unauthenticated_sockets` at the handshake.")

    managed_sandboxes: bool = SANDBOXES.setting(
        False, FLAG, envvar="MANAGED_SANDBOXES",
        help="`true`: the bus runs sandboxes as containers (`POST /api/v1/sandboxes`) on the engine at `DOCKER_HOST` "
             "and `/readyz` checks that engine; off, those endpoints answer 409 `managed_sandboxes_disabled`.")
    docker_host: str | None = SANDBOXES.setting(
        None, URL, envvar="DOCKER_HOST", shown_default="the local socket",
        help="The container engine of managed sandboxes (`unix:///…/docker.sock`, `tcp://host:2375`), as the docker "
             "CLI reads it.")
    edition: str = SANDBOXES.setting(
        "community", Choice(EDITIONS), envvar="EDITION",
        help="`community` runs at most `SANDBOX_LIMIT` managed sandboxes at once (the next gets 403 "
             "`edition_limit`); `enterprise` has no limit. `GET /api/v1/edition` reports both.")
    sandbox_limit: int = SANDBOXES.setting(
        5, Integer(), envvar="SANDBOX_LIMIT", help="Most managed sandboxes the community edition runs at once.")
    bus_public_url: str | None = SANDBOXES.setting(
        None, URL, envvar="BUS_PUBLIC_URL", shown_default="`http://HOST:PORT`",
        help="The bus's address as containers reach it (their `COLLABORATION_BUS_URL`). Containers run with network "
             "`host` unless asked otherwise, so `127.0.0.1` works on one machine.")
    bus_instance: str = SANDBOXES.setting(
        "collab-bus", envvar="BUS_INSTANCE",
        help="Value of the `ai.aintandem.collab.instance` label marking containers as this bus's (two buses on one "
             "engine need different values); the reconciler removes labelled containers with no sandbox record.")
    default_sandbox_image: str = SANDBOXES.setting(
        "aintandem/collab-agent", envvar="DEFAULT_SANDBOX_IMAGE",
        help="Image of a managed sandbox when neither the request nor its workspace's `default_image` names one.")
    lifecycle_lease_seconds: float = SANDBOXES.setting(
        60.0, Number(), envvar="LIFECYCLE_LEASE_SECONDS",
        help="How long a lifecycle task holds its sandbox (extended at each step): a task whose worker died lets go "
             "after this.")
    lifecycle_state_timeout: float = SANDBOXES.setting(
        120.0, Number(), envvar="LIFECYCLE_STATE_TIMEOUT",
        help="Seconds a sandbox may stay `creating`, `starting`, `stopping` or `deleting` before the reconciler "
             "puts it in `error`.")
    container_stop_timeout: float = SANDBOXES.setting(
        10.0, Number(zero_ok=True), envvar="CONTAINER_STOP_TIMEOUT",
        help="Seconds a stopping container gets after SIGTERM before it is killed.")
    reconcile_interval: float = SANDBOXES.setting(
        5.0, Number(), envvar="RECONCILE_INTERVAL",
        help="Seconds between the reconciler's sweeps (beat); engine events (`die`, `oom`, `destroy`) are followed "
             "between sweeps.")
    orphan_grace_seconds: float = SANDBOXES.setting(
        60.0, Number(zero_ok=True), envvar="ORPHAN_GRACE_SECONDS",
        help="Age, in seconds, after which a container with this bus's label but no sandbox record is removed.")

    log_level: str = OBSERVABILITY.setting(
        "INFO", Choice(LOG_LEVELS, upper=True), envvar="LOG_LEVEL",
        help="Least severe level logged. Except at `DEBUG`, Celery's lines about maintenance sweeps that did "
             "nothing (they run every second) are left out.")
    log_format: str = OBSERVABILITY.setting(
        "text", Choice(LOG_FORMATS), envvar="LOG_FORMAT",
        help="`json`: one JSON object per line (time, level, logger, message, and `message_id`, `sandbox_id`, "
             "`correlation_id`, `seq`, `state` where a line is about a message; at `DEBUG` one per state change).")
    worker_metrics_host: str = OBSERVABILITY.setting(
        "127.0.0.1", ADDRESS, envvar="WORKER_METRICS_HOST",
        help="Address on which `collab-bus worker` serves its Prometheus metrics when given a port "
             "(`WORKER_METRICS_PORT`); the Docker image sets `0.0.0.0`.")
    metrics_multiproc_dir: Path | None = OBSERVABILITY.setting(
        None, PATH, envvar="PROMETHEUS_MULTIPROC_DIR", shown_default="a fresh private temporary directory",
        help="Where the processes of `collab-bus api` share their metrics, so that each scrape of `/metrics` "
             "reports all of them. Emptied of its `*.db` files at start; private to one `collab-bus api`.")
    celery_task_events: bool = OBSERVABILITY.setting(
        False, FLAG, envvar="CELERY_TASK_EVENTS",
        help="Send task events for `celery events` and Flower from the start (Flower also turns them on itself).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read the settings from `environ` (default: os.environ) as declared, then apply `overrides` (field
        values); raise ConfigError on a bad value or on values that contradict each other."""
        settings = cls(**{**read_settings(cls, os.environ if environ is None else environ), **overrides})
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError when values contradict each other or cannot work."""
        scheme = self.database_url.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ConfigError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {self.database_url!r}")
        if self.auth_jwt_secret is not None and len(self.auth_jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ConfigError(f"AUTH_JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters "
                              "(e.g. `openssl rand -hex 32`)")
        if self.auth_enabled and not self.auth_jwt_secret and not self.database_url.startswith("sqlite"):
            raise ConfigError("AUTH_JWT_SECRET is required with a shared database: every API node must sign and "
                              "check sandbox tokens with the same secret")
        if self.admin_api_key is not None:
            _check_admin_key(self.admin_api_key)
        if kind_for_url(self.broker_url) is None:
            name = "BROKER_URL" if self.broker_url_override else kind_named(self.message_backend).url_setting
            raise ConfigError(f"{name} must be a broker URL ({', '.join(s + '://' for s in known_schemes())}), "
                              f"got {self.broker_url!r}")

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
        return self.broker_url_override or kind_named(self.message_backend).implied_url(self)

    @property
    def broker(self) -> Broker:
        """The kind of broker `broker_url` points at, as the object that answers for it (app/brokers/)."""
        return broker_for(self)

    @property
    def ws_frame_limit(self) -> int:
        """The largest WebSocket frame a client may send: MAX_WS_FRAME_BYTES, by default the body limit."""
        return self.max_ws_frame_bytes or self.max_content_bytes + BODY_OVERHEAD_BYTES

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
