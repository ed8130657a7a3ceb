"""How every `collab-bus` command fails: one line on stderr, `collab-bus: …`, never a traceback, with exit status 2
for a usage or configuration error and 1 for the rest (130 for Ctrl-C).

The root group (BusGroup) maps whatever a command raises in this one place: click's usage errors, the commands'
own Failure, the bus's BusError and ConfigError, database, migration and OS errors, and anything unexpected. A
command therefore needs no try/except of its own to keep its failures to one line.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

import click
from click.core import ParameterSource

from app.config import ConfigError
from app.errors import BusError

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
USAGE_STATUSES = (400, 413)  # a BusError with these statuses is bad input: exit status 2


class Failure(click.ClickException):
    """A failure a command reports itself: `collab-bus: MESSAGE`, exit status `exit_code` (1 unless given)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


class BusGroup(click.Group):
    """The root group: every failure of every subcommand leaves as one line (see `report`)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with every exception reported by `report` when standalone (the normal case)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (Exception, KeyboardInterrupt) as exc:  # SystemExit passes: a command's own exit status
            sys.exit(report(exc))
        sys.exit(status or 0)


def report(exc: BaseException) -> int:
    """Print the one line describing `exc` on stderr (none for a broken pipe, help for a bare group); return the
    exit status."""
    for kind, describe in _DESCRIBERS:
        if isinstance(exc, kind()):
            line, status = describe(exc)
            break
    else:
        log.debug("unexpected error", exc_info=exc)  # LOG_LEVEL=DEBUG shows where it came from
        line, status = f"unexpected error: {type(exc).__name__}: {exc}", EXIT_FAILED
    if line:
        click.echo(f"collab-bus: {one_line(line)}", err=True)
    return status


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of blanks as single spaces."""
    return " ".join(str(text).split())


def _bare_group(exc: click.exceptions.NoArgsIsHelpError) -> tuple[None, int]:
    exc.show()  # a group run without a command: its help
    return None, exc.exit_code


def _usage(exc: click.UsageError) -> tuple[str, int]:
    """click's message, saying which environment variable a bad value came from, and where help is."""
    message = exc.format_message().rstrip(".")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    source = _environment_source(exc)
    if source:
        message += f" ({source} in the environment)"
    if exc.ctx is not None:
        message += f"; see '{exc.ctx.command_path} --help'"
    return message, EXIT_USAGE


def _environment_source(exc: click.UsageError) -> str | None:
    """`NAME=value` when the bad parameter's value came from environment variable NAME, else None."""
    param, ctx = getattr(exc, "param", None), exc.ctx
    if param is None or ctx is None or ctx.get_parameter_source(param.name) != ParameterSource.ENVIRONMENT:
        return None
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    for name in names:
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return None


def _aborted(exc: click.Abort) -> tuple[str, int]:
    if isinstance(exc.__cause__, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return "aborted: nothing was changed", EXIT_FAILED


def _bus_error(exc: BusError) -> tuple[str, int]:
    return exc.message, EXIT_USAGE if exc.status in USAGE_STATUSES else EXIT_FAILED


def _database_error(exc) -> tuple[str, int]:
    from app.cli.database_name import database_in_use

    return f"database error: {str(exc.orig).splitlines()[0]} ({database_in_use()})", EXIT_FAILED


def _os_error(exc: OSError) -> tuple[str | None, int]:
    if exc.errno == errno.EPIPE:  # `collab-bus … | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return None, EXIT_FAILED
    where = f" ({exc.filename})" if exc.filename else ""
    return f"error: {exc.strerror or exc}{where}", EXIT_FAILED  # e.g. a DATA_DIR that cannot be created


def _database_type():
    from sqlalchemy.exc import DBAPIError

    return DBAPIError


def _migration_type():
    from alembic.util import CommandError

    return CommandError


# In order: the first type that matches describes the exception (click's subclasses before their bases).
_DESCRIBERS = (
    (lambda: click.exceptions.NoArgsIsHelpError, _bare_group),
    (lambda: click.UsageError, _usage),
    (lambda: click.Abort, _aborted),
    (lambda: click.ClickException, lambda exc: (exc.format_message(), exc.exit_code)),
    (lambda: KeyboardInterrupt, lambda exc: ("interrupted", EXIT_INTERRUPTED)),
    (lambda: ConfigError, lambda exc: (f"configuration error: {exc}", EXIT_USAGE)),
    (lambda: BusError, _bus_error),
    (_database_type, _database_error),
    (_migration_type, lambda exc: (f"database migration: {exc}", EXIT_USAGE)),
    (lambda: OSError, _os_error),
)
