"""Driving the web GUI in a real browser for the tests: Playwright for Python on Debian's chromium (`make test`
installs it; never `playwright install`), axe-core from ui/node_modules, and a check that every request a page
makes goes to the bus and, for the REST API, to an operation its OpenAPI document lists."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.servers import REPO, TEST_ADMIN_KEY, BusProcess

CHROMIUM = Path("/usr/lib/chromium/chromium")
AXE = REPO / "ui" / "node_modules" / "axe-core" / "axe.min.js"  # a devDependency of ui/ (make ui-check installs it)
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OPEN_PATHS = {"/readyz", "/healthz"}
WAIT_MS = 15000


@contextmanager
def launched_chromium():
    """Debian's chromium, headless, through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def documented_paths(bus: BusProcess) -> list[re.Pattern]:
    """Patterns of every REST path the bus's OpenAPI document lists."""
    document = httpx.get(f"{bus.url}/api/v1/openapi.json").json()
    return [re.compile("^/api/v1" + re.sub(r"\{[^/]+\}", "[^/]+", path.removeprefix("/api/v1")) + "$")
            for path in document["paths"]]


class Requests:
    """Every request a page makes: to the bus only, and REST calls to documented operations only."""

    def __init__(self, bus: BusProcess):
        self.origin = urlsplit(bus.url).netloc
        self.api_paths = documented_paths(bus)
        self.seen: list[str] = []

    def record(self, url: str) -> None:
        self.seen.append(url)

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


class Pages:
    """Browser tabs on buses, each in a fresh context at 1280x800 (CSP bypassed only so that axe-core can be
    injected), their requests recorded; `problems()` lists the requests that broke the rules."""

    def __init__(self, chromium):
        self.chromium = chromium
        self.opened: list[tuple[object, Requests]] = []

    def open(self, bus: BusProcess):
        context = self.chromium.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True,
                                            accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        requests = Requests(bus)
        tab.on("request", lambda request: requests.record(request.url))
        tab.on("websocket", lambda ws: requests.record(ws.url))
        self.opened.append((context, requests))
        return tab

    def close(self) -> list[str]:
        problems = []
        for context, requests in self.opened:
            context.close()
            problems += requests.problems()
        return problems


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
    """Sign in on the GUI's first page with `key` and wait for the overview."""
    page.goto(f"{bus.url}/ui/")
    page.get_by_label(re.compile("API key", re.I)).fill(key)
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    page.get_by_role("heading", level=1, name=re.compile("overview", re.I)).wait_for()


def go_to(page, link: str, heading: str) -> None:
    """Follow the main navigation's `link` and wait for the page's level-1 `heading`."""
    page.get_by_role("navigation").get_by_role("link", name=re.compile(link, re.I)).first.click()
    page.get_by_role("heading", level=1, name=re.compile(heading, re.I)).wait_for()
