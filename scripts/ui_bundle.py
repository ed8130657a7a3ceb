#!/usr/bin/env python3
"""The web GUI's generated files: write the bus's OpenAPI document for ui/ (`openapi PATH`), or check that the
committed ones — ui/openapi.json, ui/src/api/schema.d.ts and the bundle in app/ui_dist — are what the current
sources build (`check`; exit 1 naming what differs and how to refresh it). `make ui` and `make ui-check` run it.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UI = REPO / "ui"
BUNDLE = REPO / "app" / "ui_dist"
OPENAPI = UI / "openapi.json"
SCHEMA_TYPES = UI / "src" / "api" / "schema.d.ts"


def openapi_text() -> str:
    """The OpenAPI document as ui/openapi.json holds it (sorted keys, so a diff shows what changed)."""
    sys.path.insert(0, str(REPO))
    from app.api.openapi import build_document

    return json.dumps(build_document(), indent=1, sort_keys=True) + "\n"


def npx(*args: str) -> None:
    """Run a tool installed in ui/node_modules (never downloads one)."""
    subprocess.run(["npx", "--no-install", *args], cwd=UI, check=True)


def differing(expected: Path, built: Path) -> list[str]:
    """Files that differ between two trees (missing on either side included), as paths relative to them."""
    out = []
    comparison = filecmp.dircmp(expected, built)
    stack = [(comparison, Path())]
    while stack:
        node, prefix = stack.pop()
        out += [str(prefix / name) for name in node.left_only + node.right_only + node.funny_files]
        out += [str(prefix / name) for name in node.common_files
                if not filecmp.cmp(Path(node.left) / name, Path(node.right) / name, shallow=False)]
        stack += [(sub, prefix / name) for name, sub in node.subdirs.items()]
    return sorted(out)


def check() -> int:
    """0 when the committed API document, its types and the bundle are what the sources build, else 1."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="ui-check-") as tmp:
        document = Path(tmp) / "openapi.json"
        document.write_text(openapi_text())
        if not OPENAPI.exists() or OPENAPI.read_text() != document.read_text():
            problems.append(f"{OPENAPI.relative_to(REPO)} is not the bus's current OpenAPI document")
        types = Path(tmp) / "schema.d.ts"
        npx("openapi-typescript", str(document), "--output", str(types))
        if not SCHEMA_TYPES.exists() or SCHEMA_TYPES.read_bytes() != types.read_bytes():
            problems.append(f"{SCHEMA_TYPES.relative_to(REPO)} is not what openapi-typescript makes of it")
        built = Path(tmp) / "bundle"
        npx("vite", "build", "--logLevel", "warn", "--outDir", str(built), "--emptyOutDir")
        if not BUNDLE.exists():
            problems.append(f"{BUNDLE.relative_to(REPO)} is missing")
        else:
            problems += [f"app/ui_dist/{name} differs from the build of ui/" for name in differing(BUNDLE, built)]
    for problem in problems:
        print(f"ui-check: {problem}", file=sys.stderr)
    if problems:
        print("ui-check: run `make ui` and commit ui/ and app/ui_dist", file=sys.stderr)
        return 1
    print("ui-check: the committed GUI bundle and API types are what the sources build")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("openapi", help="write the OpenAPI document to PATH")
    write.add_argument("path", type=Path)
    commands.add_parser("check", help="compare the committed files with a fresh build (exit 1 when they differ)")
    args = parser.parse_args(argv)
    if args.command == "openapi":
        args.path.write_text(openapi_text())
        return 0
    return check()


if __name__ == "__main__":
    sys.exit(main())
