"""Shared pieces of the benchmark scripts in bench/: servers, traffic, CPU accounting, baselines, reports.

Importing the package puts the repository root on sys.path, so `app` and `tests.servers` import from the
scripts (which run as `python bench/<script>.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
