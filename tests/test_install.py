"""The dependency locks (requirements/*.txt) and what `make` installs from them.

- requirements/runtime.txt pins, with hashes, every runtime dependency of the bus and the agent SDK (and of their
  extras), within pyproject.toml's bounds, and no test tool;
- requirements/test.txt is the runtime lock (same versions, same hashes) plus the test extras;
- `make run` installs the runtime lock only, `make test` both, and the install stamps notice a changed lock
  (read from `make -n`: nothing is installed here).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
TEST_LOCK = ROOT / "requirements" / "test.txt"
TEST_ONLY = {"pytest", "schemathesis", "hypothesis", "pyyaml", "jsonschema-rs", "iniconfig", "pluggy"}


def read_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Package name → (pinned version, its sha256 hashes), from a pip-compile --generate-hashes file."""
    entries = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        assert not requirement.startswith("-"), f"{path.name}: unexpected option {line!r} (an index, -e, ...)"
        name, separator, version = requirement.partition("==")
        assert separator and ";" not in line, f"{path.name}: {requirement!r} is not pinned with == (or has a marker)"
        hashes = frozenset(option.split(":", 1)[1] for option in options if option.startswith("--hash=sha256:"))
        assert hashes and len(hashes) == len(options), f"{path.name}: {name} needs sha256 hashes only"
        entries[canonicalize_name(name)] = (version, hashes)
    assert entries, f"{path.name} pins nothing"
    return entries


def project(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def runtime_requirements() -> list[Requirement]:
    """What the bus, the agent SDK and requirements/runtime.in (the install step, ...) need at run time."""
    extra = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements" / "runtime.in").read_text().splitlines()]
    return [Requirement(text) for text in (*project(ROOT / "pyproject.toml")["dependencies"],
                                           *project(ROOT / "sdk" / "pyproject.toml")["dependencies"],
                                           *filter(None, extra))]


def test_requirements_of_extras():
    """The helper below finds what an extra adds (kombu[redis] → redis), so the check using it is not vacuous."""
    assert "redis" in extra_requirements(Requirement("kombu[redis]"))
    assert "psycopg-binary" in extra_requirements(Requirement("psycopg[binary]"))


def extra_requirements(requirement: Requirement) -> set[str]:
    """The packages `requirement`'s extras add, read from the installed distribution's metadata."""
    names = set()
    for text in importlib.metadata.requires(requirement.name) or []:
        extra_requirement = Requirement(text)
        marker = extra_requirement.marker
        if marker and any(marker.evaluate({"extra": extra}) for extra in requirement.extras):
            names.add(canonicalize_name(extra_requirement.name))
    return names


def test_runtime_lock_pins_every_runtime_dependency_within_its_bounds():
    lock = read_lock(RUNTIME_LOCK)
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} ({requirement}) is not in {RUNTIME_LOCK.name}: run `make lock`"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{RUNTIME_LOCK.name} pins {name}=={version}, outside pyproject's {requirement}: run `make lock`"
        for extra_name in extra_requirements(requirement):
            assert extra_name in lock, f"{requirement} needs {extra_name}, which {RUNTIME_LOCK.name} lacks"


# Python 3.11 releases the locks must install on: a dependency may need a package on some of them only (redis-py
# needs async-timeout before 3.11.3), and pip-compile keeps only what the interpreter it ran on needs.
PYTHON_311_RELEASES = ["3.11.0", "3.11.2", "3.11.3", "3.11.7", "3.11.15"]


@pytest.mark.parametrize("path", [RUNTIME_LOCK, TEST_LOCK], ids=lambda p: p.name)
def test_the_lock_installs_on_every_python_311_on_linux(path):
    """Each locked package's own requirements are locked too, for every 3.11 release (CPython, Linux)."""
    lock = read_lock(path)
    missing = set()
    for name in lock:
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} is locked but not installed here: run `make install-test`")
        for text in requires:
            requirement = Requirement(text)
            for release in PYTHON_311_RELEASES:
                environment = {"python_full_version": release, "python_version": "3.11", "sys_platform": "linux",
                               "platform_system": "Linux", "implementation_name": "cpython",
                               "platform_python_implementation": "CPython", "extra": ""}
                if requirement.marker is None or requirement.marker.evaluate(environment):
                    if canonicalize_name(requirement.name) not in lock:
                        missing.add(f"{requirement.name} (for {name} on Python {release})")
    assert not missing, f"{path.name} lacks {sorted(missing)}: add them to requirements/runtime.in, `make lock`"


def test_runtime_lock_holds_no_test_tool():
    lock = read_lock(RUNTIME_LOCK)
    test_extras = {canonicalize_name(Requirement(text).name)
                   for text in project(ROOT / "pyproject.toml")["optional-dependencies"]["test"]}
    assert {"pytest", "schemathesis", "pyyaml"} <= test_extras
    runtime = {canonicalize_name(r.name) for r in runtime_requirements()}
    assert not (TEST_ONLY | test_extras - runtime) & set(lock), "test tools in the runtime lock"
    assert "pyyaml" not in runtime, "pyyaml is a test dependency (the bus never imports yaml)"
    assert {"websockets", "httpx", "kombu", "redis", "tzdata"} <= set(lock)  # `collab-bus tail` needs websockets


def test_test_lock_is_the_runtime_lock_plus_the_test_tools():
    runtime, test = read_lock(RUNTIME_LOCK), read_lock(TEST_LOCK)
    different = {name: (entry[0], test.get(name, ("missing",))[0]) for name, entry in runtime.items()
                 if test.get(name) != entry}
    assert not different, f"{TEST_LOCK.name} disagrees with {RUNTIME_LOCK.name}: {different}"
    for text in project(ROOT / "pyproject.toml")["optional-dependencies"]["test"]:
        requirement = Requirement(text)
        version = test[canonicalize_name(requirement.name)][0]
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} vs {version}"
    assert TEST_ONLY <= set(test)


def test_the_installed_packages_are_the_locked_versions():
    """This virtualenv was installed from the locks (`make test`): what it runs is what they pin."""
    lock = read_lock(TEST_LOCK)
    wrong = {}
    for name, (version, _) in lock.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from {TEST_LOCK.name} (locked, installed): {wrong}"


# --- what make installs ------------------------------------------------------------------------------------------

def make_dry_run(target: str, venv: Path) -> str:
    """The commands `make TARGET` would run with VENV=venv (make -n: printed, not run)."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "MAKEFLAGS": ""})
    assert done.returncode == 0, done.stderr
    return done.stdout


def pip_installs(commands: str) -> list[str]:
    return [line for line in commands.splitlines() if re.search(r"-m pip install", line)]


@pytest.fixture
def make_available():
    if subprocess.run(["make", "--version"], capture_output=True).returncode != 0:
        pytest.skip("make is not installed")


def test_make_run_installs_the_runtime_lock_only(tmp_path, make_available):
    installs = pip_installs(make_dry_run("run", tmp_path / "venv"))
    assert any("--require-hashes -r requirements/runtime.txt" in line for line in installs), installs
    assert any("--no-deps" in line and "-e ." in line and "-e ./sdk" in line for line in installs), installs
    assert not any("test.txt" in line or "[test]" in line for line in installs), installs
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs), installs


def test_make_test_installs_both_locks(tmp_path, make_available):
    installs = pip_installs(make_dry_run("test", tmp_path / "venv"))
    assert any("--require-hashes -r requirements/runtime.txt" in line for line in installs), installs
    assert any("--require-hashes -r requirements/test.txt" in line for line in installs), installs


def test_the_install_stamps_follow_the_locks(tmp_path, make_available):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    runtime_stamp, test_stamp = venv / ".runtime-installed", venv / ".test-installed"
    runtime_stamp.touch()
    # A venv made by `make run`: `make run` installs nothing more, `make test` adds the test lock only.
    assert pip_installs(make_dry_run("run", venv)) == []
    installs = pip_installs(make_dry_run("test", venv))
    assert len(installs) == 1 and "requirements/test.txt" in installs[0], installs
    test_stamp.touch()
    assert pip_installs(make_dry_run("test", venv)) == []
    # A lock newer than the stamps (`make lock`, a pull): both install again.
    old = RUNTIME_LOCK.stat().st_mtime - 3600
    os.utime(runtime_stamp, (old, old))
    os.utime(test_stamp, (old, old))
    assert len(pip_installs(make_dry_run("run", venv))) == 2
    assert any("requirements/test.txt" in line for line in pip_installs(make_dry_run("test", venv)))
