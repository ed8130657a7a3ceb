"""Behaviour over real processes, on the embedded bus and on Redis and RabbitMQ with a separate Celery worker:
register, direct + broadcast, receive over a real WebSocket, disconnect, reconnect with `since`."""

from __future__ import annotations

import json
import threading

import pytest
from websockets.exceptions import ConnectionClosed

from tests.servers import wait_for
from tests.servers import ws_connect as connect

RECV_TIMEOUT = 10


def register(client, sandbox_id: str, **extra) -> dict:
    response = client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id, **extra})
    assert response.status_code in (200, 201), response.text
    return response.json()


def send(client, sender: str, recipient: str, content: dict, **extra) -> str:
    body = {"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "agent", "message_type": "notification",
            "content": content, **extra}
    response = client.post("/api/v1/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def broadcast(client, sender: str, content: dict) -> str:
    response = client.post("/api/v1/broadcast",
                           json={"from_sandbox": sender, "from_agent": "agent", "content": content})
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def recv_json(ws) -> dict:
    return json.loads(ws.recv(timeout=RECV_TIMEOUT))


def recv_messages(ws, count: int) -> list[dict]:
    frames = [recv_json(ws) for _ in range(count)]
    assert all(f["type"] == "message" for f in frames), frames
    return frames


def mailbox_socket(bus, sandbox_id: str, since: int | None = None):
    query = f"?since={since}" if since is not None else ""
    return connect(f"{bus.ws_url}/ws/sandboxes/{sandbox_id}{query}", open_timeout=RECV_TIMEOUT)


def wait_delivered(client, message_id: str, *recipients: str) -> dict:
    """Wait until the message is routed and sits in (at least) these mailboxes; return its report."""
    def delivered():
        report = client.get(f"/api/v1/messages/{message_id}").json()
        reached = {d["sandbox_id"] for d in report["deliveries"]}
        return report if report["status"] == "delivered" and set(recipients) <= reached else None

    return wait_for(delivered, 15, f"message {message_id} in the mailboxes of {', '.join(recipients)}")


def test_direct_broadcast_disconnect_and_resume(bus, client, unique):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    for sandbox in (alice, bob, carol):
        register(client, sandbox)

    with mailbox_socket(bus, bob, since=0) as ws:
        welcome = recv_json(ws)
        assert welcome == {"type": "welcome", "sandbox_id": bob, "head_seq": 0, "resumed_from": 0,
                           "max_content_bytes": 262144, "max_frame_bytes": 327680}
        first = send(client, alice, bob, {"n": 1})
        frame = recv_messages(ws, 1)[0]
        assert frame["seq"] == 1
        assert frame["message"]["message_id"] == first
        assert frame["message"]["content"] == {"n": 1}
        assert frame["message"]["from_sandbox"] == alice

        shout = broadcast(client, alice, {"all": True})
        frame = recv_messages(ws, 1)[0]
        assert (frame["seq"], frame["message"]["message_id"], frame["message"]["to_sandbox"]) == (2, shout, "broadcast")
        ws.send(json.dumps({"type": "ack", "seq": 2}))

    # Broadcast reached carol too, never the sender.
    report = wait_delivered(client, shout, bob, carol)
    assert alice not in {d["sandbox_id"] for d in report["deliveries"]}

    # bob is disconnected: these wait in his mailbox.
    missed = [send(client, alice, bob, {"n": n}) for n in range(3, 8)]
    for message_id in missed:
        wait_delivered(client, message_id, bob)

    with mailbox_socket(bus, bob, since=2) as ws:
        welcome = recv_json(ws)
        assert (welcome["head_seq"], welcome["resumed_from"]) == (7, 2)
        frames = recv_messages(ws, 5)
        assert [f["seq"] for f in frames] == [3, 4, 5, 6, 7]
        assert sorted(f["message"]["message_id"] for f in frames) == sorted(missed)
        # Live again after the replay, in order.
        live = send(client, alice, bob, {"n": 8})
        frame = recv_messages(ws, 1)[0]
        assert (frame["seq"], frame["message"]["message_id"]) == (8, live)

    report = client.get(f"/api/v1/messages/{shout}").json()
    bob_entry = next(d for d in report["deliveries"] if d["sandbox_id"] == bob)
    assert bob_entry["state"] == "acked" and bob_entry["acked_at"]


def test_replay_of_a_long_backlog_then_live_without_gaps(bus, client, unique):
    sender, receiver = unique("sender"), unique("receiver")
    register(client, sender)
    register(client, receiver)
    ids = [send(client, sender, receiver, {"i": i}) for i in range(40)]
    with mailbox_socket(bus, receiver, since=0) as ws:
        assert recv_json(ws)["type"] == "welcome"
        more = [send(client, sender, receiver, {"i": i}) for i in range(40, 60)]
        frames = recv_messages(ws, 60)
    # Mailbox order is delivery order (concurrent workers, priorities), not send order:
    # contiguous, complete, no repeats.
    assert [f["seq"] for f in frames] == list(range(1, 61))
    assert sorted(f["message"]["message_id"] for f in frames) == sorted(ids + more)


def test_offline_recipient_keeps_messages_and_poll_endpoint_pages(bus, client, unique):
    sender, offline = unique("sender"), unique("offline")
    register(client, sender)
    register(client, offline)
    ids = [send(client, sender, offline, {"i": i}, priority=9) for i in range(5)]
    for message_id in ids:
        wait_delivered(client, message_id, offline)
    page = client.get(f"/api/v1/sandboxes/{offline}/messages", params={"since": 1, "limit": 3}).json()
    assert [e["seq"] for e in page["entries"]] == [2, 3, 4]
    assert page["next_since"] == 4 and page["head_seq"] == 5
    assert {e["message"]["message_id"] for e in page["entries"]} <= set(ids)


def frames_until(ws, predicate, what: str) -> list[dict]:
    """Frames from `ws` up to and including the first one matching `predicate` (the bus is shared by tests)."""
    frames: list[dict] = []
    wait_for(lambda: frames.append(recv_json(ws)) or predicate(frames[-1]), RECV_TIMEOUT, what)
    return frames


def test_broadcast_and_event_sockets(bus, client, unique):
    sender, listener = unique("sender"), unique("listener")
    register(client, listener)
    with connect(f"{bus.ws_url}/ws/broadcast") as bws, connect(f"{bus.ws_url}/ws/events") as ews:
        assert recv_json(bws)["type"] == "welcome"
        assert recv_json(ews)["type"] == "welcome"
        register(client, sender)
        message_id = broadcast(client, sender, {"hello": "everyone"})
        seen = frames_until(bws, lambda f: f.get("message", {}).get("message_id") == message_id, "the broadcast frame")
        assert all(f["type"] == "message" and f["message"]["to_sandbox"] == "broadcast" for f in seen)
        assert seen[-1]["message"]["content"] == {"hello": "everyone"}
        # API and worker publish events over separate connections: no order between them is promised.
        wanted = {("sandbox.registered", sender), ("message.accepted", message_id), ("message.delivered", message_id)}
        seen_events: set = set()
        frames_until(ews, lambda e: seen_events.add(_event_key(e)) or wanted <= seen_events, "the three events")


def _event_key(frame: dict) -> tuple:
    return frame["event"], frame["data"].get("sandbox_id") or frame["data"].get("message_id")


def test_unknown_sandbox_socket_gets_error_and_close(bus, unique):
    with connect(f"{bus.ws_url}/ws/sandboxes/{unique('ghost')}") as ws:
        frame = recv_json(ws)
        assert frame["type"] == "error" and frame["code"] == "unknown_sandbox"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT)
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "unknown_sandbox"


def test_unregistered_sandbox_refuses_new_messages_and_keeps_mailbox(bus, client, unique):
    sender, leaver = unique("sender"), unique("leaver")
    register(client, sender)
    register(client, leaver)
    kept = send(client, sender, leaver, {"before": True})
    wait_delivered(client, kept, leaver)
    assert client.delete(f"/api/v1/sandboxes/{leaver}").json()["status"] == "unregistered"
    refused = client.post("/api/v1/messages", json={"from_sandbox": sender, "to_sandbox": leaver, "from_agent": "a",
                                                    "message_type": "notification", "content": {}})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_sandbox"
    assert leaver not in [s["sandbox_id"] for s in client.get("/api/v1/sandboxes").json()["sandboxes"]]
    again = register(client, leaver)
    assert again["head_seq"] == 1  # the mailbox and its sequence survived


def test_channel_sockets_open_with_welcome_even_while_events_stream(bus, client, unique):
    """`welcome` is the first frame of /ws/events and /ws/broadcast even when events and broadcasts are being
    published while the socket opens (they come after it, not before)."""
    sender = unique("busy")
    register(client, sender)
    stop = threading.Event()

    def keep_the_streams_busy():
        while not stop.is_set():
            client.post(f"/api/v1/sandboxes/{sender}/heartbeat")
            broadcast(client, sender, {"busy": True})

    busy = threading.Thread(target=keep_the_streams_busy, daemon=True)
    busy.start()
    try:
        for i in range(30):
            with connect(f"{bus.ws_url}/ws/{'events' if i % 2 else 'broadcast'}") as ws:
                assert recv_json(ws)["type"] == "welcome"
    finally:
        stop.set()
        busy.join(timeout=RECV_TIMEOUT)
