#!/usr/bin/env python3
"""docs/configuration.md, generated from the declarations of the settings in app/config.py and the options of the
`collab-bus` commands that read an environment variable: `python scripts/config_docs.py` writes it;
`python scripts/config_docs.py --check` exits 1 with one line when the committed file is not what they give.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import Field, fields
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: the bus's packages come from this checkout

from app.cli import main as collab_bus  # noqa: E402
from app.config import Settings  # noqa: E402
from app.config_fields import declaration, env_names  # noqa: E402

Options = dict[str, tuple[click.Option, list[str]]]  # variable → (the option, the top-level commands having it)
DOC = REPO / "docs" / "configuration.md"
REGENERATE = "python scripts/config_docs.py"

INTRO = f"""\
# Configuration

The bus reads its settings from environment variables when a command starts: `collab-bus up`, `api`, `worker`,
`beat` and the management commands read the same ones. A few are also options of the commands, and an option
given on the command line wins over its variable: `collab-bus up --port 9000 --data-dir /srv/bus` overrides `PORT`
and `DATA_DIR` (`collab-bus COMMAND --help` lists each command's options). A value that cannot work stops the
command at start with one line, such as
`collab-bus: configuration error: PORT must be an integer, got 'eighty'` (exit code 2).
`GET /api/v1/configuration` (the web GUI's Configuration page) shows the values a running bus uses, each next to
its default, secrets hidden.

This file is generated from the settings' declarations in `app/config.py` (environment variable, accepted
values, default and help text, each written once there) and from the command options that read a variable of
their own: do not edit it by hand. After changing either, regenerate it with `{REGENERATE}`
(`make test` fails while it is stale).
"""


def _command_options() -> Iterator[tuple[str, str, click.Option]]:
    """(variable, top-level command, click option) for each option of `collab-bus` read from a variable."""

    def walk(command: click.Command, top: str) -> Iterator[tuple[str, str, click.Option]]:
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                for variable in [param.envvar] if isinstance(param.envvar, str) else param.envvar:
                    yield variable, top, param
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, top or name)

    yield from walk(collab_bus, "")


def _options_by_variable() -> Options:
    """Each variable some command option reads → (the option, the top-level commands that have it, in order)."""
    found: Options = {}
    for variable, command, option in _command_options():
        _, commands = found.setdefault(variable, (option, []))
        if command not in commands:
            commands.append(command)
    return found


def _header(*titles: str) -> list[str]:
    """The two lines that start a Markdown table with these column titles."""
    return ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]


def _row(*cells: str) -> str:
    """A Markdown table row: each cell on one line, its pipes escaped."""
    return "| " + " | ".join(" ".join(cell.split()).replace("|", "\\|") for cell in cells) + " |"


def _commands(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _default(setting: Field) -> str:
    """The setting's default as the docs show it: its `shown_default`, else the value in Markdown code."""
    if declaration(setting).shown_default is not None:
        return declaration(setting).shown_default
    value = setting.default
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _what_it_does(setting: Field) -> str:
    """The setting's help text, and for a secret that the configuration endpoint hides it."""
    declared = declaration(setting)
    if declared.secret:
        return declared.help + " A secret: `GET /api/v1/configuration` shows only whether it is set."
    return declared.help


def _settings_tables() -> list[str]:
    """A heading, introduction and table for each section, its settings in declaration order."""
    lines: list[str] = []
    section = None
    for setting in fields(Settings):
        declared = declaration(setting)
        if declared.section is not section:
            section = declared.section
            lines += ["", f"## {section.title}", "", section.intro, "",
                      *_header("Variable", "Default", "Accepts", "What it does")]
        lines.append(_row(f"`{declared.envvar}`", _default(setting), declared.kind.accepts, _what_it_does(setting)))
    return lines


def _option_default(option: click.Option) -> str:
    """What `--help` shows as the option's default, or – when it has none or works it out as the command runs."""
    if isinstance(option.show_default, str):
        return f"`{option.show_default}`"
    if isinstance(option.default, (str, int, float)) and not isinstance(option.default, bool):
        return f"`{option.default}`"
    return "–"


def _options_table() -> list[str]:
    """The section on the variables that command options read and no setting declares."""
    settings = set(env_names(Settings).values())
    lines = ["", "## Options of the commands", "",
             "Variables that only a command option reads, as its default (`collab-bus COMMAND --help` shows them too).",
             "", *_header("Variable", "Option", "Commands", "Default", "What it does")]
    for variable, (option, commands) in _options_by_variable().items():
        if variable not in settings:
            lines.append(_row(f"`{variable}`", f"`{option.opts[0]}`", _commands(commands), _option_default(option),
                              option.help or ""))
    return lines


def render() -> str:
    """The text docs/configuration.md should hold."""
    return INTRO + "\n".join(_settings_tables() + _options_table()) + "\n"


def check(path: Path = DOC) -> int:
    """0 when `path` holds what `render` gives; else 1, after one line on stderr saying how to regenerate it."""
    if path.exists() and path.read_text(encoding="utf-8") == render():
        return 0
    state = "stale" if path.exists() else "missing"
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"{shown} is {state}: regenerate it with `{REGENERATE}`", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Write docs/configuration.md, or with --check only compare it."""
    parser = argparse.ArgumentParser(description="Write docs/configuration.md from the settings' declarations.")
    parser.add_argument("--check", action="store_true", help="exit 1 (one line on stderr) when the file is stale")
    if parser.parse_args(argv).check:
        return check()
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
