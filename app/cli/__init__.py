"""The `collab-bus` command.

Each module of this package owns its commands (or command group); this one builds the top-level group and adds
them. Running the bus: `up`, `api`, `worker`, `beat` (app.cli.run); its database and keys, directly: `db`, `keys`;
operating a running bus over its API: `send`, `tail`, `status`, `sandboxes`, `workspaces`, `dlq`.
"""

from __future__ import annotations

import click

from app.cli import db, dlq, keys, messages, run, sandboxes, status, workspaces
from app.cli.process import BusGroup


@click.group(cls=BusGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """AInTandem Collaboration Bus.

    Configuration comes from environment variables (DATABASE_URL, MESSAGE_BACKEND, REDIS_URL,
    BROKER_URL, LOG_LEVEL, ...; see the README). Run `collab-bus COMMAND --help` for each command.
    """


for command in (run.up, run.api, run.worker, run.beat, db.db, keys.keys, messages.send, messages.tail,
                status.status, sandboxes.sandboxes, workspaces.workspaces, dlq.dlq):
    main.add_command(command)
