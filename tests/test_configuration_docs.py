"""Each setting is declared once, in app/config.py: an environment variable of its own, the kind of value it takes,
its default and a help text. `Settings.from_env` reads every one of them, and docs/configuration.md is what
scripts/config_docs.py generates from them (a stale file fails this test, and so `make test`)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from app.config import ConfigError, Settings
from app.config_fields import Choice, Flag, Integer, Number, declaration, env_names

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "scripts" / "config_docs.py"
DOC = REPO / "docs" / "configuration.md"


def generator():
    """scripts/config_docs.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("config_docs", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_configuration_docs_are_what_the_declarations_generate():
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_stale_file_is_one_line_that_says_how_to_regenerate_it(tmp_path, capsys):
    docs = generator()
    stale = tmp_path / "configuration.md"
    stale.write_text(docs.render().replace("`ACK_TIMEOUT` | `30`", "`ACK_TIMEOUT` | `60`"), encoding="utf-8")
    assert docs.check(stale) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is stale: regenerate it with `python scripts/config_docs.py`" in lines[0], lines
    assert docs.check(tmp_path / "missing.md") == 1 and "is missing" in capsys.readouterr().err


def test_every_setting_has_an_environment_variable_of_its_own_and_a_help_text():
    names = env_names(Settings)
    assert len(set(names.values())) == len(names) == len(fields(Settings))
    for setting in fields(Settings):
        declared = declaration(setting)
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", declared.envvar), setting.name
        assert declared.help.strip().endswith("."), f"{declared.envvar}: help should be sentences"
        assert declared.section.title and declared.kind.accepts


def test_the_docs_give_every_variable_its_default_and_help():
    text = DOC.read_text(encoding="utf-8")
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| `")}
    for setting in fields(Settings):
        declared = declaration(setting)
        assert declared.help in rows[f"| `{declared.envvar}`"]
    assert "| `DATABASE_URL` | `sqlite:///$DATA_DIR/collab-bus.db` |" in text
    assert "| `PORT` | `8000` | integer 1–65535 |" in text
    assert "| `TLS_CERTFILE` | `--certfile` | `up`, `api` |" in text  # a command option, not a setting


class RecordingEnvironment(dict):
    """An environment that remembers which variables were looked up."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def get(self, key, default=None):
        self.asked.append(key)
        return super().get(key, default)


def test_from_env_reads_each_setting_from_its_declared_variable_and_defaults_agree():
    environment = RecordingEnvironment()
    assert Settings.from_env(environment) == Settings()
    assert sorted(environment.asked) == sorted(env_names(Settings).values())


CHECKED_KINDS = (Integer, Number, Flag, Choice)


@pytest.mark.parametrize("variable", [declaration(setting).envvar for setting in fields(Settings)
                                      if isinstance(declaration(setting).kind, CHECKED_KINDS)])
def test_a_value_of_the_wrong_kind_is_one_error_naming_its_variable(variable):
    with pytest.raises(ConfigError, match=f"^{variable} must be ") as refused:
        Settings.from_env({variable: "not-a-value"})
    assert "\n" not in str(refused.value)
