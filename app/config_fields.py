"""How a setting of `app.config.Settings` is declared once: its environment variable, the kind of value it takes
(with its bounds or choices), its default and its help text, all in the dataclass field's metadata. From those
declarations `read_settings` reads the environment, `env_names` names each setting's variable (for
GET /api/v1/configuration) and scripts/config_docs.py writes docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

DECLARATION = "setting"  # the key of a field's metadata that holds its Declaration


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message is one line for the operator."""


class Kind:
    """What a setting's variable may hold: `parse` turns its text into the value or raises a one-line
    ConfigError; `accepts` says what it takes, for the documentation."""

    accepts = "text"

    def given(self, text: str) -> bool:
        """Whether `text` sets the variable (else the setting keeps its default). Empty text never does."""
        return bool(text)

    def parse(self, name: str, text: str) -> Any:
        """The value `text` gives the setting read from variable `name`."""
        return text


@dataclass(frozen=True)
class Integer(Kind):
    """A whole number from `minimum` up to `maximum` (None: no upper bound)."""

    minimum: int = 0
    maximum: int | None = None

    @property
    def accepts(self) -> str:
        return f"integer ≥ {self.minimum}" if self.maximum is None else f"integer {self.minimum}–{self.maximum}"

    def parse(self, name: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {text!r}") from None
        if value < self.minimum:
            raise ConfigError(f"{name} must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{name} must be at most {self.maximum}, got {value}")
        return value


@dataclass(frozen=True)
class Number(Kind):
    """A finite number above zero, or zero and above when `zero_ok`."""

    zero_ok: bool = False

    @property
    def accepts(self) -> str:
        return "number ≥ 0" if self.zero_ok else "number > 0"

    def parse(self, name: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number, got {text!r}")
        if value < 0 or (value == 0 and not self.zero_ok):
            raise ConfigError(f"{name} must be {'zero or more' if self.zero_ok else 'positive'}, got {text}")
        return value


class Flag(Kind):
    """true or false (also 1/0, yes/no, on/off, in any case); blank text keeps the default."""

    accepts = "true or false"

    def given(self, text: str) -> bool:
        return bool(text.strip())

    def parse(self, name: str, text: str) -> bool:
        word = text.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {text!r}")


@dataclass(frozen=True)
class Choice(Kind):
    """One of `choices`, in any case (stored in upper case when `upper`, else in lower case)."""

    choices: tuple[str, ...]
    upper: bool = False

    @property
    def accepts(self) -> str:
        return ", ".join(f"`{choice}`" for choice in self.choices)

    def parse(self, name: str, text: str) -> str:
        value = text.upper() if self.upper else text.lower()
        if value not in self.choices:
            raise ConfigError(f"{name} must be one of {', '.join(self.choices)}; got {text!r}")
        return value


class Location(Kind):
    """A file system path."""

    accepts = "path"

    def parse(self, name: str, text: str) -> Path:
        return Path(text)


class Text(Kind):
    """Any text, kept as given; `accepts` names what it should be, for the documentation."""

    def __init__(self, accepts: str = "text") -> None:
        self.accepts = accepts


TEXT = Text()
URL = Text("URL")
ADDRESS = Text("host name or IP address")
FLAG = Flag()
PATH = Location()


@dataclass(frozen=True)
class Section:
    """A topic of docs/configuration.md: its title and a sentence or two introducing its settings."""

    title: str
    intro: str

    def setting(self, default: Any, kind: Kind = TEXT, *, envvar: str, help: str, secret: bool = False,
                shown_default: str | None = None, default_from: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """A Settings field read from `envvar` as `kind`, documented under this section with `help`.

        A `secret` is never shown, only whether it is set. `shown_default` replaces the default in the
        documentation (for a default worked out at run time); `default_from(values)` computes the default from the
        settings read before this one."""
        declaration = Declaration(envvar, kind, help, self, secret, shown_default, default_from)
        return field(default=default, metadata={DECLARATION: declaration})


@dataclass(frozen=True)
class Declaration:
    """Everything the bus knows about one setting besides its field name, type and default."""

    envvar: str
    kind: Kind
    help: str
    section: Section
    secret: bool = False
    shown_default: str | None = None
    default_from: Callable[[dict[str, Any]], Any] | None = None


def declaration(setting: Field) -> Declaration:
    """The declaration of a Settings field (KeyError names a field declared without `Section.setting`)."""
    return setting.metadata[DECLARATION]


def read_settings(settings_class: type, env: Mapping[str, str]) -> dict[str, Any]:
    """Each field of `settings_class` read from `env` through its declaration, in declaration order: its default
    when the variable is unset or empty, else its text parsed (ConfigError names the variable and the problem)."""
    values: dict[str, Any] = {}
    for setting in fields(settings_class):
        declared = declaration(setting)
        text = env.get(declared.envvar)
        if text is not None and declared.kind.given(text):
            values[setting.name] = declared.kind.parse(declared.envvar, text)
        elif declared.default_from is not None:
            values[setting.name] = declared.default_from(values)
        else:
            values[setting.name] = setting.default
    return values


def env_names(settings_class: type) -> dict[str, str]:
    """Each field name of `settings_class` → the environment variable that sets it."""
    return {setting.name: declaration(setting).envvar for setting in fields(settings_class)}


def secret_names(settings_class: type) -> frozenset[str]:
    """The field names of `settings_class` declared secret."""
    return frozenset(setting.name for setting in fields(settings_class) if declaration(setting).secret)


SERVER = Section("Server", "Where the API listens and how `collab-bus api` serves its connections.")
STORAGE = Section("Storage and broker", "Where the bus keeps its records, and the broker that carries its tasks and "
                                        "live notifications between processes.")
DELIVERY = Section("Delivery", "How messages are routed, pushed again until acknowledged, and dead-lettered; "
                               "the periodic sweeps of `collab-bus beat` and the Celery workers' knobs.")
LIMITS = Section("Limits and runaway guards", "What one send may carry, how fast callers may go, and the guards "
                                              "that stop a loop between agents or a backlog the workers cannot clear.")
SECURITY = Section("Authentication and security", "API keys, sandbox tokens and how callers are told apart.")
SOCKETS = Section("Sockets", "The WebSocket mailboxes sandboxes hold open to receive their messages live.")
SANDBOXES = Section("Managed sandboxes", "Sandboxes the bus runs itself as containers on a container engine, "
                                         "and the reconciler that keeps them in the state asked for.")
OBSERVABILITY = Section("Observability", "Logs, Prometheus metrics and Celery task events.")
