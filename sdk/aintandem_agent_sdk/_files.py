"""Small JSON files the SDK keeps next to each other (the cursor, the pending requests), written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON: a reader (or a restart after a crash) sees the old or the new file, never a
    half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)
