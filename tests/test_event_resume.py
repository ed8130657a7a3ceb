"""Resuming the events socket: every `event` frame has an id, and `/ws/events?since=ID` first replays the events
after it that the API process still keeps, so a client that reconnects (the GUI) misses nothing; an id it cannot
resume from (another process, a restart, too old) is said in the welcome frame, and a malformed one is refused."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from app.services.event_log import EventLog
from tests.servers import wait_for, ws_connect

RECV_TIMEOUT = 10


def event(name: str, **data) -> dict:
    return {"event": name, "data": data, "timestamp": 1.0}


def test_the_log_numbers_events_and_gives_what_followed_an_id():
    log = EventLog(kept=3)
    assert log.last_id is None
    first = log.append(event("a"))
    assert first == f"{log.epoch}-1" and log.last_id == first
    second, third = log.append(event("b")), log.append(event("c"))
    frames, missed = log.after(first)
    assert missed is None and [json.loads(f)["id"] for f in frames] == [second, third]
    assert json.loads(frames[0]) == {"type": "event", "id": second, "event": "b", "data": {}, "timestamp": 1.0}
    assert log.after(third) == ([], None)  # up to date


def test_the_log_says_why_it_cannot_resume():
    log = EventLog(kept=3)
    first = log.append(event("a"))
    for name in "bcde":
        log.append(event(name))
    assert log.after(first)[0] == [] and "no longer kept" in log.after(first)[1]  # event 2 is gone
    assert len(log.after(f"{log.epoch}-2")[0]) == 3  # 3, 4 and 5 are kept
    assert "another API process" in log.after("0123456789ab-1")[1]
    assert "newer" in log.after(f"{log.epoch}-9")[1]


def frames_of(ws, until, what: str) -> list[dict]:
    seen: list[dict] = []
    wait_for(lambda: seen.append(json.loads(ws.recv(timeout=RECV_TIMEOUT))) or until(seen[-1]), 15, what)
    return seen


def registered(sandbox: str):
    return lambda frame: frame.get("event") == "sandbox.registered" and frame["data"]["sandbox_id"] == sandbox


def test_a_reconnecting_events_socket_gets_what_it_missed_in_order(bus, client, unique):
    first, missed = unique("first"), [unique("missed-1"), unique("missed-2")]
    with ws_connect(f"{bus.ws_url}/ws/events") as events:
        welcome = json.loads(events.recv(timeout=RECV_TIMEOUT))
        assert welcome["type"] == "welcome" and "last_event_id" in welcome and "resumed" not in welcome
        assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": first}).status_code == 201
        last_seen = frames_of(events, registered(first), "the first registration")[-1]["id"]
    for sandbox in missed:  # while no socket is open
        assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201

    with ws_connect(f"{bus.ws_url}/ws/events?since={last_seen}") as events:
        welcome = json.loads(events.recv(timeout=RECV_TIMEOUT))
        assert welcome["resumed"] is True and "missed" not in welcome  # (some may be on their way still)
        frames = frames_of(events, registered(missed[1]), "the missed registrations")
    ours = [f["data"]["sandbox_id"] for f in frames if f["event"] == "sandbox.registered"
            and f["data"]["sandbox_id"] in missed]
    assert ours == missed
    order = [id_order(f["id"]) for f in frames]
    assert order == sorted(set(order)) and order[0] > id_order(last_seen)
    if bus.mode != "redis":  # a per-process log numbers its events: the next one follows (Redis: stream ids)
        assert order[0][1] == id_order(last_seen)[1] + 1


def id_order(event_id: str) -> tuple[str, int]:
    """Where `event_id` comes in its log: `<epoch>-<n>` of one process's log, or a Redis stream id `<ms>-<seq>`."""
    head, number = event_id.rsplit("-", 1)
    return head.zfill(20), int(number)


def test_an_id_of_another_process_is_not_resumed_and_says_so(bus):
    with ws_connect(f"{bus.ws_url}/ws/events?since=0123456789ab-5") as events:
        welcome = json.loads(events.recv(timeout=RECV_TIMEOUT))
    assert (welcome["type"], welcome["resumed"], welcome["replayed"]) == ("welcome", False, 0)
    assert "another API process" in welcome["missed"]


@pytest.mark.parametrize("query", ["since=yesterday", "since=0123456789ab-", "since=", "other=1"])
def test_a_malformed_resume_point_is_refused(bus, query):
    with ws_connect(f"{bus.ws_url}/ws/events?{query}") as events:
        frame = json.loads(events.recv(timeout=RECV_TIMEOUT))
        assert frame["type"] == "error" and frame["code"] == "validation_error" and frame["details"], frame
        with pytest.raises(ConnectionClosed) as closed:
            events.recv(timeout=RECV_TIMEOUT)
    assert closed.value.rcvd.code == 1008
