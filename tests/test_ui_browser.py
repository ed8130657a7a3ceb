"""The web GUI in a real browser (tests/browser.py: Playwright on Debian's chromium) against an embedded bus
serving the committed bundle at /ui: signing in and out, the overview, sandboxes appearing live, a narrow window,
installing as an app. Every page is scanned with axe-core for serious or critical violations; every request the
pages make must go to the bus and, for the REST API, to an operation its OpenAPI document lists. Screenshots go to
tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser import accessibility_problems, go_to, screenshot, sign_in
from tests.servers import TEST_ADMIN_KEY, bus_client


@pytest.fixture
def page(browser_pages, gui_bus):
    return browser_pages.open(gui_bus)


def test_sign_in_overview_and_sign_out(page, gui_bus, unique):
    page.goto(f"{gui_bus.url}/ui/")
    page.get_by_label(re.compile("API key", re.I)).wait_for()
    assert accessibility_problems(page) == []
    screenshot(page, "sign-in")
    page.get_by_label(re.compile("API key", re.I)).fill("cbk_not-a-key")
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    page.get_by_text(re.compile("refused", re.I)).first.wait_for()

    sign_in(page, gui_bus)
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
    go_to(page, "sandboxes", "sandboxes")
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


def test_every_page_of_the_navigation_passes_axe(page, gui_bus, unique):
    with bus_client(gui_bus.url) as http:  # something on each page: a sandbox, a workspace, a trace
        sender, recipient = unique("axe-a"), unique("axe-b")
        assert http.post("/api/v1/workspaces", json={"id": unique("ws"), "name": "Axe"}).status_code == 201
        for sandbox in (sender, recipient):
            assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
        answer = http.post("/api/v1/messages", json={"from_sandbox": sender, "from_agent": "a", "to_sandbox": recipient,
                                                     "message_type": "notification", "content": {"hello": 1}})
        assert answer.status_code == 202, answer.text
    sign_in(page, gui_bus)
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    names = [name.strip() for name in links.all_inner_texts()]
    assert {"Overview", "Sandboxes", "Live", "Traces", "Dead letters", "Workspaces"} <= set(names), names
    for name in names:
        links.filter(has_text=name).first.click()
        page.get_by_role("heading", level=1, name=re.compile(re.escape(name), re.I)).wait_for()
        page.wait_for_load_state("networkidle")
        assert accessibility_problems(page) == [], name
        screenshot(page, f"page-{name.lower().replace(' ', '-')}")
