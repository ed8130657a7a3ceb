"""The Docker image and Compose files (docker/): well-formed, and consistent with what the code reads.

- `docker compose config` (or Debian's docker-compose v1, which `make test-deps` installs) accepts every Compose
  file (skipped without a Compose CLI); tests/test_compose_up.py runs them;
- always: a structural check with pyyaml (services, images, real `collab-bus` commands and options, ports,
  volumes, depends_on), every environment variable a Compose file sets is one the bus, the SDK, the examples
  or the official third-party image reads, and the Dockerfiles install the package and run real commands (the
  bus image from the runtime lock, requirements/runtime.txt, hash-checked).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from app.cli import main as collab_bus_cli

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMMUNITY = DOCKER / "compose.yaml"
ENTERPRISE = DOCKER / "compose.enterprise.yaml"  # on NATS JetStream, three servers clustered
ENTERPRISE_REDIS = DOCKER / "compose.enterprise.redis.yaml"  # the same on Redis with three Sentinels
ENTERPRISE_FILES = [ENTERPRISE, ENTERPRISE_REDIS]
MANAGED = DOCKER / "compose.managed.yaml"  # an override of COMMUNITY
COMPOSE_FILES = [COMMUNITY, *ENTERPRISE_FILES]
NATS_CONF = DOCKER / "nats" / "nats-server.conf"  # ENTERPRISE's three NATS servers run it as shipped
SENTINEL_CONF = DOCKER / "redis" / "sentinel.conf"  # ENTERPRISE_REDIS's sentinels start from it
HAPROXY_CFG = DOCKER / "haproxy.cfg"  # both enterprise files' balancer runs it as shipped
BUS_DOCKERFILE = DOCKER / "Dockerfile"
AGENT_DOCKERFILE = DOCKER / "Dockerfile.agent"

# Values for the variables the Compose files require (`${VAR:?…}`), long enough for the bus's own checks.
REQUIRED_ENV = {
    "ADMIN_API_KEY": "cbk_" + "0123456789abcdef" * 3,
    "AUTH_JWT_SECRET": "0123456789abcdef" * 4,
    "POSTGRES_PASSWORD": "pg0123456789abcdef",
}

# Variables documented by the official images the Compose files use (not read by our code).
IMAGE_ENV = {
    "postgres": {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_INITDB_ARGS", "PGDATA"},
    "redis": set(),
    "haproxy": set(),
    "nats": set(),
}
# `${VAR:-default}`: a value the user may override from the shell, with what it is otherwise.
DEFAULTED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}")

DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --- what the code reads ----------------------------------------------------------------------------------------

_ENV_OBJECTS = {"env", "environ", "environment"}
_ENV_HELPERS = {"_env", "getenv", "_getenv"}
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _is_env_object(node: ast.AST) -> bool:
    """`env`, `environ`, `os.environ`, `self.env` …: something that maps variable names to values."""
    if isinstance(node, ast.Name):
        return node.id in _ENV_OBJECTS
    if isinstance(node, ast.Attribute):
        return node.attr in _ENV_OBJECTS
    return False


def _constant_names(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAME.match(node.value):
            names.add(node.value)
        elif isinstance(node, (ast.Tuple, ast.List)):
            names |= _constant_names(node.elts)
    return names


def env_names_read_by(path: Path) -> set[str]:
    """Every environment variable name `path` reads, found in its syntax tree:

    `env.get("X")`, `os.environ.get("X")`, `os.environ["X"]`, `os.getenv("X")`, `_env("X")`, helpers taking
    the mapping first (`_int(env, "X", …)`), and click's `envvar="X"`.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Subscript) and _is_env_object(node.value):
            names |= _constant_names([node.slice])
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") and _is_env_object(func.value):
            names |= _constant_names(node.args[:1])
        elif isinstance(func, (ast.Name, ast.Attribute)) and (getattr(func, "id", None) or func.attr) in _ENV_HELPERS:
            names |= _constant_names(node.args[:1])
        elif len(node.args) >= 2 and _is_env_object(node.args[0]):
            names |= _constant_names(node.args[1:2])
        for keyword in node.keywords:
            if keyword.arg == "envvar":
                names |= _constant_names([keyword.value])
    return names


def server_env_names() -> set[str]:
    names = set()
    for path in (ROOT / "app" / "config.py", ROOT / "celeryconfig.py", *sorted((ROOT / "app" / "cli").glob("*.py"))):
        names |= env_names_read_by(path)
    return names


def agent_env_names() -> set[str]:
    names = set()
    sources = [*sorted((ROOT / "sdk" / "aintandem_agent_sdk").glob("*.py")), *sorted((ROOT / "examples").glob("*.py"))]
    for path in sources:
        names |= env_names_read_by(path)
    return names


def test_the_env_parser_finds_what_the_code_reads():
    """The parser must not silently return nothing: known names of each source are found."""
    server = server_env_names()
    assert {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "MESSAGE_BACKEND", "DATA_DIR", "AUTH_JWT_SECRET",
            "ADMIN_API_KEY", "EDITION", "LOG_LEVEL", "PORT", "ACK_TIMEOUT"} <= server
    # celeryconfig's settings
    assert {"CELERY_PREFETCH_MULTIPLIER", "OUTBOX_SWEEP_INTERVAL", "REDELIVERY_SWEEP_INTERVAL"} <= server
    assert {"API_WORKERS", "API_THREADS", "TLS_CERTFILE"} <= server  # click envvar= in app/cli/run.py
    assert {"SANDBOX_ID", "COLLABORATION_BUS_URL", "BUS_TOKEN", "BUS_CURSOR_FILE", "RESEARCHER"} <= agent_env_names()
    assert all(_NAME.match(name) for name in server | agent_env_names())


# --- the Compose files -------------------------------------------------------------------------------------------

def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict), f"{path.name}: no services"
    return document


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a mapping, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in env]
        return {key: value for key, value in pairs}
    assert isinstance(env, dict), f"environment must be a mapping or a list, got {env!r}"
    return {str(key): ("" if value is None else str(value)) for key, value in env.items()}


def with_defaults(value) -> str:
    """`value` as Compose resolves it when no variable is set: each `${VAR:-default}` is its default."""
    return DEFAULTED.sub(lambda match: match.group(2), str(value))


def command_list(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def build_dockerfile(path: Path, service: dict) -> Path | None:
    """The Dockerfile a service is built from, or None when it only names an image."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return (path.parent / build / "Dockerfile").resolve()
    return (path.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()


def kind(path: Path, service: dict) -> str:
    """'bus' (our image), 'agent' (the example agents' image) or the official image's name (postgres …)."""
    dockerfile = build_dockerfile(path, service)
    if dockerfile == BUS_DOCKERFILE:
        return "bus"
    if dockerfile == AGENT_DOCKERFILE:
        return "agent"
    assert dockerfile is None, f"unknown Dockerfile {dockerfile}"
    image = str(service.get("image", ""))
    # A variable may name another image (a mirror, a local build), but Compose must find one without it.
    assert "${" not in image or DEFAULTED.fullmatch(image), f"image {image!r}: a variable needs a default (:-)"
    image = with_defaults(image)
    name = image.split("/")[-1].split(":")[0].split("@")[0]
    assert name in IMAGE_ENV, f"image {image!r} is neither ours nor a known official image"
    return name


def check_collab_bus_args(args: list[str], where: str) -> None:
    """ARGS must parse as a real `collab-bus` command line (subcommand and its options) without running it."""
    assert args, f"{where}: empty collab-bus command"
    command: click.Command = collab_bus_cli
    ctx = click.Context(collab_bus_cli, info_name="collab-bus")
    rest = list(args)
    while isinstance(command, click.Group):
        assert rest, f"{where}: `collab-bus {' '.join(args)}` stops at a command group"
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{where}: `{name}` is not a collab-bus subcommand ({sorted(command.commands)})"
        command = sub
    try:
        command.make_context(name, rest, parent=ctx)
    except click.UsageError as exc:
        raise AssertionError(f"{where}: `collab-bus {' '.join(args)}`: {exc.format_message()}") from None


def test_collab_bus_args_checker_refuses_bogus_commands():
    with pytest.raises(AssertionError, match="not a collab-bus subcommand"):
        check_collab_bus_args(["serve"], "probe")
    with pytest.raises(AssertionError, match="no-such-option"):
        check_collab_bus_args(["api", "--no-such-option"], "probe")
    check_collab_bus_args(["api", "--host", "0.0.0.0", "--no-migrate"], "probe")
    check_collab_bus_args(["db", "upgrade"], "probe")


def check_port(entry, where: str) -> None:
    if isinstance(entry, dict):
        assert int(entry["target"]) > 0 and str(entry.get("published", "1")).replace("-", "").isdigit(), where
        return
    match = re.fullmatch(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(?:(\d+(?:-\d+)?):)?(\d+)(?:/(tcp|udp))?",
                         with_defaults(entry))
    assert match, f"{where}: malformed port {entry!r}"
    for part in (match.group(2) or "").split("-") + [match.group(3)]:
        if part:
            assert 1 <= int(part) <= 65535, f"{where}: port {entry!r} out of range"


def check_volume(entry, declared: set[str], path: Path, where: str) -> tuple[str, str]:
    """(source, container path) of a volume entry; named volumes must be declared, bind sources must exist."""
    if isinstance(entry, dict):
        source, target = entry.get("source", ""), entry["target"]
    else:
        parts = str(entry).split(":")
        assert len(parts) in (2, 3), f"{where}: malformed volume {entry!r} (want source:/path[:mode])"
        source, target = parts[0], parts[1]
        if len(parts) == 3:
            assert set(parts[2].split(",")) <= {"ro", "rw", "z", "Z", "nocopy"}, f"{where}: bad mode in {entry!r}"
    assert target.startswith("/"), f"{where}: volume target {target!r} is not absolute"
    if source.startswith((".", "/", "~")):
        assert (path.parent / source).exists(), f"{where}: bind source {source!r} does not exist"
    elif source:
        assert source in declared, f"{where}: volume {source!r} is not declared under top-level volumes"
    return source, target


def check_agent(path: Path, service: dict, declared_volumes: set[str], where: str) -> None:
    """An agent container runs an example script, or the image's default command (the SDK's generic runner)
    configured by an AGENT_CONFIG file it mounts, which the runner accepts and whose handler exists."""
    args = command_list(service)
    if args:
        scripts = set(re.findall(r"examples/[\w.-]+\.py", " ".join(args)))
        assert scripts, f"{where}: an agent container should run an example"
        for script in scripts:
            assert (ROOT / script).is_file(), f"{where}: {script} does not exist"
        return
    config = environment(service).get("AGENT_CONFIG")
    assert config, f"{where}: the generic runner without AGENT_CONFIG runs a bare echo agent"
    mounts = {target: source for source, target in
              (check_volume(v, declared_volumes, path, where) for v in service.get("volumes") or [])}
    assert config in mounts, f"{where}: AGENT_CONFIG {config} is not mounted"
    from aintandem_agent_sdk.runner import load_config

    runner = load_config({"AGENT_CONFIG": str(path.parent / mounts[config])})
    if runner.handler:
        module = runner.handler.partition(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{where}: no module for {runner.handler}"
    if runner.ask:
        sandboxes = {environment(s).get("SANDBOX_ID") for s in load(path)["services"].values()}
        assert runner.ask["target"] in sandboxes, f"{where}: asks {runner.ask['target']}, which no service runs"


def has_healthcheck(path: Path, service: dict) -> bool:
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable") and check.get("test") not in (["NONE"], "NONE")
    if kind(path, service) == "bus":
        return "HEALTHCHECK" in dockerfile_instructions(BUS_DOCKERFILE)
    return False


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_structure(path: Path):
    document = load(path)
    services: dict = document["services"]
    declared_volumes = set((document.get("volumes") or {}).keys())
    assert not any(isinstance(v, dict) and v.get("external") for v in (document.get("volumes") or {}).values())
    for name, service in services.items():
        where = f"{path.name}: service {name}"
        assert isinstance(service, dict), where
        assert service.get("image") or service.get("build"), f"{where}: needs image or build"
        service_kind = kind(path, service)
        if service.get("build") is not None:
            assert build_dockerfile(path, service).is_file(), f"{where}: Dockerfile missing"
        args = command_list(service)
        if service_kind == "bus":
            check_collab_bus_args(args or ["api", "--host", "0.0.0.0"], where)
        elif service_kind == "agent":
            check_agent(path, service, declared_volumes, where)
        for entry in service.get("ports") or []:
            check_port(entry, where)
        for entry in service.get("volumes") or []:
            check_volume(entry, declared_volumes, path, where)
        depends = service.get("depends_on") or {}
        for target, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert target in services, f"{where}: depends_on unknown service {target!r}"
            assert target != name, f"{where}: depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in DEPENDS_CONDITIONS, f"{where}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert has_healthcheck(path, services[target]), f"{where}: {target} has no healthcheck to wait for"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{where}: {target} must be a one-shot"
        if service_kind == "bus":
            env = environment(service)
            # A bus process listens where the published port points to.
            for entry in service.get("ports") or []:
                target = entry["target"] if isinstance(entry, dict) else str(entry).split(":")[-1].split("/")[0]
                assert str(target) == str(env.get("PORT", "8000")), f"{where}: publishes {target}, listens elsewhere"
            for secret in ("AUTH_JWT_SECRET", "ADMIN_API_KEY"):
                if secret in env:
                    assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", env[secret]), \
                        f"{where}: {secret} must come from the environment as ${{{secret}:?message}}"
    assert sum(1 for s in services.values() if command_list(s)[:1] == ["beat"]) == 1, "exactly one beat"
    for service in services.values():
        if command_list(service)[:1] == ["beat"]:
            assert (service.get("deploy") or {}).get("replicas", 1) == 1, "beat must not be replicated"


def test_community_compose_shares_the_sqlite_database():
    services = load(COMMUNITY)["services"]
    assert {"redis", "api", "worker", "beat"} <= set(services)
    for name in ("api", "worker", "beat"):
        service = services[name]
        env = environment(service)
        assert command_list(service)[0] == name
        assert env["MESSAGE_BACKEND"] == "redis" and env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATA_DIR"] == "/data" and env["DATABASE_URL"] == "sqlite:////data/collab-bus.db"
        mounts = {target: source for source, target in
                  (check_volume(v, set(load(COMMUNITY)["volumes"]), COMMUNITY, name) for v in service["volumes"])}
        assert mounts.get("/data") == "bus-data", f"{name}: the shared database volume is not at DATA_DIR"
    assert [with_defaults(port) for port in services["api"]["ports"]] == ["8000:8000"]
    agents = [s for s in services.values() if kind(COMMUNITY, s) == "agent"]
    assert len(agents) == 2
    for agent in agents:
        env = environment(agent)
        assert env["COLLABORATION_BUS_URL"] == "http://api:8000"
        assert env["BUS_TOKEN"].startswith("${ADMIN_API_KEY")
        assert env["SANDBOX_ID"].startswith(("team-a", "team-b"))


@pytest.mark.parametrize("path", ENTERPRISE_FILES, ids=lambda p: p.name)
def test_enterprise_compose_migrates_once_before_the_apis(path: Path):
    services = load(path)["services"]
    assert {"postgres", "migrate", "haproxy", "worker", "beat"} <= set(services)
    assert command_list(services["migrate"]) == ["db", "upgrade"]
    apis = [name for name, s in services.items() if command_list(s)[:1] == ["api"]]
    replicas = sum((services[name].get("deploy") or {}).get("replicas", 1) for name in apis)
    assert replicas == 2, apis
    assert (services["worker"].get("deploy") or {}).get("replicas") == 3
    for name in [*apis, "worker", "beat"]:
        service = services[name]
        env = environment(service)
        assert (env["MESSAGE_BACKEND"], path) in (("nats", ENTERPRISE), ("redis", ENTERPRISE_REDIS))
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
        assert env["AUTH_JWT_SECRET"].startswith("${AUTH_JWT_SECRET:?")  # required with a shared database
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in apis:
        assert "--no-migrate" in command_list(services[name]), f"{name} would race the migrations"
    assert environment(services["postgres"])["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


@pytest.mark.parametrize("path", ENTERPRISE_FILES, ids=lambda p: p.name)
def test_enterprise_compose_puts_the_api_nodes_behind_haproxy(path: Path):
    """HAProxy runs docker/haproxy.cfg as shipped: its `server` lines are exactly the API services, at the port they
    listen on; it alone publishes a port (its `bind`), and the nodes believe its X-Forwarded-For."""
    services = load(path)["services"]
    apis = sorted(name for name, s in services.items() if command_list(s)[:1] == ["api"])
    cfg = HAPROXY_CFG.read_text()
    servers = dict(re.findall(r"^\s*server (\S+) (\S+)", cfg, flags=re.M))
    assert sorted(servers) == apis and all(servers[name] == f"{name}:8000" for name in apis), servers
    for name in apis:
        assert "--port" in command_list(services[name]) and "8000" in command_list(services[name]), name
        assert not services[name].get("ports"), f"{name}: clients go through HAProxy, not to a node's port"
        assert environment(services[name])["TRUSTED_PROXIES"] == "1"  # haproxy.cfg's `option forwardfor`
    haproxy = services["haproxy"]
    assert kind(path, haproxy) == "haproxy"
    bind = re.search(r"^\s*bind \*:(\d+)$", cfg, flags=re.M).group(1)
    assert [with_defaults(port).split(":")[-1] for port in haproxy["ports"]] == [bind]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]  # the official image's path
    admin_socket = re.search(r"^\s*stats socket (\S+)", cfg, flags=re.M).group(1)
    assert str(Path(admin_socket).parent) in haproxy["tmpfs"], "the runtime API's directory must exist"
    assert set(haproxy["depends_on"]) == set(apis)
    published = [name for name, s in services.items() if s.get("ports")]
    assert published == ["haproxy"], f"only the balancer publishes a port, not {published}"


def test_enterprise_redis_compose_reaches_redis_through_three_sentinels():
    """A Redis master, its replica and three sentinels that monitor it under the name the bus asks for
    (REDIS_SENTINEL_MASTER), each sentinel in the bus's REDIS_URL, each keeping its own state on its own volume."""
    services = load(ENTERPRISE_REDIS)["services"]
    sentinels = sorted(name for name in services if name.startswith("sentinel-"))
    assert len(sentinels) == 3
    conf = SENTINEL_CONF.read_text()
    master, host, port, quorum = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", conf, flags=re.M).groups()
    assert host == "redis" and port == "6379" and len(sentinels) // 2 < int(quorum) <= len(sentinels)
    assert conf.index("resolve-hostnames yes") < conf.index("sentinel monitor")  # `redis` is a name, not an address
    assert command_list(services["redis-replica"])[:1] == ["redis-server"]
    assert " --replicaof redis 6379 " in f" {' '.join(command_list(services['redis-replica']))} "
    for name in ("redis", "redis-replica"):  # each node gives the sentinels (and so the bus) its service name
        args = command_list(services[name])
        assert args[args.index("--replica-announce-ip") + 1] == name
    volumes = set()
    for name in sentinels:
        sentinel = services[name]
        assert kind(ENTERPRISE_REDIS, sentinel) == "redis" and "--sentinel" in " ".join(command_list(sentinel))
        mounts = dict(reversed(str(v).split(":")[:2]) for v in sentinel["volumes"])
        assert mounts["/etc/collab-bus/sentinel.conf"] == "./redis/sentinel.conf"
        volumes.add(mounts["/data"])  # where the sentinel rewrites its copy of the file
        assert "26379" in sentinel["healthcheck"]["test"]
    assert len(volumes) == 3, "each sentinel needs a volume of its own"
    # A stopped node's name must fail at once, not after the host's resolver timed out (TILT mode: no failover).
    assert not [name for name, s in services.items() if s.get("dns_opt") != ["ndots:0"]], "dns_opt ndots:0 missing"
    for name in ("api-1", "api-2", "worker", "beat", "migrate"):
        env = environment(services[name])
        urls = env["REDIS_URL"].split(";")
        assert sorted(urls) == [f"sentinel://{sentinel}:26379" for sentinel in sentinels], name
        assert env["REDIS_SENTINEL_MASTER"] == master
        if name != "migrate":
            assert set(sentinels) <= set(services[name]["depends_on"]), name


def nats_config(path: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A flat nats-server configuration file: its top-level settings and its blocks (`name { key: value … }`), each
    `key: value` (a `[ … ]` list as its text); comments dropped."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())

    def settings(body: str) -> dict[str, str]:
        pairs = re.findall(r"^\s*(\w+)\s*[:=]\s*(\[[^\]]*\]|\S+)", body, flags=re.M)
        return {key: value.strip() for key, value in pairs}

    blocks = {name: settings(body) for name, body in re.findall(r"^\s*(\w+)\s*\{([^{}]*)\}", text, flags=re.M)}
    return settings(re.sub(r"^\s*\w+\s*\{[^{}]*\}", "", text, flags=re.M)), blocks


def test_enterprise_compose_runs_on_a_three_server_jetstream_cluster():
    """Three NATS servers form one JetStream cluster from docker/nats/nats-server.conf (each named on its command
    line, its store on a volume of its own, an fsync before each acknowledgement, routes to all three by name); every
    bus process lists the three in NATS_URL, keeps each stream on all three (NATS_REPLICAS) and starts once they are
    healthy; no Redis is left."""
    services = load(ENTERPRISE)["services"]
    servers = sorted(name for name, s in services.items() if kind(ENTERPRISE, s) == "nats")
    assert servers == ["nats-1", "nats-2", "nats-3"]
    assert not [name for name, s in services.items() if kind(ENTERPRISE, s) == "redis"], "no Redis on NATS"
    top, blocks = nats_config(NATS_CONF)
    jetstream, cluster = blocks["jetstream"], blocks["cluster"]
    # The default (an fsync every 2 minutes) lost acknowledged writes in Jepsen's analysis of NATS 2.12.1.
    assert jetstream["sync_interval"] == "always"
    routes = re.findall(r"nats-route://([\w-]+):(\d+)", cluster["routes"])
    assert sorted(routes) == [(name, cluster["port"]) for name in servers], cluster["routes"]
    assert cluster["name"] and cluster["no_advertise"] == "true"
    volumes = set()
    for name in servers:
        server = services[name]
        assert with_defaults(server["image"]).startswith("nats:") and server["image"].startswith("${NATS_IMAGE:-")
        args = command_list(server)
        # An option first: the official image's entry point (alpine or scratch) runs nats-server with it.
        assert args[0].startswith("-") and args[args.index("--server_name") + 1] == name, args
        mounts = dict(reversed(str(v).split(":")[:2]) for v in server["volumes"])
        assert mounts[args[args.index("--config") + 1]] == "./nats/nats-server.conf"
        volumes.add(mounts[jetstream["store_dir"]])
        assert f"127.0.0.1:{top['http_port']}/healthz" in " ".join(server["healthcheck"]["test"])
        assert server.get("restart") == "unless-stopped" and server.get("dns_opt") == ["ndots:0"]
    assert len(volumes) == 3 and volumes <= set(load(ENTERPRISE)["volumes"]), "each server needs a volume of its own"
    for name in ("api-1", "api-2", "worker", "beat", "migrate"):
        env = environment(services[name])
        assert env["MESSAGE_BACKEND"] == "nats" and not [key for key in env if key.startswith("REDIS_")], name
        assert env["NATS_URL"].split(",") == [f"nats://{server}:{top['port']}" for server in servers], name
        assert env["NATS_REPLICAS"] == str(len(servers)), name
        if name != "migrate":
            depends = services[name]["depends_on"]
            assert all(depends[server]["condition"] == "service_healthy" for server in servers), name
    assert not [name for name, s in services.items() if s.get("dns_opt") != ["ndots:0"]], "dns_opt ndots:0 missing"


def test_managed_override_gives_the_api_and_worker_the_engine():
    """compose.managed.yaml, added to compose.yaml, turns managed sandboxes on: the API and the worker reach the
    engine's socket as the bus's unprivileged user, and sandboxes get an image compose.yaml builds and a bus URL
    they can reach from the host network."""
    override = load(MANAGED)["services"]
    base = load(COMMUNITY)["services"]
    assert set(override) <= set(base)
    for name in ("api", "worker"):
        env = environment(override[name])
        assert env["MANAGED_SANDBOXES"] == "true" and env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
        assert "/var/run/docker.sock:/var/run/docker.sock" in override[name]["volumes"]
        assert [str(g) for g in override[name]["group_add"]][0].startswith("${DOCKER_GID:?")
    env = environment(override["api"])
    agent_images = {s["image"] for s in base.values() if kind(COMMUNITY, s) == "agent"}
    assert env["DEFAULT_SANDBOX_IMAGE"] in agent_images
    published = {with_defaults(p).split(":")[0] for p in base["api"]["ports"]}
    assert with_defaults(env["BUS_PUBLIC_URL"]).rsplit(":", 1)[-1] in published
    assert env["BUS_PUBLIC_URL"].endswith(":${BUS_PORT:-8000}"), "follow compose.yaml's BUS_PORT"
    unread = [f"{name}: {v}" for name, s in override.items() for v in environment(s) if v not in server_env_names()]
    assert not unread, unread
    readme = (DOCKER / "README.md").read_text()
    referenced = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", MANAGED.read_text()))
    assert referenced == {"DOCKER_GID", "BUS_PORT"} and "`DOCKER_GID`" in readme and "compose.managed.yaml" in readme


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_sets_only_variables_something_reads(path: Path):
    readers = {"bus": server_env_names(), "agent": agent_env_names(), **IMAGE_ENV}
    unread = []
    for name, service in load(path)["services"].items():
        for variable in environment(service):
            if variable not in readers[kind(path, service)]:
                unread.append(f"{name}: {variable}")
    assert not unread, f"{path.name} sets variables nothing in its container reads: {unread}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_interpolated_variables_are_documented(path: Path):
    """Every ${VAR} the Compose file takes from the shell is explained in docker/README.md."""
    readme = (DOCKER / "README.md").read_text()
    referenced = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", path.read_text()))
    assert {"ADMIN_API_KEY", "AUTH_JWT_SECRET"} <= referenced
    assert not [v for v in referenced if f"`{v}`" not in readme], "undocumented in docker/README.md"


# --- docker compose config ---------------------------------------------------------------------------------------

def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin), else the standalone `docker-compose`, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker-compose"]
    return None


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_config_accepts_the_file(path: Path, tmp_path: Path):
    compose = compose_command()
    if compose is None:
        pytest.skip("no Compose CLI: neither `docker compose` (the v2 plugin) nor `docker-compose` is installed")
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED_ENV and key != "LOG_LEVEL"}
    env.update(REQUIRED_ENV)
    # Run from an empty directory so no stray .env file takes part.
    result = subprocess.run([*compose, "-f", str(path), "config"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, f"{' '.join(compose)} config failed:\n{result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(load(path)["services"])
    assert REQUIRED_ENV["ADMIN_API_KEY"] in result.stdout and "${" not in result.stdout

    # Without the secrets Compose refuses, naming the variable.
    env.pop("AUTH_JWT_SECRET")
    result = subprocess.run([*compose, "-f", str(path), "config"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60)
    assert result.returncode != 0 and "AUTH_JWT_SECRET" in result.stderr, result.stderr


# --- the Dockerfiles ---------------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> dict[str, list[str]]:
    """Instruction name → its arguments (continuation lines joined), in file order."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        instructions.setdefault(name.upper(), []).append(rest.strip())
    return instructions


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed), value
    return parsed


def test_bus_dockerfile_installs_the_package_and_runs_collab_bus():
    instructions = dockerfile_instructions(BUS_DOCKERFILE)
    assert any("python:3.11-slim" in value for value in instructions.get("ARG", []) + instructions["FROM"])
    assert exec_form(instructions["ENTRYPOINT"][-1]) == ["collab-bus"]
    cmd = exec_form(instructions["CMD"][-1])
    check_collab_bus_args(cmd, "Dockerfile CMD")
    assert cmd[0] == "api" and "0.0.0.0" in cmd
    copied = " ".join(instructions["COPY"])
    for needed in ("pyproject.toml", "app", "workers", "migrations", "celeryconfig.py"):
        assert re.search(rf"(^|\s){re.escape(needed)}(\s|$)", copied), f"Dockerfile does not copy {needed}"
    runs = " ".join(instructions["RUN"])
    assert re.search(r"pip install [^&]*(-e )?\.(\s|$)", runs), "Dockerfile does not pip install the package"
    check_installs_from_the_runtime_lock(instructions)
    user = instructions["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    assert any("DATA_DIR=/data" in value for value in instructions["ENV"])
    assert any("/data" in value for value in instructions["VOLUME"])
    healthcheck = instructions["HEALTHCHECK"][-1]
    assert "/healthz" in healthcheck and "python" in healthcheck and "curl" not in healthcheck


def dockerfile_env(path: Path) -> dict[str, str]:
    """What the ENV instructions of `path` set (`KEY=VALUE` pairs)."""
    pairs = [shlex.split(value) for value in dockerfile_instructions(path).get("ENV", [])]
    return dict(pair.split("=", 1) for args in pairs for pair in args)


def test_bus_image_serves_worker_metrics_beyond_the_container():
    """A worker's metrics listen on loopback by default: inside a container that is unreachable to a scraper."""
    env = dockerfile_env(BUS_DOCKERFILE)
    assert env.get("WORKER_METRICS_HOST") == "0.0.0.0" and "WORKER_METRICS_HOST" in server_env_names()
    assert env.get("DATA_DIR") == "/data"


def check_installs_from_the_runtime_lock(instructions: dict[str, list[str]]) -> None:
    """The image's dependencies are exactly the runtime lock's (hash-checked), the package adds none, and no test
    lock or unpinned requirement list goes in."""
    copied = " ".join(instructions["COPY"])
    assert re.search(r"(^|\s)requirements/runtime\.txt(\s|$)", copied), "Dockerfile does not copy the runtime lock"
    installs = [part.strip() for run in instructions["RUN"] for part in run.split("&&") if "pip install" in part]
    assert any(re.search(r"pip install --require-hashes -r requirements/runtime\.txt$", part) for part in installs), \
        f"Dockerfile does not install requirements/runtime.txt with --require-hashes: {installs}"
    for part in installs:
        assert "--require-hashes" in part or "--no-deps" in part, f"unlocked install in the Dockerfile: {part!r}"
        assert "test" not in part, f"the image must not install test tools: {part!r}"
    assert (ROOT / "requirements" / "runtime.txt").is_file()


def test_the_lock_check_refuses_unlocked_installs():
    with pytest.raises(AssertionError, match="unlocked install"):
        check_installs_from_the_runtime_lock({
            "COPY": ["requirements/runtime.txt ./requirements/"],
            "RUN": ["pip install --require-hashes -r requirements/runtime.txt && pip install tzdata"]})
    with pytest.raises(AssertionError, match="does not copy the runtime lock"):
        check_installs_from_the_runtime_lock({"COPY": ["pyproject.toml ./"], "RUN": ["pip install -e ."]})


def test_agent_dockerfile_installs_the_sdk_and_the_examples():
    instructions = dockerfile_instructions(AGENT_DOCKERFILE)
    copied = " ".join(instructions["COPY"])
    assert re.search(r"(^|\s)sdk(\s|$)", copied) and re.search(r"(^|\s)examples(\s|$)", copied)
    assert re.search(r"pip install \./sdk", " ".join(instructions["RUN"]))
    cmd = exec_form(instructions["CMD"][-1])  # the SDK's generic runner (managed sandboxes start it as is)
    assert cmd[0] in ("python", "python3") and cmd[1:] == ["-m", "aintandem_agent_sdk.runner"]
    assert (ROOT / "sdk/aintandem_agent_sdk/runner.py").is_file()
    assert instructions["USER"][-1].split(":")[0] not in ("root", "0")


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".venv", "data", "dist", ".git"):
        assert needed in patterns, f".dockerignore misses {needed}"
    assert {"build", "**/build"} & patterns and {"__pycache__", "**/__pycache__"} & patterns
    # What the image needs must not be ignored.
    assert not {"app", "workers", "migrations", "sdk", "examples", "pyproject.toml", "README.md", "requirements",
                "requirements/runtime.txt"} & patterns
