"""The `collab-bus` command.

Each module of this package owns its commands (or command group); this one builds the top-level group and adds
them. Running the bus: `up`, `api`, `worker`, `beat` (app.cli.run); its database and keys, directly: `db`, `keys`;
operating a running bus over its API: `send`, `tail`, `status`, `sandboxes`, `workspaces`, `dlq`. How every
command fails (one line): app.cli.errors.
"""

from __future__ import annotations

from app.green import patch_for_api_command

patch_for_api_command()  # first: `collab-bus api` on gevent patches before anything imports ssl (app/green.py)

import click  # noqa: E402

from app.cli import db, dlq, keys, messages, run, sandboxes, status, workspaces  # noqa: E402
from app.cli.errors import BusGroup  # noqa: E402

PACKAGE = "aintandem-collab-bus"


@click.group(cls=BusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=PACKAGE, prog_name="collab-bus", message="%(prog)s %(version)s",
                      help="Show the version of the installed bus and exit.")
def main() -> None:
    """AInTandem Collaboration Bus.

    Configuration comes from environment variables (DATA_DIR, DATABASE_URL, MESSAGE_BACKEND, REDIS_URL,
    BROKER_URL, LOG_LEVEL, ...; see docs/configuration.md). The commands that talk to a running bus find it at
    COLLABORATION_BUS_URL (or --url). Run `collab-bus COMMAND --help` for each command.

    Every failure is one line on stderr, `collab-bus: ...`: exit status 2 for a usage or configuration error,
    1 for the rest.
    """


for command in (run.up, run.api, run.worker, run.beat, db.db, keys.keys, messages.send, messages.tail,
                status.status, sandboxes.sandboxes, workspaces.workspaces, dlq.dlq):
    main.add_command(command)
