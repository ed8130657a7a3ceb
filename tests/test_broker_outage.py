"""The database is the source of truth: with the broker down, sends are still accepted (202) without hanging,
and the outbox sweep delivers them once the broker is back."""

from __future__ import annotations

import time

from tests.servers import BusProcess, RedisServer, bus_client, wait_for

SWEEP = {"OUTBOX_SWEEP_INTERVAL": "0.5", "OUTBOX_SWEEP_AFTER": "0.5"}


def send_during_outage(http, redis: RedisServer, unique, message_type: str) -> tuple[str, list[str]]:
    """Register a sender and a recipient, stop Redis and send five messages (each answered 202); the recipient and
    the accepted message ids. Redis stays stopped."""
    a, b = unique("a"), unique("b")
    for sandbox in (a, b):
        assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
    redis.stop()
    answers = [http.post("/api/v1/messages", json={
        "from_sandbox": a, "to_sandbox": b, "from_agent": "x", "message_type": message_type,
        "content": {"i": i}}) for i in range(5)]
    assert [r.status_code for r in answers] == [202] * 5, [r.text for r in answers]
    return b, [r.json()["message_id"] for r in answers]


def test_sends_during_a_redis_outage_are_accepted_and_delivered_after(unique):
    redis = RedisServer()
    bus = BusProcess("redis", redis_url=redis.url, with_beat=True, extra_env=SWEEP)
    try:
        with bus_client(bus.url, timeout=30) as http:
            b, accepted = send_during_outage(http, redis, unique, "request")
            assert all(http.get(f"/api/v1/messages/{m}").json()["status"] == "accepted" for m in accepted)

            redis.start()
            wait_for(lambda: all(http.get(f"/api/v1/messages/{m}").json()["status"] == "delivered" for m in accepted),
                     60, "the outbox sweep to deliver what was accepted during the outage")
            page = http.get(f"/api/v1/sandboxes/{b}/messages", params={"since": 0}).json()
        assert sorted(e["message"]["message_id"] for e in page["entries"]) == sorted(accepted)
        assert [e["seq"] for e in page["entries"]] == [1, 2, 3, 4, 5]
        assert "Traceback" not in (bus.dir / "api.log").read_text()
    finally:
        bus.cleanup()
        redis.cleanup()


def test_a_node_enqueues_what_the_broker_missed_as_soon_as_it_is_back(unique):
    """A one-second Redis outage: the API node keeps the delivery tasks the broker refused and hands them over
    itself once Redis is back. The outbox sweep is held off (OUTBOX_SWEEP_AFTER of an hour), so only the node's
    retry can have delivered them. The stall, from Redis back to the last entry in its mailbox, is printed."""
    redis = RedisServer()
    bus = BusProcess("redis", redis_url=redis.url, with_beat=True, extra_env={"OUTBOX_SWEEP_AFTER": "3600"})
    try:
        with bus_client(bus.url, timeout=30) as http:
            b, accepted = send_during_outage(http, redis, unique, "notification")
            time.sleep(1)
            redis.start()
            back = time.monotonic()
            wait_for(lambda: all(http.get(f"/api/v1/messages/{m}").json()["status"] == "delivered" for m in accepted),
                     30, "the API node to enqueue what Redis missed")
            stall = time.monotonic() - back
            page = http.get(f"/api/v1/sandboxes/{b}/messages", params={"since": 0}).json()
        log = (bus.dir / "api.log").read_text()
        retried = [line for line in log.splitlines() if "delivery tasks the broker missed are enqueued again" in line]
        print(f"\n[enqueue retry] {len(accepted)} messages accepted during a 1 s Redis outage; "
              f"in the mailbox {stall:.2f} s after Redis was back; the node: {retried}")
        assert sorted(e["message"]["message_id"] for e in page["entries"]) == sorted(accepted)
        assert retried and "Traceback" not in log
    finally:
        bus.cleanup()
        redis.cleanup()
