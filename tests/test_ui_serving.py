"""The web GUI's bundle served at /ui by an in-process app: files from the bundle (hashed assets cached for good,
the rest revalidated), index.html for client-side routes, 404 for files it lacks (no path escapes the bundle),
open without a token, a Content Security Policy that keeps the pages to the bus's origin, and a clear 503 when
the bundle is not built."""

from __future__ import annotations

import pytest

from app import ui
from app.composition import create_app
from app.config import Settings
from tests.servers import TEST_JWT_SECRET


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path_factory.mktemp("ui")), "MESSAGE_BACKEND": "memory",
                                  "AUTH_JWT_SECRET": TEST_JWT_SECRET})
    app = create_app(settings, start_listener=False)
    yield app
    app.extensions["bus"].db.dispose()


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A small bundle in a directory of its own, in place of app/ui_dist."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>Collaboration Bus</title><div id=root></div>")
    (tmp_path / "assets" / "index-3f2a1b.js").write_text("console.log('app')")
    (tmp_path / "sw.js").write_text("self.addEventListener('fetch', () => {})")
    monkeypatch.setattr(ui, "BUNDLE", tmp_path)
    return tmp_path


def test_pages_and_files_are_served_without_a_token(app, bundle):
    client = app.test_client()
    for path in ("/ui", "/ui/", "/ui/sandboxes", "/ui/traces/abc123?sandbox=x"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "<title>Collaboration Bus</title>" in answer.get_data(as_text=True)
        assert answer.headers["Cache-Control"] == "no-cache"
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    asset = client.get("/ui/assets/index-3f2a1b.js")
    assert asset.status_code == 200 and asset.get_data(as_text=True) == "console.log('app')"
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert client.get("/ui/sw.js").headers["Cache-Control"] == "no-cache"  # a new service worker is picked up


def test_missing_files_are_404_and_nothing_outside_the_bundle_is_served(app, bundle):
    client = app.test_client()
    (bundle.parent / "secret.txt").write_text("not for you")
    for path in ("/ui/assets/gone-000.js", "/ui/../secret.txt", "/ui/%2e%2e/secret.txt", "/ui/favicon.ico"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "not for you" not in answer.get_data(as_text=True)
    assert client.get("/ui/assets/gone-000.js").get_json()["error"]["code"] == "not_found"


def test_the_api_still_needs_a_token(app, bundle):
    assert app.test_client().get("/api/v1/sandboxes").status_code == 401


def test_without_a_bundle_the_gui_says_how_to_build_it(app, tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "BUNDLE", tmp_path / "missing")
    answer = app.test_client().get("/ui/")
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "ui_not_built" and "make ui" in error["message"]


def test_the_package_ships_the_built_bundle(tmp_path):
    """A wheel of the bus carries app/ui_dist, so an installed bus serves the GUI without Node.js."""
    import subprocess
    import sys
    import zipfile

    from tests.servers import REPO

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, cwd=tmp_path)
    [wheel] = tmp_path.glob("aintandem_collab_bus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "app/ui_dist/index.html" in names and "app/ui_dist/sw.js" in names
    assert any(name.startswith("app/ui_dist/assets/") and name.endswith(".js") for name in names)
    assert not any(name.startswith("ui/") for name in names)  # the sources stay in the repository
