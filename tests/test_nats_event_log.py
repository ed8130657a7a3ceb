"""app/brokers/nats_events.py against a real nats-server with JetStream (tests/nats_server.py): the event log of a NATS
bus is one bounded stream every node shares. An event is stamped once with `<epoch>-<stream sequence>`; any node
replays exactly the events after an id, in order; an id the stream no longer keeps, never had, or from another log
(a per-process one, or a stream made again) is answered as missed; a NATS outage is logged and answered as missed,
in bounded time, and the log works again once a server is back; on a 3-server cluster (R3) it survives losing the
stream's leader."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid

import nats
import pytest
from nats.js import api

from app.brokers.nats_events import NatsEventLog
from app.services.event_log import EVENT_ID, event_frame
from tests.nats_server import NatsCluster, NatsServer
from tests.servers import wait_for

BOUND = 30  # seconds any one call of the log must return within (it gives up after about 2)


@pytest.fixture(scope="module")
def server():
    srv = NatsServer()
    yield srv
    srv.cleanup()


@pytest.fixture
def names():
    """A stream and subject of their own."""
    token = uuid.uuid4().hex[:10]
    return f"ev-{token}", f"t{token}.events"


@pytest.fixture
def logs():
    """Closes the logs a test made."""
    made: list[NatsEventLog] = []
    yield made
    for log in made:
        log.close()


def node(logs: list, servers: list[str], names: tuple[str, str], **options) -> NatsEventLog:
    """An event log as one node of the bus has it (a client of its own)."""
    log = NatsEventLog(servers, *names, **options)
    logs.append(log)
    return log


def event(n: int) -> dict:
    return {"event": "sandbox.registered", "data": {"n": n}, "timestamp": 1.0}


def notification(*numbers: int) -> dict:
    """An event notification, or a batch of them."""
    items = [{"kind": "event", "event": event(n)} for n in numbers]
    return items[0] if len(items) == 1 else {"kind": "batch", "items": items}


def stamped(log: NatsEventLog, *numbers: int) -> list[str | None]:
    """Stamp the events `numbers` (one notification) and return their ids (None: not stamped)."""
    sent = log.stamp(notification(*numbers))
    return [item.get("event_id") for item in (sent["items"] if sent["kind"] == "batch" else [sent])]


def order(event_id: str) -> tuple[int, int]:
    epoch, seq = event_id.split("-")
    return int(epoch), int(seq)


def numbers_of(replayed: list[tuple[str, str]]) -> list[int]:
    """The event numbers of replayed frames (checking each frame carries its id)."""
    frames = [json.loads(frame) for _, frame in replayed]
    assert [frame["id"] for frame in frames] == [event_id for event_id, _ in replayed]
    return [frame["data"]["n"] for frame in frames]


def within(call, bound: float = BOUND):
    """`call()`'s result; fails when it has not returned after `bound` seconds (a NATS outage must not hang it)."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(bound)
    assert not worker.is_alive(), f"{call} still running after {bound} s"
    return result[0]


def admin(url: str, work):
    """`await work(js)` with a client of its own on `url`."""

    async def run():
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=1)
        try:
            return await work(nc.jetstream(timeout=5))
        finally:
            await nc.close()

    return asyncio.run(run())


def test_events_are_stamped_with_increasing_ids_in_stream_order(server, names, logs):
    log = node(logs, [server.url], names)
    assert log.last_id is None  # (the stream is made on this first use)
    ids = stamped(log, 1, 2, 3, 4, 5) + stamped(log, 6)
    assert all(EVENT_ID.match(event_id) for event_id in ids)  # an id the events socket's `since` takes
    assert len({order(event_id)[0] for event_id in ids}) == 1
    assert [order(event_id)[1] for event_id in ids] == [1, 2, 3, 4, 5, 6]
    assert log.last_id == ids[-1]
    again = log.stamp(notification(7))
    first = again["event_id"]
    assert log.stamp(again)["event_id"] == first and log.last_id == first  # stamped once
    assert log.record(event(7), first) == first
    assert log.frame(first, event(7)) == event_frame(first, event(7))
    assert log.stamp({"kind": "entries_seen"}) == {"kind": "entries_seen"}  # carries no event: nothing appended


def test_another_node_replays_exactly_the_events_after_an_id_in_order(server, names, logs):
    a, b = node(logs, [server.url], names), node(logs, [server.url], names)
    from_a = stamped(a, 1, 2, 3)
    from_b = stamped(b, 4, 5)
    from_a += stamped(a, 6)
    assert a.last_id == b.last_id == from_a[-1]
    replayed, missed = b.replay(from_a[0])
    assert missed is None
    assert [event_id for event_id, _ in replayed] == from_a[1:3] + from_b + from_a[3:]
    assert numbers_of(replayed) == [2, 3, 4, 5, 6]
    assert replayed[0][1] == event_frame(from_a[1], event(2))
    replayed, missed = a.replay(from_b[1])
    assert (numbers_of(replayed), missed) == ([6], None)
    assert a.replay(from_a[-1]) == ([], None)  # up to date


def test_many_events_are_replayed_in_order(server, names, logs):
    a, b = node(logs, [server.url], names), node(logs, [server.url], names)
    ids = [event_id for start in range(0, 2500, 100) for event_id in stamped(a, *range(start, start + 100))]
    replayed, missed = b.replay(ids[0])
    assert missed is None and numbers_of(replayed) == list(range(1, 2500))
    assert [event_id for event_id, _ in replayed] == ids[1:]


def test_a_since_the_stream_no_longer_keeps_never_had_or_another_log_gave_is_missed(server, names, logs):
    a, b = node(logs, [server.url], names, kept=3), node(logs, [server.url], names, kept=3)
    ids = stamped(a, 1, 2, 3, 4, 5, 6)  # the stream keeps 4, 5 and 6
    replayed, missed = b.replay(ids[1])
    assert replayed == [] and "no longer kept" in missed
    replayed, missed = b.replay(ids[2])  # the id just before the first kept: nothing after it is lost
    assert missed is None and numbers_of(replayed) == [4, 5, 6]
    epoch, last = order(ids[-1])
    for newer in (f"{epoch}-{last + 1}", f"{epoch}-99999999"):
        assert b.replay(newer) == ([], "the event id is newer than any event of the bus")
    admin(server.url, lambda js: js.delete_msg(names[0], order(ids[4])[1]))  # a gap: event 5 deleted by hand
    replayed, missed = b.replay(ids[2])
    assert replayed == [] and "no longer kept" in missed
    assert numbers_of(b.replay(ids[4])[0]) == [6]
    for foreign in ("0123456789ab-5", f"{epoch + 1}-2", f"{epoch - 1}-5", "1733000000000-0", "7", "x-1"):
        replayed, missed = b.replay(foreign)  # a per-process log's, another stream's, a Redis id, malformed
        assert replayed == [] and "another API process" in missed, foreign


def test_ids_of_a_stream_made_again_are_not_resumed_in_the_new_one(server, names, logs):
    log = node(logs, [server.url], names)
    old = stamped(log, 1, 2, 3)
    admin(server.url, lambda js: js.delete_stream(names[0]))
    new = wait_for(lambda: all(stamped(log, 4, 5, 6)) and log.last_id, 10, "the stream made again")
    assert order(new)[1] == 3 and order(new)[0] != order(old[0])[0]  # numbered from 1 again, another epoch
    replayed, missed = log.replay(old[0])  # seq 1 exists in the new stream: it must not resume there
    assert replayed == [] and "another API process" in missed
    assert numbers_of(log.replay(f"{order(new)[0]}-1")[0]) == [5, 6]


def test_a_stream_that_exists_is_used_as_it_is_also_without_direct_get(server, names, logs):
    stream, subject = names
    admin(server.url, lambda js: js.add_stream(api.StreamConfig(
        name=stream, subjects=[subject], storage=api.StorageType.MEMORY, max_msgs=50, allow_direct=False)))
    a, b = node(logs, [server.url], names), node(logs, [server.url], names)
    ids = [event_id for start in range(0, 300, 100) for event_id in stamped(a, *range(start, start + 100))]
    replayed, missed = b.replay(ids[-50])  # read with the leader's message get
    assert missed is None and numbers_of(replayed) == list(range(251, 300))
    assert "no longer kept (the last 50 are)" in b.replay(ids[-52])[1]
    info = admin(server.url, lambda js: js.stream_info(stream))
    assert (info.config.max_msgs, info.config.storage, info.config.allow_direct) == (50, api.StorageType.MEMORY, False)


def test_the_stream_made_is_bounded_file_backed_and_replicated_as_configured(server, names, logs):
    log = node(logs, [server.url], names, kept=20)
    stamped(log, *range(30))
    config = admin(server.url, lambda js: js.stream_info(names[0])).config
    assert (config.subjects, config.max_msgs, config.discard, config.retention, config.storage,
            config.num_replicas) == ([names[1]], 20, api.DiscardPolicy.OLD, api.RetentionPolicy.LIMITS,
                                     api.StorageType.FILE, 1)
    info = admin(server.url, lambda js: js.stream_info(names[0]))
    assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (20, 11, 30)


def test_a_nats_outage_is_logged_and_answered_as_missed_then_the_log_works_again(names, logs, caplog):
    srv = NatsServer()
    try:
        a, b = node(logs, [srv.url], names), node(logs, [srv.url], names)
        before = stamped(a, 1, 2)
        srv.kill()
        caplog.set_level(logging.WARNING, logger="app.brokers.nats_events")
        for _ in range(3):  # the first calls may wait for a reconnection, the later ones give up at once
            sent = within(lambda: a.stamp(notification(3, 4)))
            assert all("event_id" not in item for item in sent["items"])
            replayed, missed = within(lambda: b.replay(before[0]))
            assert replayed == [] and "cannot be read now" in missed
            assert within(lambda: b.last_id) is None
        assert "could not append 2 event(s) to the event log" in caplog.text
        fresh = node(logs, [srv.url], names)  # a process that never reached NATS
        assert within(lambda: fresh.stamp(notification(5))) == notification(5)
        assert "cannot be read now" in within(lambda: fresh.replay(before[0]))[1]

        srv.start()
        after = wait_for(lambda: all(ids := stamped(a, 6, 7)) and ids, 20, "a stamp after NATS restarted")
        after += wait_for(lambda: all(ids := stamped(fresh, 8)) and ids, 20, "a stamp by the log that never connected")
        replayed, missed = b.replay(before[0])  # the stream (file store) kept what came before
        ours = before[1:] + after
        assert missed is None and [event_id for event_id, _ in replayed if event_id in ours] == ours
        assert numbers_of([r for r in replayed if r[0] in ours]) == [2, 6, 7, 8]
        assert set(numbers_of(replayed)) <= {2, 3, 4, 6, 7, 8}  # a publish cut by the loss may be sent on reconnection
    finally:
        srv.cleanup()


def test_an_r3_log_stays_readable_and_writable_when_its_leader_is_lost(names, logs):
    cluster = NatsCluster()
    try:
        a = node(logs, cluster.urls, names, replicas=3)
        b = node(logs, list(reversed(cluster.urls)), names, replicas=3)
        first = wait_for(lambda: all(ids := stamped(a, 0)) and ids[0], 30, "the R3 stream on the new cluster")
        sent = {0: first}
        for n in range(1, 6):
            sent[n] = wait_for(lambda n=n: stamped(b if n % 2 else a, n)[0], 20, f"event {n}")
        info = admin(cluster.urls[0], lambda js: js.stream_info(names[0]))
        assert info.config.num_replicas == 3 and info.cluster.leader
        leader = next(s for s in cluster.servers if f'"{info.cluster.leader}"' in s.config.read_text())
        leader.kill()

        for n in range(6, 12):  # through the election: an event not stamped (id null) is retried as another
            sent[n] = wait_for(lambda n=n: stamped(a if n % 2 else b, n)[0], 30, f"event {n} after the loss")
        for reader in (a, b):
            replayed, missed = wait_for(lambda reader=reader: (r := reader.replay(first))[1] is None and r, 30,
                                        "a replay after the loss")
            stamped_ids = {event_id: n for n, event_id in sent.items() if n}
            assert [event_id for event_id, _ in replayed if event_id in stamped_ids] == list(stamped_ids)
            assert numbers_of([r for r in replayed if r[0] in stamped_ids]) == list(range(1, 12))
            # an event whose publish timed out during the election may still have been stored: only ours are there
            assert set(numbers_of(replayed)) <= set(range(1, 12))
        leader.start()
    finally:
        cluster.cleanup()
