"""The README and the docs as a reader uses them: the README's walk-through and examples, and docs/quickstart.md, are
pasted into `bash -euo pipefail` against a fresh bus (`collab-bus up` on a free port with a new DATA_DIR, which
makes the admin key as `make run` does) with DATA_DIR and COLLABORATION_BUS_URL exported as the bus says; the README
stays small and links every doc; every relative link in README.md and docs/*.md points at a file (and heading) that
exists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.servers import BIN, REPO, end_process_group, free_port, wait_for

README = REPO / "README.md"
DOCS = REPO / "docs"
README_LIMIT = 12288  # bytes: a pitch, a quick start and links; the rest lives in docs/
# The README sections whose ```sh blocks run, in this order, on one bus (the test looks for these headings).
RUNNABLE_SECTIONS = ("Walk-through", "Examples")
# Documents that must exist and be linked from the README (docs/configuration.md is generated from the code).
DOC_MAP = ["docs/concepts.md", "docs/quickstart.md", "docs/security.md", "docs/configuration.md", "docs/cli.md",
           "docs/managed-sandboxes.md", "docs/operations.md", "docs/protocol.md", "docs/contributing.md",
           "docs/gui.md", "sdk/README.md", "ui/README.md", "bench/README.md"]
GENERATED = {DOCS / "configuration.md"}  # written by scripts/config_docs.py; excepted when absent


# ----------------------------------------------------------------- markdown

def section(markdown: str, heading: str) -> str:
    """The text under the `## heading` line (a heading that starts with `heading`), up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def sh_blocks(text: str) -> list[str]:
    """The bodies of the ```sh fenced blocks of `text`, in order."""
    return re.findall(r"^```sh\n(.*?)^```\s*$", text, re.M | re.S)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (but `-` and `_`), spaces → `-`."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (a repeated heading gets -1, -2 … as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the markdown links `[text](target)` of a file, outside code blocks and code spans."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# ----------------------------------------------------------------- a fresh bus, and bash

class FreshBus:
    """`collab-bus up` on a free port with an empty DATA_DIR and no preset key: the bus writes DATA_DIR/admin-api-key
    at its first start, as `make run` does."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="readme-bus-"))
        self.data_dir = self.dir / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env()
        self.log = self.dir / "up.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(BIN / "collab-bus"), "up", "--port", str(self.port), "--data-dir",
                                          str(self.data_dir)], env=self.env, cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self.healthy, 60, f"the bus to answer on {self.url}")
        except BaseException:
            self.stop()
            raise

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"collab-bus up exited: {self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def run(self, script: str, timeout: float = 240) -> subprocess.CompletedProcess:
        """Run `script` with `bash -euo pipefail` from the repository's root, with .venv/bin first on PATH and
        DATA_DIR and COLLABORATION_BUS_URL exported. Whatever it left running in the background is ended."""
        env = {**self.env, "DATA_DIR": str(self.data_dir), "COLLABORATION_BUS_URL": self.url}
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the script did not end within {timeout}s:\n{stdout}\n{stderr}") from None
        finally:
            try:
                os.killpg(proc.pid, 9)  # background jobs a failed script left behind (its group is its own)
            except ProcessLookupError:
                pass
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def stop(self) -> None:
        end_process_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def clean_env() -> dict[str, str]:
    """The test's environment less what would point the commands at another bus or another key."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"ADMIN_API_KEY", "AUTH_JWT_SECRET", "BUS_TOKEN", "COLLAB_BUS_URL", "COLLABORATION_BUS_URL",
                        "DATA_DIR", "DATABASE_URL", "MESSAGE_BACKEND", "SANDBOX_ID", "WORKSPACE", "HOST", "PORT"}}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING"}


@pytest.fixture
def fresh_bus():
    bus = FreshBus()
    yield bus
    bus.stop()


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# ----------------------------------------------------------------- the README

def test_the_readme_is_small_and_starts_with_make_run_and_make_test():
    assert len(README.read_bytes()) <= README_LIMIT, f"README.md is {len(README.read_bytes())} bytes"
    first = sh_blocks(README.read_text())[0]
    assert [line.split()[:2] for line in first.splitlines()] == [["make", "run"], ["make", "test"]], first


def test_the_readme_links_every_doc():
    linked = {(README.parent / target.split("#")[0]).resolve() for target in links(README)}
    missing = [doc for doc in DOC_MAP if (REPO / doc).resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"
    unlisted = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not unlisted, f"docs/ holds documents the README does not link: {unlisted}"
    text = README.read_text()
    assert "/api/docs" in text and "/api/v1/openapi.json" in text  # the HTTP endpoints: documented once, there


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_what_exists(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        file = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not file.exists():
            if file not in GENERATED:
                broken.append(target)
            continue
        if fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(target)
    assert not broken, f"{path.relative_to(REPO)}: broken links {broken}"


def test_the_readme_walk_through_and_examples_run_on_a_fresh_bus(fresh_bus):
    text = README.read_text()
    walk_through, examples = ("\n".join(sh_blocks(section(text, heading))) for heading in RUNNABLE_SECTIONS)
    assert "make run" not in walk_through + examples  # the bus runs already (here: the fixture's)

    result = fresh_bus.run(walk_through)
    assert result.returncode == 0, explain(result)
    out = result.stdout
    assert re.search(r'"message_id":"[0-9a-f]{32}","status":"accepted"', out), out  # the 202 of the send
    assert '"code":"unknown_sandbox"' in out and '"code":"unauthorized"' in out, out  # the errors, as JSON
    assert "team-a/planner → team-b" in out, out  # collab-bus tail printed the entry
    assert '"state":"acked"' in out, out  # … acknowledged it, and the delivery report says so

    result = fresh_bus.run(examples)
    assert result.returncode == 0, explain(result)
    out = result.stdout
    assert "planner: answer about 'vector databases':" in out and "  - its longest word is 'protocols'" in out, out
    assert "Report on vector databases" in out and "Report on agent protocols" in out, out
    assert "planner: sb-team-researcher-" in out, out  # the team's requests went to the team's researchers


# ----------------------------------------------------------------- docs/quickstart.md

def test_the_quickstart_runs_on_a_fresh_bus(fresh_bus):
    script = "\n".join(sh_blocks((DOCS / "quickstart.md").read_text()))
    result = fresh_bus.run(script)
    assert result.returncode == 0, explain(result)
    out = result.stdout
    for expected in ('"status":"accepted"', '"state":"acked"', '"code":"unknown_sandbox"', '"code":"unauthorized"',
                     '"code":"sandbox_mismatch"', '"code":"validation_error"', '"code":"forbidden"',
                     '"code":"workspace_mismatch"', "Idempotent-Replayed: true"):
        assert expected in out, f"{expected} not in the output:\n{explain(result)}"
