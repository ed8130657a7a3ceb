"""What `collab-bus up` and `collab-bus api` print as they start: where the bus listens, its web GUI, where its admin
key is and, when it runs off the defaults, the line another shell exports to reach it (the CLI, the SDK and the
examples read the same variables). And the one-line refusal of an address the bus cannot listen on."""

from __future__ import annotations

import errno
import os
import shlex
import socket

import click

from app.cli.database_name import describe_database
from app.cli.errors import EXIT_FAILED, EXIT_USAGE, Failure
from app.config import Settings

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # listening everywhere: reach it on loopback


def check_listen(host: str, port: int) -> None:
    """Return when a socket can listen on host:port; else Failure, one line naming HOST (exit status 2: no such
    address here) or PORT (exit status 1: taken, or not allowed)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise _cannot_listen(host, port, "HOST", exc.strerror, EXIT_USAGE) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise _cannot_listen(host, port, "PORT", exc.strerror, EXIT_FAILED) from None
            raise _cannot_listen(host, port, "HOST", exc.strerror, EXIT_USAGE) from None


def _cannot_listen(host: str, port: int, setting: str, why: str | None, status: int) -> Failure:
    return Failure(f"cannot listen on {host_port(host, port)} ({setting}): {why or 'refused by the system'}", status)


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reachable_url(configured: Settings, scheme: str) -> str:
    """The URL a client on this machine reaches the bus at (loopback when it listens on every address)."""
    return f"{scheme}://{host_port(WILDCARDS.get(configured.host, configured.host), configured.port)}"


def print_banner(headline: str, configured: Settings, scheme: str, admin_key: str) -> None:
    """Print the start banner: `headline`, the GUI's URL, where the admin key is, and the export line when the bus
    runs off the defaults (HOST, PORT, DATA_DIR, DATABASE_URL)."""
    url = reachable_url(configured, scheme)
    lines = [headline, f"  web GUI:    {url}/ui/", f"  admin key:  {admin_key}"]
    exports = exports_for_clients(configured, url)
    if exports:
        lines += ["  in another shell, for the CLI, the SDK and the examples:", f"    export {exports}"]
    click.echo("\n".join(lines))


def exports_for_clients(configured: Settings, url: str) -> str | None:
    """`DATA_DIR=… [DATABASE_URL=…] COLLABORATION_BUS_URL=…` when any of HOST, PORT, DATA_DIR or DATABASE_URL is
    not its default, else None (a client's defaults find the bus). A DATABASE_URL's password is left out."""
    defaults = Settings.from_env({})
    database_url = os.environ.get("DATABASE_URL")
    if (configured.host, configured.port, configured.data_dir) == (defaults.host, defaults.port,
                                                                   defaults.data_dir) and not database_url:
        return None
    pairs = [("DATA_DIR", str(configured.data_dir.resolve()))]
    if database_url:
        pairs.append(("DATABASE_URL", describe_database(configured)))
    pairs.append(("COLLABORATION_BUS_URL", url))
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in pairs)
