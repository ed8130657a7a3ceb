"""The GUI's managed sandboxes in a real browser (tests/browser.py) against a bus running containers on a real
Docker engine (the managed_bus fixture): a sandbox's state changes live as it is stopped and started from its page,
its logs are followed, paused while the reader looks back, downloaded, and end when the container stops; it is
deleted after a confirmation. axe-core scans each page; screenshots go to tests/artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.browser import accessibility_problems, screenshot, sign_in
from tests.docker_engine import BUSYBOX_IMAGE
from tests.servers import bus_client, wait_for

# A line every 0.2 s; exits at once on SIGTERM (the engine's stop), and says so.
TICKING = ["sh", "-c", "i=0; trap 'echo bye; exit 0' TERM; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]


@pytest.fixture
def page(browser_pages, managed_bus):
    return browser_pages.open(managed_bus)


@pytest.fixture
def http(managed_bus):
    with bus_client(managed_bus.url, timeout=30) as client:
        yield client


def state_of(http, sandbox_id: str) -> str | None:
    answer = http.get(f"/api/v1/sandboxes/{sandbox_id}/status")
    return answer.json().get("state") if answer.status_code == 200 else None


def shows_state(page, state: str) -> None:
    page.get_by_test_id("sandbox-state").filter(has_text=re.compile(rf"^\s*{state}\b", re.I)).wait_for(timeout=30000)


def log_lines(log) -> list[str]:
    return [line for line in log.inner_text().splitlines() if line.startswith("tick")]


def test_a_managed_sandbox_is_stopped_started_followed_and_deleted_from_its_page(page, managed_bus, http, unique):
    sandbox_id = unique("gui-managed")
    answer = http.post("/api/v1/sandboxes", json={"sandbox_id": sandbox_id, "image": BUSYBOX_IMAGE,
                                                  "command": TICKING})
    assert answer.status_code == 202, answer.text
    wait_for(lambda: state_of(http, sandbox_id) == "running", 30, "the sandbox to run")

    sign_in(page, managed_bus)
    page.goto(f"{managed_bus.url}/ui/sandboxes/{sandbox_id}")
    shows_state(page, "running")
    assert accessibility_problems(page) == []
    screenshot(page, "sandbox")

    page.get_by_role("button", name="Stop", exact=True).click()
    shows_state(page, "stopped")  # from the bus's events: no reload
    assert state_of(http, sandbox_id) == "stopped"
    page.get_by_role("button", name="Start", exact=True).click()
    shows_state(page, "running")

    page.get_by_role("link", name=re.compile("logs", re.I)).first.click()
    log = page.get_by_role("log", name="Container output")
    wait_for(lambda: len(log_lines(log)) >= 5, 20, "ticks in the log view")
    assert accessibility_problems(page) == []
    screenshot(page, "logs")

    page.get_by_role("button", name="Pause", exact=True).click()
    held = log_lines(log)
    page.get_by_text(re.compile(r"\d+ new lines?", re.I)).first.wait_for()  # counted, not shown
    assert log_lines(log) == held
    page.get_by_role("button", name="Follow", exact=True).click()
    wait_for(lambda: len(log_lines(log)) > len(held), 10, "the held lines after following again")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download", exact=True).click()
    saved = download.value.path().read_text()
    assert "tick 1\n" in saved and len(saved.splitlines()) >= len(held)

    assert http.post(f"/api/v1/sandboxes/{sandbox_id}/stop").status_code == 202
    page.get_by_text(re.compile("container stopped", re.I)).first.wait_for(timeout=30000)
    assert "bye" in log.inner_text()

    page.goto(f"{managed_bus.url}/ui/sandboxes/{sandbox_id}")
    shows_state(page, "stopped")
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("alertdialog").get_by_role("button", name=re.compile("delete", re.I)).click()
    wait_for(lambda: http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 404, 30, "the sandbox to be gone")
