"""HAProxy in front of the bus's API nodes, for tests: the shipped `docker/haproxy.cfg`, rendered for loopback.

The rendered copy is the shipped file with only its addresses changed (the `bind` line, each `server` line's
address, the runtime API's socket path), plus the setting overrides a test names explicitly. A line a test means to
change that is not in the shipped file fails the render, so the tests keep running the file that ships.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.servers import REPO, _port_open, end_process_group, free_port, wait_for

SHIPPED_CFG = REPO / "docker" / "haproxy.cfg"
BACKEND = "bus_api"


def render(addresses: dict[str, int], bind_port: int, socket_path: Path,
           overrides: dict[str, str | None] | None = None) -> str:
    """The shipped configuration with server `name` at 127.0.0.1:`addresses[name]` (every server line must be
    named), the frontend bound to 127.0.0.1:`bind_port`, the runtime API on `socket_path`, and each setting of
    `overrides` ("timeout client" -> "1s") given that value, or removed when it is None."""
    text = SHIPPED_CFG.read_text()
    text = _replace(text, r"^(\s*bind )\S+", rf"\g<1>127.0.0.1:{bind_port}", "bind")
    text = _replace(text, r"^(\s*stats socket )\S+", rf"\g<1>{socket_path}", "stats socket")
    servers = re.findall(r"^\s*server (\S+) ", text, flags=re.M)  # a node is a server of each backend
    if sorted(set(servers)) != sorted(addresses):
        raise ValueError(f"the shipped configuration names servers {servers}, the test {sorted(addresses)}")
    for name, port in addresses.items():
        text = _replace(text, rf"^(\s*server {re.escape(name)} )\S+", rf"\g<1>127.0.0.1:{port}", f"server {name}",
                        expected=servers.count(name))
    for setting, value in (overrides or {}).items():
        line = rf"^(\s*{re.escape(setting)} )\S+\n"
        text = _replace(text, line, "" if value is None else rf"\g<1>{value}\n", setting)
    return text


def _replace(text: str, pattern: str, replacement: str, what: str, expected: int = 1) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != expected:
        raise ValueError(f"{what}: {count} matching lines in {SHIPPED_CFG}, expected {expected}")
    return new


class HAProxy:
    """Debian's haproxy (`haproxy -db -f <rendered cfg>`) on a free loopback port, in front of API nodes.

    `nodes` maps the shipped file's server names to loopback ports (e.g. {"api-1": 8101, "api-2": 8102}). `url` /
    `ws_url` are the balancer's; `runtime()` talks to its runtime API; `servers()` reads its view of each node.
    """

    def __init__(self, nodes: dict[str, int], overrides: dict[str, str | None] | None = None):
        self.program = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
        if self.program is None:
            raise RuntimeError("haproxy is not installed: run `make test-deps` (apt-get install haproxy)")
        self.dir = Path(tempfile.mkdtemp(prefix="haproxy-"))
        self.port = free_port()
        self.socket_path = self.dir / "admin.sock"
        self.cfg = self.dir / "haproxy.cfg"
        self.cfg.write_text(render(nodes, self.port, self.socket_path, overrides))
        self.log = self.dir / "haproxy.log"
        self._proc: subprocess.Popen | None = None
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Check the rendered file (`haproxy -c`), start haproxy in the foreground and wait for its port."""
        check = subprocess.run([self.program, "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c refused the rendered configuration:\n{check.stdout}{check.stderr}")
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen([self.program, "-db", "-f", str(self.cfg)], stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        wait_for(self._listening, 10, f"haproxy on port {self.port}")

    def _listening(self) -> bool:
        if self._proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self._proc.returncode}:\n{self.logs()}")
        return _port_open(self.port) and self.socket_path.exists()

    def runtime(self, command: str) -> str:
        """Send one command to the runtime API and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(str(self.socket_path))
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """The balancer's counters per node (`show stat`): status (UP, DOWN, …), stot (sessions so far), scur (open
        now), hrsp_5xx (5xx answers), cli_abrt/srv_abrt (transfers aborted by the client / the node), …"""
        rows = csv.DictReader(io.StringIO(self.runtime("show stat").lstrip("# ")))
        return {row["svname"]: row for row in rows
                if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")}

    def backend(self) -> dict[str, str]:
        """The backend's own counters (`show stat`), e.g. hrsp_5xx of answers made by HAProxy itself (503: no node)."""
        rows = csv.DictReader(io.StringIO(self.runtime("show stat").lstrip("# ")))
        return next(row for row in rows if row["pxname"] == BACKEND and row["svname"] == "BACKEND")

    def wait_status(self, server: str, status: str, timeout: float = 30) -> None:
        """Wait until the balancer reports `server` with `status` (e.g. "UP", "DOWN")."""
        wait_for(lambda: self.servers()[server]["status"].startswith(status), timeout,
                 f"haproxy to see {server} {status} (it is {self.servers()[server]['status']})", interval=0.1)

    def log_lines(self, *needles: str) -> list[str]:
        """Lines of haproxy's log containing any of `needles`."""
        return [line for line in self.logs().splitlines() if any(n in line for n in needles)]

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop haproxy (SIGTERM, SIGKILL after 10 s)."""
        if self._proc is not None:
            end_process_group(self._proc)
            self._proc = None

    def cleanup(self) -> None:
        """Stop haproxy and remove its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
