"""A real Docker engine for tests: Debian's dockerd started as root in a temporary directory, with no iptables, no
bridge and no IP forwarding (environment-notes.md), on a private unix socket; and the images the tests run, made
locally (no registry is reachable).

`DockerEngine.unavailable()` says why an engine cannot start on this machine (tests skip with that reason).
"""

from __future__ import annotations

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
AGENT_IMAGE = "collab-test/agent:1"  # that, plus the agent SDK installed from wheels built here
REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "collab-bus-tests"
AGENT_DOCKERFILE = f"""FROM {PYTHON_BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet --no-index --find-links /tmp/wheels \\
    aintandem-agent-sdk && rm -rf /tmp/wheels
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
CMD ["python", "-m", "aintandem_agent_sdk.runner"]
"""


class DockerEngine:
    """A dockerd of our own; `url` is its socket (unix://…), `stop()` ends it and removes its directory."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="dockerd-", dir="/var/tmp"))
        self.socket = self.dir / "docker.sock"
        self.log_path = self.dir / "dockerd.log"
        self.proc = None
        self._start()

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
                ["dockerd", "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
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

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine (as an operator would, behind the bus's back)."""
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True, text=True, check=check,
                              timeout=60)

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
        self.cli("import", str(debian_python_rootfs()), PYTHON_BASE_IMAGE)
        context = self.dir / "agent-image"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(context / "wheels"),
                        str(REPO / "sdk")], check=True, timeout=600)
        (context / "Dockerfile").write_text(AGENT_DOCKERFILE)
        built = subprocess.run(["docker", "-H", self.url, "build", "--network", "none", "-t", AGENT_IMAGE,
                                str(context)],
                               capture_output=True, text=True, timeout=600, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if built.returncode != 0:
            raise RuntimeError(f"building {AGENT_IMAGE} failed: {built.stdout[-2000:]}{built.stderr[-2000:]}")
        return AGENT_IMAGE

    def _terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Remove every container, stop the engine and delete its directory."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                api = self.client()
                for container in api.containers(all=True):
                    api.remove_container(container["Id"], force=True)
            except Exception:
                pass
        self._terminate()
        for mount_point in self._mounts():  # dockerd leaves exec/netns/default (nsfs) and overlay mounts behind
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _mounts(self) -> list[str]:
        """Mount points under this engine's directory, deepest first."""
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.dir) + "/")]
        return sorted(points, key=len, reverse=True)


def debian_python_rootfs() -> Path:
    """A tar of a Debian bookworm root file system with python3 and python3-venv, made once by mmdebstrap."""
    tar = CACHE / "debian-bookworm-python3.tar"
    if tar.exists():
        return tar
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed (make test-deps installs it)")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial.tar")
    subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", "--include=python3,python3-venv", "bookworm",
                    str(partial)], check=True, timeout=900)
    partial.rename(tar)
    return tar
