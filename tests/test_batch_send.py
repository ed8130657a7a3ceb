"""Sending several messages at once: `POST /api/v1/messages/batch` and the mailbox socket's `send` frame, against
the real bus (embedded, Redis, RabbitMQ, PostgreSQL): each item answered on its own, every accepted one delivered
in order, refusals naming their item, nothing stored for a refused item."""

from __future__ import annotations

import json

from tests.servers import bus_client, ws_connect
from tests.test_end_to_end import mailbox_socket, recv_json, recv_messages, register, wait_delivered


def item(sender: str, recipient: str | None, n: int, **extra) -> dict:
    body = {"from_sandbox": sender, "from_agent": "agent", "message_type": "notification", "content": {"n": n},
            **extra}
    if recipient is not None:
        body["to_sandbox"] = recipient
    return body


def test_a_batch_is_accepted_in_order_and_delivered_in_order(bus, client, unique):
    alice, bob = unique("alice"), unique("bob")
    register(client, alice)
    register(client, bob)
    response = client.post("/api/v1/messages/batch", json={"messages": [item(alice, bob, n) for n in range(20)]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (20, 0)
    assert [r["index"] for r in body["results"]] == list(range(20))
    assert all(r["status"] == 202 and r["message_id"] for r in body["results"])
    wait_delivered(client, body["results"][-1]["message_id"], bob)
    with mailbox_socket(bus, bob, since=0) as ws:
        assert recv_json(ws)["type"] == "welcome"
        frames = recv_messages(ws, 20)
    assert [f["message"]["content"]["n"] for f in frames] == list(range(20))
    assert [f["message"]["message_id"] for f in frames] == [r["message_id"] for r in body["results"]]


def test_refused_items_are_reported_on_their_own_and_store_nothing(bus, client, unique):
    alice, bob, ghost = unique("alice"), unique("bob"), unique("ghost")
    register(client, alice)
    register(client, bob)
    taken = unique("taken")
    batch = [
        item(alice, bob, 0),
        item(alice, ghost, 1),                          # unknown recipient: 404
        {"from_sandbox": alice, "content": {}},         # invalid: 400 naming the missing fields
        item(alice, bob, 3, message_id=taken),
        item(alice, bob, 4, message_id=taken),          # the same client-chosen id twice in one batch: 409
        "not an object",                                # 400
        item(alice, bob, 6),
    ]
    response = client.post("/api/v1/messages/batch", json={"messages": batch})
    assert response.status_code == 207, response.text
    body = response.json()
    assert (body["accepted"], body["refused"]) == (3, 4)
    statuses = [(r["index"], r["status"], r.get("error", {}).get("code")) for r in body["results"]]
    assert statuses == [(0, 202, None), (1, 404, "unknown_sandbox"), (2, 400, "validation_error"),
                        (3, 202, None), (4, 409, "duplicate_message_id"), (5, 400, "validation_error"),
                        (6, 202, None)]
    assert {"from_agent", "message_type"} <= set(body["results"][2]["error"]["details"])
    accepted = [r["message_id"] for r in body["results"] if r["status"] == 202]
    assert accepted[1] == taken
    report = wait_delivered(client, accepted[-1], bob)
    assert report["message"]["content"] == {"n": 6}
    with mailbox_socket(bus, bob, since=0) as ws:
        assert recv_json(ws)["type"] == "welcome"
        assert [f["message"]["content"]["n"] for f in recv_messages(ws, 3)] == [0, 3, 6]
    assert client.get(f"/api/v1/sandboxes/{bob}").json()["head_seq"] == 3


def test_batch_envelope_errors_and_limits(bus, client, unique):
    alice = unique("alice")
    register(client, alice)
    for body in ({"messages": []}, {"messages": {}}, {}, {"messages": [], "extra": 1}, []):
        response = client.post("/api/v1/messages/batch", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    too_many = {"messages": [item(alice, alice, n) for n in range(501)]}
    response = client.post("/api/v1/messages/batch", json=too_many)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "batch_too_large"
    assert response.json()["error"]["details"] == {"messages": 501, "limit": 500}
    oversized = client.post("/api/v1/messages/batch", content=b'{"messages":["' + b"x" * (5 * 1024 * 1024) + b'"]}',
                            headers={"Content-Type": "application/json"})
    assert oversized.status_code == 413, oversized.text
    assert oversized.json()["error"]["code"] == "payload_too_large"


def test_a_sandbox_token_sends_only_as_itself_in_a_batch(bus, client, unique):
    alice, bob = unique("alice"), unique("bob")
    token = register(client, alice)["token"]
    register(client, bob)
    with bus_client(bus.url, token=token) as as_alice:
        response = as_alice.post("/api/v1/messages/batch",
                                 json={"messages": [item(alice, bob, 0), item(bob, alice, 1)]})
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 403]
    assert results[1]["error"]["code"] == "sandbox_mismatch"


def test_the_socket_send_frame_is_answered_with_accepted_and_delivered(bus, client, unique):
    alice, bob = unique("alice"), unique("bob")
    token = register(client, alice)["token"]
    register(client, bob)
    with ws_connect(f"{bus.ws_url}/ws/sandboxes/{alice}", token=token, open_timeout=10) as ws:
        assert recv_json(ws)["type"] == "welcome"
        refs = ["r0", 1, "r2", 3, "r4"]  # a ref is a string or an integer, echoed as it came
        for n, ref in enumerate(refs):
            ws.send(json.dumps({"type": "send", "ref": ref, "message": item(alice, bob, n)}))
        answers = [recv_json(ws) for _ in range(5)]
        assert [a["type"] for a in answers] == ["accepted"] * 5
        assert [a["ref"] for a in answers] == refs
        ws.send(json.dumps({"type": "send", "ref": "bad", "message": item(bob, alice, 9)}))
        refused = recv_json(ws)
        assert (refused["type"], refused["ref"], refused["status"], refused["code"]) == \
            ("error", "bad", 403, "sandbox_mismatch")
        ws.send(json.dumps({"type": "send", "message": {"from_sandbox": alice}}))
        invalid = recv_json(ws)
        assert (invalid["type"], invalid["ref"], invalid["code"]) == ("error", None, "validation_error")
        ws.send(json.dumps({"type": "send", "ref": True, "message": item(alice, bob, 8)}))  # not a valid ref
        invalid = recv_json(ws)
        assert (invalid["ref"], invalid["code"], list(invalid["details"])) == (None, "validation_error", ["ref"])
        ws.send(json.dumps({"type": "send", "ref": "k1", "idempotency_key": "key-1", "message": item(alice, bob, 7)}))
        ws.send(json.dumps({"type": "send", "ref": "k2", "idempotency_key": "key-1", "message": item(alice, bob, 7)}))
        first, again = recv_json(ws), recv_json(ws)
        assert first["type"] == again["type"] == "accepted"
        assert first["message_id"] == again["message_id"]
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws)["type"] == "pong"  # the socket is still open and answering
    wait_delivered(client, first["message_id"], bob)
    with mailbox_socket(bus, bob, since=0) as ws:
        assert recv_json(ws)["type"] == "welcome"
        frames = recv_messages(ws, 6)
    # Separate sends make separate deliveries: mailbox order is delivery order (only a batch keeps its order).
    assert sorted(f["message"]["content"]["n"] for f in frames) == [0, 1, 2, 3, 4, 7]
    delivered = {f["message"]["message_id"] for f in frames}
    assert delivered == {a["message_id"] for a in answers} | {first["message_id"]}


def test_a_burst_of_acks_is_recorded_with_each_refusal_answered_in_order(bus, client, unique):
    alice, bob = unique("alice"), unique("bob")
    register(client, alice)
    register(client, bob)
    batch = client.post("/api/v1/messages/batch", json={"messages": [
        item(alice, bob, n, message_type="request") for n in range(30)]})
    assert batch.status_code == 202, batch.text
    wait_delivered(client, batch.json()["results"][-1]["message_id"], bob)
    with mailbox_socket(bus, bob, since=0) as ws:
        assert recv_json(ws)["type"] == "welcome"
        frames = recv_messages(ws, 30)
        burst = [json.dumps({"type": "ack", "seq": f["seq"]}) for f in frames]
        burst.insert(10, json.dumps({"type": "ack", "seq": 999}))                 # no such entry
        burst.insert(20, json.dumps({"type": "ack", "seq": "2"}))                 # not an integer
        burst.append(json.dumps({"type": "ping"}))
        for raw in burst:
            ws.send(raw)
        answers = [recv_json(ws) for _ in range(3)]
        assert [(a["type"], a.get("code")) for a in answers] == [
            ("error", "unknown_entry"), ("error", "validation_error"), ("pong", None)]
    states = {d["state"] for r in batch.json()["results"]
              for d in client.get(f"/api/v1/messages/{r['message_id']}").json()["deliveries"]}
    assert states == {"acked"}


def test_send_frames_sent_in_one_go_are_answered_in_order_and_reach_a_connected_recipient_in_order(bus, client,
                                                                                                    unique):
    """30 send frames written at once (a run the socket accepts together): each answered, in order, by its ref; a
    refused one (another sender) and an invalid one answered in their place; the recipient, connected, gets the
    accepted ones in the order they were sent."""
    alice, bob = unique("alice"), unique("bob")
    token = register(client, alice)["token"]
    register(client, bob)
    with mailbox_socket(bus, bob, since=0) as inbox, \
            ws_connect(f"{bus.ws_url}/ws/sandboxes/{alice}", token=token, open_timeout=10) as ws:
        assert recv_json(inbox)["type"] == "welcome" and recv_json(ws)["type"] == "welcome"
        frames = [{"type": "send", "ref": n, "message": item(alice, bob, n)} for n in range(30)]
        frames[7]["message"] = item(bob, alice, 7)  # not alice's to send
        frames[12]["message"] = {"from_sandbox": alice}  # invalid
        for frame in frames:
            ws.send(json.dumps(frame))
        answers = [recv_json(ws) for _ in frames]
        assert [a["ref"] for a in answers] == list(range(30))
        assert [(a["type"], a.get("code")) for a in answers if a["ref"] in (7, 12)] == [
            ("error", "sandbox_mismatch"), ("error", "validation_error")]
        accepted = [a for a in answers if a["type"] == "accepted"]
        assert len(accepted) == 28
        received = recv_messages(inbox, 28)
    assert [f["message"]["message_id"] for f in received] == [a["message_id"] for a in accepted]
    assert [f["message"]["content"]["n"] for f in received] == [n for n in range(30) if n not in (7, 12)]
