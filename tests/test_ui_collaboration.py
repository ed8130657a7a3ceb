"""The GUI's collaboration pages in a real browser (tests/browser.py) against an embedded bus: a message between two
sandboxes appears in the live feed and lights their edge, opens as a message and as a trace; the feed holds still
while the reader scrolls; a dead letter is replayed from the GUI. axe-core scans each page; screenshots go to
tests/artifacts/."""

from __future__ import annotations

import re

import pytest

from tests.browser import accessibility_problems, go_to, screenshot, sign_in
from tests.servers import bus_client, wait_for


@pytest.fixture
def page(browser_pages, gui_bus):
    return browser_pages.open(gui_bus)


@pytest.fixture
def http(gui_bus):
    with bus_client(gui_bus.url) as client:
        yield client


def register(http, *sandboxes: str, workspace: str) -> None:
    for sandbox in sandboxes:
        answer = http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox, "workspace": workspace,
                                                                "agents": [{"name": "agent"}]})
        assert answer.status_code == 201, answer.text


def send(http, sender: str, recipient: str | None, message_type: str = "request", **fields) -> str:
    answer = http.post("/api/v1/messages", json={"from_sandbox": sender, "from_agent": "agent",
                                                  "to_sandbox": recipient, "message_type": message_type,
                                                  "content": {"task": "summarize", "n": fields.pop("n", 0)}, **fields})
    assert answer.status_code == 202, answer.text
    return answer.json()["message_id"]


def entry_seq(http, sandbox: str, message_id: str) -> int:
    def found():
        entries = http.get(f"/api/v1/sandboxes/{sandbox}/messages", params={"since": 0}).json()["entries"]
        return next((e["seq"] for e in entries if e["message"]["message_id"] == message_id), None)
    return wait_for(found, 15, f"{message_id} in {sandbox}'s mailbox")


def test_a_message_lights_its_edge_appears_in_the_feed_and_opens_with_its_trace(page, gui_bus, http, unique):
    asker, helper = unique("asker"), unique("helper")
    register(http, asker, helper, workspace=unique("team"))
    sign_in(page, gui_bus)
    go_to(page, "live", "live")
    for sandbox in (asker, helper):
        page.locator(f'[data-node="{sandbox}"]').wait_for()

    request = send(http, asker, helper)
    page.locator(f'g[data-edge="{asker}->{helper}"][data-active="true"]').wait_for()
    entry = page.locator(f'li[data-message-id="{request}"]')
    entry.wait_for()
    answer = send(http, helper, None, "response", correlation_id=request)
    page.locator(f'g[data-edge="{helper}->{asker}"][data-active="true"]').wait_for()
    page.locator(f'li[data-message-id="{answer}"]').wait_for()
    assert accessibility_problems(page) == []
    screenshot(page, "live")

    entry.get_by_role("link", name=request).click()
    page.get_by_role("heading", level=1, name="Message").wait_for()
    page.get_by_text('"summarize"').first.wait_for()
    assert accessibility_problems(page) == []
    screenshot(page, "message")

    page.get_by_role("link", name=re.compile("open its trace", re.I)).click()
    page.get_by_role("heading", level=1, name="Trace").wait_for()
    summary = page.get_by_test_id("trace-summary")
    summary.wait_for()
    wait_for(lambda: "2" in summary.inner_text(), 15, "both messages in the trace's summary")
    tree = page.get_by_role("list", name="Conversation tree")
    tree.get_by_role("link", name=f"{asker} → {helper}").wait_for()  # the request, and under it its answer
    tree.get_by_role("list").get_by_role("link", name=f"{helper} → {asker}").wait_for()
    for message_id in (request, answer):
        page.get_by_role("list", name="Timeline of the hops").locator(f'li[data-message-id="{message_id}"]').wait_for()
    assert accessibility_problems(page) == []
    screenshot(page, "trace")


def test_the_feed_holds_still_while_the_reader_scrolls(page, gui_bus, http, unique):
    talker, listener = unique("talker"), unique("listener")
    register(http, talker, listener, workspace=unique("chatty"))
    sign_in(page, gui_bus)
    go_to(page, "live", "live")
    page.locator(f'[data-node="{listener}"]').wait_for()
    sent = [send(http, talker, listener, "notification", n=n) for n in range(40)]
    page.locator(f'li[data-message-id="{sent[-1]}"]').wait_for()

    feed, state = page.get_by_test_id("feed"), page.get_by_test_id("feed-state")
    feed.evaluate("element => { element.scrollTop = 400; element.dispatchEvent(new Event('scroll')); }")
    wait_for(lambda: state.get_attribute("data-paused") == "true", 10, "the feed to pause")
    top_before = feed.evaluate("element => element.scrollTop")
    later = [send(http, talker, listener, "notification", n=n) for n in range(3)]
    page.get_by_test_id("feed-resume").filter(has_text="3").wait_for()
    assert feed.evaluate("element => element.scrollTop") == top_before  # nothing moved under the reader
    assert page.locator(f'li[data-message-id="{later[-1]}"]').count() == 0  # held back while paused
    screenshot(page, "live-paused")

    page.get_by_test_id("feed-resume").click()
    wait_for(lambda: state.get_attribute("data-paused") == "false", 10, "the feed to resume")
    page.locator(f'li[data-message-id="{later[-1]}"]').wait_for()
    assert feed.evaluate("element => element.scrollTop") < 8  # back at the newest


def test_a_dead_letter_is_replayed_from_the_gui(page, gui_bus, http, unique):
    asker, helper = unique("asker"), unique("helper")
    register(http, asker, helper, workspace=unique("team"))
    request = send(http, asker, helper)
    seq = entry_seq(http, helper, request)
    answer = http.post(f"/api/v1/sandboxes/{helper}/nack", json={"seq": seq, "reason": "cannot summarize that"})
    assert answer.status_code == 200, answer.text
    [dead] = wait_for(lambda: http.get("/api/v1/dead-letters", params={"message_id": request}).json()["dead_letters"],
                      15, "the dead letter")

    sign_in(page, gui_bus)
    go_to(page, "dead letters", "dead letters")
    page.get_by_label(re.compile("message id", re.I)).fill(request)
    page.get_by_role("search", name=re.compile("filter dead letters", re.I)).get_by_role(
        "button", name="Apply filters").click()
    assert f"message_id={request}" in page.url  # the filter lives in the URL
    page.get_by_test_id("dead-letter-total").filter(has_text="1").wait_for()
    page.get_by_text("cannot summarize that").first.wait_for()
    assert accessibility_problems(page) == []
    screenshot(page, "dead-letters")

    page.get_by_role("button", name=f"Inspect dead letter {dead['id']}").click()
    page.get_by_test_id("dead-letter-dialog").get_by_text("nacked").first.wait_for()
    page.keyboard.press("Escape")
    page.get_by_role("button", name=f"Replay dead letter {dead['id']}").click()
    page.get_by_text(re.compile(f"Dead letter {dead['id']} .* replayed")).wait_for()
    assert http.get(f"/api/v1/dead-letters/{dead['id']}").status_code == 404
    [delivery] = http.get(f"/api/v1/messages/{request}").json()["deliveries"]
    assert (delivery["sandbox_id"], delivery["state"]) == (helper, "delivered")
