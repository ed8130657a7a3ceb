"""The web GUI at /ui: the built single-page application (app/ui_dist, built from ui/ by `make ui`) served as
static files, with every client-side route answered by its index.html.

The pages are open (they hold no data); the application signs in with an API key and then uses the public REST
and WebSocket API like any client. Hashed assets are cached for good, the rest revalidated; a Content Security
Policy keeps the pages to the bus's own origin.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from flask import Blueprint, send_from_directory

from app.errors import NotFound, Unavailable

BUNDLE = Path(__file__).parent / "ui_dist"
PREFIX = "/ui"
_IMMUTABLE = "public, max-age=31536000, immutable"  # assets/ names carry a hash of their content
_SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; "
                                "worker-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

bp = Blueprint("ui", __name__)


def is_ui_path(path: str) -> bool:
    """True for the GUI's URLs (open: no token needed)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@bp.get(PREFIX)
@bp.get(PREFIX + "/")
@bp.get(PREFIX + "/<path:path>")
def serve(path: str = ""):
    """A file of the GUI's bundle, or its index.html for a client-side route (a path without a file suffix)."""
    if not (BUNDLE / "index.html").is_file():
        raise Unavailable("the web GUI is not built into this installation (app/ui_dist is missing): run `make ui`",
                          code="ui_not_built")
    if path and (BUNDLE / path).is_file():
        response = send_from_directory(BUNDLE, path, max_age=None)
        cache = _IMMUTABLE if path.startswith("assets/") else "no-cache"
    elif PurePosixPath(path).suffix:  # a file the bundle does not have: not a page
        raise NotFound(f"the web GUI has no file {path!r}", details={"path": path})
    else:
        response = send_from_directory(BUNDLE, "index.html", max_age=None)
        cache = "no-cache"
    response.headers["Cache-Control"] = cache
    response.headers.update(_SECURITY_HEADERS)
    return response
