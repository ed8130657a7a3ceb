"""Priorities on a real broker: with a backlog, higher-priority messages are delivered first.

The bus starts with its API only, so every message of the backlog waits on the broker (Redis: one list per
priority step, `queue_order_strategy=priority`; RabbitMQ: the `delivery` queue's `x-max-priority`). Then the
worker starts and drains it. A mailbox's seq is delivery order, so the seqs show which messages went first.
The worker prefetches (4 threads x CELERY_PREFETCH_MULTIPLIER=1) and runs tasks concurrently, which can swap a
few messages around the boundary; the assertion leaves that margin and no more.
"""

from __future__ import annotations

import httpx
import pytest

from tests.servers import BusProcess, bus_client, wait_for

PER_PRIORITY = 60
LOW, HIGH = 1, 9
MARGIN = 10  # entries either side of the boundary that prefetch and concurrency may swap


@pytest.fixture(params=["redis", "rabbitmq"])
def bus_without_worker(request):
    """A bus on a real broker whose API runs and whose worker does not (yet)."""
    if request.param == "redis":
        broker = {"redis_url": request.getfixturevalue("redis_server").url}
    else:
        broker = {"rabbitmq": request.getfixturevalue("rabbitmq_server")}
    bus = BusProcess(request.param, worker=False, extra_env={"CELERY_PREFETCH_MULTIPLIER": "1"}, **broker)
    yield bus
    bus.cleanup()


def mailbox(client: httpx.Client, sandbox_id: str) -> list[dict]:
    """Every entry of the mailbox, in seq order."""
    entries, since = [], 0
    while True:
        page = client.get(f"/api/v1/sandboxes/{sandbox_id}/messages", params={"since": since, "limit": 1000}).json()
        entries += page["entries"]
        if not page["entries"]:
            return entries
        since = page["next_since"]


def test_backlog_is_delivered_highest_priority_first(bus_without_worker, unique):
    bus = bus_without_worker
    sender, receiver = unique("sender"), unique("receiver")
    with bus_client(bus.url, timeout=10) as client:
        for sandbox in (sender, receiver):
            assert client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201
        priority_of = {}
        for i in range(PER_PRIORITY):  # interleaved: low, high, low, high, ...
            for priority in (LOW, HIGH):
                response = client.post("/api/v1/messages", json={
                    "from_sandbox": sender, "to_sandbox": receiver, "from_agent": "agent",
                    "message_type": "notification", "content": {"i": i}, "priority": priority})
                assert response.status_code == 202, response.text
                priority_of[response.json()["message_id"]] = priority
        assert mailbox(client, receiver) == []  # no worker: the whole backlog waits on the broker

        bus.start_worker()

        def complete():
            entries = mailbox(client, receiver)
            return entries if len(entries) == len(priority_of) else None

        entries = wait_for(complete, 60, f"{len(priority_of)} entries in the mailbox of {receiver}")

    assert [e["seq"] for e in entries] == list(range(1, len(priority_of) + 1))
    assert sorted(e["message"]["message_id"] for e in entries) == sorted(priority_of)
    order = [priority_of[e["message"]["message_id"]] for e in entries]
    assert [e["message"]["priority"] for e in entries] == order
    shown = "".join("H" if p == HIGH else "l" for p in order)  # e.g. HHHH…Hllll…l
    certain = PER_PRIORITY - MARGIN
    assert order[:certain] == [HIGH] * certain, f"delivery order (H = {HIGH}, l = {LOW}): {shown}"
    assert order[-certain:] == [LOW] * certain, f"delivery order (H = {HIGH}, l = {LOW}): {shown}"
