"""The web GUI in a real browser: Playwright for Python driving Debian's chromium (`make test` installs it; never
`playwright install`) against an embedded bus serving the committed bundle at /ui.

Every page is scanned with axe-core (from ui/node_modules, injected by the test) for serious or critical
violations; every request the pages make must go to the bus and, for the REST API, to an operation its OpenAPI
document lists. Each test saves screenshots to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.servers import REPO, TEST_ADMIN_KEY, BusProcess, bus_client

CHROMIUM = Path("/usr/lib/chromium/chromium")
AXE = REPO / "ui" / "node_modules" / "axe-core" / "axe.min.js"  # a devDependency of ui/ (make ui-check installs it)
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OPEN_PATHS = {"/readyz", "/healthz"}


@pytest.fixture(scope="module")
def gui_bus():
    bus = BusProcess("embedded")
    yield bus
    bus.cleanup()


@pytest.fixture(scope="module")
def api_paths(gui_bus) -> list[re.Pattern]:
    """Patterns of every REST path the OpenAPI document lists."""
    document = httpx.get(f"{gui_bus.url}/api/v1/openapi.json").json()
    return [re.compile("^/api/v1" + re.sub(r"\{[^/]+\}", "[^/]+", path.removeprefix("/api/v1")) + "$")
            for path in document["paths"]]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Requests:
    """Every request a page makes, checked when the test ends: to the bus only, and REST calls to documented
    operations only."""

    def __init__(self, bus: BusProcess, api_paths: list[re.Pattern]):
        self.origin = urlsplit(bus.url).netloc
        self.api_paths = api_paths
        self.seen: list[str] = []

    def record(self, request) -> None:
        self.seen.append(request.url)

    def problems(self) -> list[str]:
        out = []
        for url in self.seen:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob"):
                continue
            if parts.netloc != self.origin:
                out.append(f"{url}: not the bus")
            elif parts.path.startswith("/api/") and not any(p.match(parts.path) for p in self.api_paths):
                out.append(f"{url}: not an operation of the OpenAPI document")
            elif not (parts.path.startswith(("/api/v1/", "/ui", "/ws/")) or parts.path in OPEN_PATHS):
                out.append(f"{url}: neither the GUI, the API nor a socket")
        return out


@pytest.fixture
def page(browser, gui_bus, api_paths, request):
    """A fresh browser context at 1280x800 (CSP bypassed only so the test can inject axe-core), its requests
    recorded and checked at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    tab = context.new_page()
    requests = Requests(gui_bus, api_paths)
    tab.on("request", requests.record)
    tab.on("websocket", lambda ws: requests.seen.append(ws.url))
    yield tab
    context.close()
    assert requests.problems() == [], requests.problems()


def screenshot(page, name: str) -> Path:
    """Save the page as tests/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def accessibility_problems(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def sign_in(page, bus: BusProcess, key: str = TEST_ADMIN_KEY) -> None:
    page.goto(f"{bus.url}/ui/")
    page.get_by_label(re.compile("API key", re.I)).fill(key)
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()


def test_sign_in_overview_and_sign_out(page, gui_bus, unique):
    page.goto(f"{gui_bus.url}/ui/")
    page.get_by_label(re.compile("API key", re.I)).wait_for()
    assert accessibility_problems(page) == []
    screenshot(page, "sign-in")
    page.get_by_label(re.compile("API key", re.I)).fill("cbk_not-a-key")
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    page.get_by_text(re.compile("refused", re.I)).first.wait_for()

    sign_in(page, gui_bus)
    page.get_by_role("heading", level=1, name=re.compile("overview", re.I)).wait_for()
    assert "cbk_" not in page.url and TEST_ADMIN_KEY not in page.url
    stored = page.evaluate("() => JSON.stringify(window.localStorage)")
    assert TEST_ADMIN_KEY not in stored  # the key lives in the session only
    assert accessibility_problems(page) == []
    screenshot(page, "overview")

    page.get_by_role("button", name=re.compile("sign out", re.I)).click()
    page.get_by_label(re.compile("API key", re.I)).wait_for()
    assert TEST_ADMIN_KEY not in page.evaluate("() => JSON.stringify(window.sessionStorage)")


def test_it_installs_as_an_app(page, gui_bus):
    """A PWA: a manifest the page links, and a service worker controlling /ui/ that serves the app shell when
    the bus cannot be reached."""
    page.goto(f"{gui_bus.url}/ui/")
    href = page.locator("link[rel=manifest]").get_attribute("href")
    manifest = httpx.get(f"{gui_bus.url}{href}").json()
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == ("/ui/", "/ui/", "standalone")
    assert manifest["icons"] and all(httpx.get(f"{gui_bus.url}{icon['src']}").status_code == 200
                                     for icon in manifest["icons"])
    assert page.evaluate("async () => (await navigator.serviceWorker.ready).scope").endswith("/ui/")
    page.reload()  # now under the worker's control
    page.get_by_label(re.compile("API key", re.I)).wait_for()
    page.context.set_offline(True)
    page.reload()
    page.get_by_label(re.compile("API key", re.I)).wait_for()  # the shell, from the worker's cache
    page.context.set_offline(False)


def test_sandboxes_appear_without_a_reload(page, gui_bus, unique):
    sign_in(page, gui_bus)
    page.get_by_role("link", name=re.compile("sandboxes", re.I)).first.click()
    page.get_by_role("heading", level=1, name=re.compile("sandboxes", re.I)).wait_for()
    first, second = unique("gui-a"), unique("gui-b")
    with bus_client(gui_bus.url) as http:
        for sandbox in (first, second):
            answer = http.post("/api/v1/sandboxes/register", json={
                "sandbox_id": sandbox, "workspace": "gui", "agents": [
                    {"name": "worker", "skills": [{"id": "summarize", "tags": ["text"]}]}]})
            assert answer.status_code == 201, answer.text
    for sandbox in (first, second):
        page.get_by_text(sandbox).first.wait_for(timeout=15000)
    assert accessibility_problems(page) == []
    screenshot(page, "sandboxes")
    page.set_viewport_size({"width": 420, "height": 800})  # a narrow window still shows the list
    page.get_by_text(first).first.wait_for()
    screenshot(page, "sandboxes-narrow")
