"""The event log of a Redis bus is one Redis stream every API node shares, that of a NATS bus one JetStream stream
(app/brokers/redis_events.py, app/brokers/nats_events.py): an event gets its id once, where it is published, every
node's events sockets send it with that id, and `/ws/events?since=` resumes on any node — also on a node restarted
since — with exactly the events after it (none missing, none twice). A `since` older than what the stream keeps,
or newer than its newest event, is answered as missed.

(The per-process log of the memory and RabbitMQ buses: tests/test_event_resume.py.)
"""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
import redis

from tests.servers import BusProcess, RedisServer, bus_client, wait_for, ws_connect

RECV_TIMEOUT = 10


@pytest.fixture(params=["redis", "nats"])
def two_nodes(request):
    """API nodes `api` (A) and `api2` (B) and a worker on one Redis, or on the session's nats-server (a stream
    prefix of their own)."""
    server = RedisServer() if request.param == "redis" else None
    bus = None
    try:
        if server is not None:
            bus = BusProcess("redis", redis_url=server.url)
        else:
            bus = BusProcess("nats", nats_url=request.getfixturevalue("nats_server").url)
        bus.start_api("api2")
        yield bus
    finally:
        if bus is not None:
            bus.cleanup()
        if server is not None:
            server.cleanup()


def welcome_of(ws) -> dict:
    frame = json.loads(ws.recv(timeout=RECV_TIMEOUT))
    assert frame["type"] == "welcome", frame
    return frame


def frames_until(ws, sandbox: str, message_id: str | None = None) -> list[dict]:
    """The event frames `ws` receives up to and including the registration of `sandbox` and (when given) the
    delivery of message `message_id` (the worker publishes it: it may come first)."""
    seen: list[dict] = []
    wait_for(lambda: seen.append(json.loads(ws.recv(timeout=RECV_TIMEOUT)))
             or (sandbox in map(registered, seen) and (message_id is None or message_id in map(delivered, seen))),
             20, f"the registration of {sandbox}")
    return seen


def registered(frame: dict) -> str | None:
    return frame["data"]["sandbox_id"] if frame.get("event") == "sandbox.registered" else None


def delivered(frame: dict) -> str | None:
    return frame["data"]["message_id"] if frame.get("event") == "message.delivered" else None


def send(bus: BusProcess, node: str, sender: str, recipient: str) -> str:
    """Send a notification through `node`; its message id (a worker delivers it and publishes message.delivered)."""
    body = {"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "agent", "message_type": "notification",
            "content": {"hello": recipient}}
    with bus_client(bus.api_url(node), timeout=10) as http:
        response = http.post("/api/v1/messages", json=body)
    assert response.status_code in (200, 201, 202), response.text
    return response.json()["message_id"]


def register(bus: BusProcess, node: str, sandboxes: list[str]) -> None:
    with bus_client(bus.api_url(node), timeout=10) as http:
        for sandbox in sandboxes:
            assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201


def resume(bus: BusProcess, node: str, since: str, last: str, message_id: str | None = None) -> tuple[dict, list]:
    """Open an events socket on `node` with `since`; its welcome frame and the frames up to `last`'s registration
    (and `message_id`'s delivery)."""
    with ws_connect(f"{bus.api_ws_url(node)}/ws/events?since={since}") as events:
        welcome = welcome_of(events)
        return welcome, frames_until(events, last, message_id)


def order(event_id: str) -> tuple[int, int]:
    """Where a stream's event id comes in it: a Redis stream id `<ms>-<seq>`, or a NATS one `<epoch>-<seq>`."""
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def assert_exactly(frames: list[dict], sandboxes: list[str], after: str | None = None,
                   message_id: str | None = None) -> None:
    """Each of `sandboxes` registered once, in order, message `message_id` delivered once, no event frame twice,
    and (with `after`) every frame's id after it (one client's events here: each published after the last)."""
    ids = [order(frame["id"]) for frame in frames]
    assert len(ids) == len(set(ids)), ids
    assert after is None or min(ids) > order(after)
    assert [name for frame in frames if (name := registered(frame)) in sandboxes] == sandboxes
    assert message_id is None or [delivered(frame) for frame in frames].count(message_id) == 1


def ids_of(frames: list[dict], sandboxes: list[str], message_id: str) -> dict[tuple[str, str], str]:
    """The ids of the registrations of `sandboxes` and of the delivery of `message_id` among `frames`."""
    ours = {(frame["event"], registered(frame) or delivered(frame)): frame["id"] for frame in frames}
    return {key: event_id for key, event_id in ours.items() if key[1] in (*sandboxes, message_id)}


def test_every_node_sends_an_event_with_one_id_and_resumes_from_it(two_nodes):
    bus = two_nodes
    with ws_connect(f"{bus.api_ws_url('api')}/ws/events") as on_a, \
            ws_connect(f"{bus.api_ws_url('api2')}/ws/events") as on_b:
        assert welcome_of(on_a)["last_event_id"] == welcome_of(on_b)["last_event_id"]
        live = [f"live-{n}" for n in range(3)]
        register(bus, "api", live[:2])
        register(bus, "api2", live[2:])
        message_id = send(bus, "api", live[0], live[1])
        seen_a, seen_b = frames_until(on_a, live[-1], message_id), frames_until(on_b, live[-1], message_id)
    assert_exactly(seen_a, live, message_id=message_id)
    assert_exactly(seen_b, live, message_id=message_id)
    assert ids_of(seen_a, live, message_id) == ids_of(seen_b, live, message_id)  # one id per event, on every node
    last_seen = max(seen_a, key=lambda frame: order(frame["id"]))["id"]

    missed = [f"missed-{n}" for n in range(5)]  # while no events socket is open: through both nodes
    register(bus, "api2", missed[:3])
    register(bus, "api", missed[3:])
    message_id = send(bus, "api2", missed[0], missed[4])
    welcome, frames = resume(bus, "api2", last_seen, missed[-1], message_id)  # on the other node
    assert (welcome["resumed"], "missed" in welcome) == (True, False), welcome
    assert_exactly(frames, missed, after=last_seen, message_id=message_id)
    assert welcome["replayed"] >= len(missed) + 1

    last_seen = max(frames, key=lambda frame: order(frame["id"]))["id"]
    bus.stop_api("api")  # node A restarts; events pass meanwhile
    after_restart = [f"restart-{n}" for n in range(4)]
    register(bus, "api2", after_restart[:2])
    bus.start_api("api")
    register(bus, "api", after_restart[2:])
    welcome, frames = resume(bus, "api", last_seen, after_restart[-1])
    assert welcome["resumed"] is True and "missed" not in welcome, welcome
    assert_exactly(frames, after_restart, after=last_seen)


def test_a_since_the_stream_no_longer_holds_or_never_had_is_missed(two_nodes):
    bus = two_nodes
    with ws_connect(f"{bus.api_ws_url('api')}/ws/events") as events:
        welcome_of(events)
        register(bus, "api", ["old"])
        old = frames_until(events, "old")[-1]["id"]
    register(bus, "api2", ["newer-1", "newer-2"])
    assert trim_to_the_newest(bus) >= 2  # `old` and newer-1's registration after it are gone
    with ws_connect(f"{bus.api_ws_url('api2')}/ws/events?since={old}") as events:
        welcome = welcome_of(events)
    assert (welcome["resumed"], welcome["replayed"]) == (False, 0) and "no longer kept" in welcome["missed"]

    newer = "99999999999999-0" if bus.mode == "redis" else f"{old.split('-')[0]}-99999999999999"  # (its epoch)
    with ws_connect(f"{bus.api_ws_url('api')}/ws/events?since={newer}") as events:
        assert "newer than any event" in welcome_of(events)["missed"]
    with ws_connect(f"{bus.api_ws_url('api')}/ws/events?since=0123456789ab-5") as events:
        assert "another API process" in welcome_of(events)["missed"]  # a per-process log's id


def trim_to_the_newest(bus: BusProcess) -> int:
    """Remove every event but the newest from the bus's event log (its Redis or JetStream stream); how many went."""
    if bus.mode == "redis":
        client = redis.Redis.from_url(bus.env["REDIS_URL"])
        try:
            return client.xtrim("collab.notify.events", maxlen=1, approximate=False)
        finally:
            client.close()

    async def purge() -> int:
        nc = await nats.connect(bus.env["NATS_URL"], connect_timeout=5, allow_reconnect=False)
        try:
            js, stream = nc.jetstream(timeout=5), f"{bus.env['NATS_PREFIX']}-events"
            before = (await js.stream_info(stream)).state.messages
            await js.purge_stream(stream, keep=1)
            return before - (await js.stream_info(stream)).state.messages
        finally:
            await nc.close()

    return asyncio.run(purge())
