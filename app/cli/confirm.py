"""The one convention of the destructive commands (dlq purge and bulk replay, workspaces rm, sandboxes rm, keys
revoke): they ask first when run at a terminal; `--yes` / `-y` skips the question; without a terminal and without
--yes they refuse, in one line, instead of guessing."""

from __future__ import annotations

import sys

import click

from app.cli.errors import EXIT_USAGE, Failure

YES_OPTION = click.option("--yes", "-y", is_flag=True,
                          help="Do not ask for confirmation (needed when stdin is not a terminal).")


def confirm(action: str, yes: bool) -> None:
    """Return when `action` (e.g. "purge 3 dead letters") may go ahead: `yes`, or the person at the terminal says
    so. Declined: click.Abort (exit status 1); no terminal to ask: Failure with exit status 2, naming --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Failure(f"not going to {action} without confirmation: pass --yes (stdin is not a terminal, so "
                      "there is no one to ask)", EXIT_USAGE)
    click.confirm(f"{action[:1].upper()}{action[1:]}?", abort=True)
