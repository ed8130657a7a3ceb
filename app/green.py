"""gevent monkey-patching for `collab-bus api` under gunicorn's gevent worker (API_WORKER_CLASS=gevent).

It must run before anything imports ssl, socket, threading or select (Flask imports ssl), so the command's entry
module, app/cli/__init__.py (the console script `collab-bus` and `python -m app.cli` both load it first), calls
`patch_for_api_command()` before it imports anything else; the `app` package module imports nothing, and this
module only the standard library modules it needs to decide. No other process is patched.
"""

from __future__ import annotations

import os
import sys

WORKER_CLASSES = ("gevent", "gthread")
DEFAULT_WORKER_CLASS = "gevent"
_ENTRY_NAMES = ("collab-bus", "-m")  # the console script, `python -m app.cli` (argv[0] is "-m" while app loads)


def runs_api_under_gevent(argv: list[str], environ) -> bool:
    """True when this process is `collab-bus api` with API_WORKER_CLASS gevent (the default)."""
    if len(argv) < 2 or os.path.basename(argv[0]) not in _ENTRY_NAMES or argv[1] != "api":
        return False
    return (environ.get("API_WORKER_CLASS") or DEFAULT_WORKER_CLASS).strip().lower() == "gevent"


def patch_for_api_command() -> bool:
    """Monkey-patch the standard library for gevent when this process is `collab-bus api` on the gevent worker,
    so the gunicorn master and its forked workers run on patched modules from the start (the worker patches
    again in its init_process: a no-op then, without MonkeyPatchWarning), greenlets not tracking their spawning
    tree. True when it patched."""
    if not runs_api_under_gevent(sys.argv, os.environ):
        return False
    from gevent import config, monkey

    # Greenlets record who spawned them and from where (debugging aids): ~1 KiB more for every open socket.
    config.track_greenlet_tree = False
    monkey.patch_all()
    return True


def is_patched() -> bool:
    """True when threading has been monkey-patched by gevent in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))
