"""Fault tests on a bus over NATS JetStream (a nats-server of each test's own, file storage, `sync_interval:
always`), beside the broker and API restarts tests/test_faults.py runs on NATS too: a worker killed while it holds
tasks, tasks NATS lost (recovered by the outbox sweep), readiness while the server is down. Each accounts for every
message the bus committed: exactly one mailbox entry per intended recipient or a dead letter, nothing lost, nothing
handled twice.

Timeouts only bound how long a broken bus can hang the run; nothing asserts a timing.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.nats_server import NatsServer
from tests.servers import bus_client, wait_for
from tests.test_faults import PER_SENDER, SETTLE_TIMEOUT, SWEEP, _midstream, _start, _task_ids, buses  # noqa: F401
from tests.traffic import (
    assert_exactly_once,
    assert_workers_alive,
    log_lines,
    report,
    settle,
)

ACK_WAIT = {"NATS_ACK_WAIT": "4"}  # JetStream gives the tasks of a dead worker to another one after 4 s


@pytest.fixture
def nats():
    """A nats-server of this test alone (it may be stopped, killed and restarted on its port and store)."""
    server = NatsServer()
    yield server
    server.cleanup()


def test_kill_9_a_worker_mid_delivery(nats, buses):
    """Two workers and beat: one worker is frozen while it holds tasks it received and has not finished (so not
    acknowledged: acks_late), then killed with SIGKILL. JetStream gives those tasks to the other worker once their
    ack wait (3 s) passes, and the deliveries (idempotent) complete exactly once. Tasks the victim had fetched but
    not yet handed to Celery are unacknowledged too and come back the same way."""
    started = time.monotonic()
    bus = buses("nats", nats_url=nats.url, with_beat=True,
                extra_env={"NATS_ACK_WAIT": "3", "OUTBOX_SWEEP_AFTER": "10", "OUTBOX_SWEEP_INTERVAL": "1"})
    bus.start_worker("worker2")
    victim = bus.workers["worker"]
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http)
        senders.start()
        _midstream(senders)

        def frozen_holding_tasks() -> set[str]:
            """Freeze the worker (SIGSTOP); keep it frozen if it holds unfinished tasks, else let it go on."""
            os.killpg(victim.pid, signal.SIGSTOP)
            stranded = _task_ids(bus, "worker", "received") - _task_ids(bus, "worker", "succeeded")
            if not stranded:
                os.killpg(victim.pid, signal.SIGCONT)
            return stranded

        stranded = wait_for(frozen_holding_tasks, 30, "the worker to hold unfinished tasks")
        bus.kill_worker("worker", signal.SIGKILL)
        outcome = senders.join()
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        assert_workers_alive(bus)
        wait_for(lambda: stranded <= _task_ids(bus, "worker2", "succeeded"), 30,
                 "worker2 to rerun the tasks the killed worker held")
    report("nats: kill -9 worker", outcome, account, started,
           f"tasks the killed worker held unfinished: {len(stranded)}, all rerun by worker2",
           f"tasks received: worker {len(_task_ids(bus, 'worker', 'received'))}, "
           f"worker2 {len(_task_ids(bus, 'worker2', 'received'))}")
    assert_exactly_once(account)
    assert len(outcome.accepted) == 3 * PER_SENDER and not outcome.failed, outcome.failed
    assert not log_lines(bus, "worker2", "Traceback") and not log_lines(bus, "api", "Traceback")


def test_readyz_reports_the_nats_server_lost_and_back(nats, buses):
    """/readyz answers 503 naming the broker while the NATS server is down, and 200 once it is back (the load
    balancer's health check); the status report reads each queue's stream."""
    bus = buses("nats", nats_url=nats.url)
    with bus_client(bus.url, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        nats.stop()
        down = http.get("/readyz")
        assert down.status_code == 503 and down.json()["error"]["details"]["broker"] != "ok", down.text
        nats.start()
        wait_for(lambda: http.get("/readyz").status_code == 200, 30, "/readyz to be ready again")
        status = http.get("/api/v1/collaboration/status")
        assert status.status_code == 200 and set(status.json()["queues"]) == {"delivery", "lifecycle", "maintenance"}


def test_tasks_nats_lost_are_sent_again_by_the_outbox_sweep(nats, buses):
    """What Jepsen saw NATS 2.12.1 do with its default fsync (acknowledged writes lost when servers crash together),
    made certain: 60 messages are accepted and their tasks acknowledged by NATS, then the delivery stream loses them
    all (purged) before any worker runs. The database holds the truth: once a worker runs, the outbox sweep finds
    them accepted and never routed, sends them again, and each is delivered exactly once."""
    import asyncio

    import nats as nats_client

    started = time.monotonic()
    bus = buses("nats", nats_url=nats.url, worker=False, with_beat=True,
                extra_env={"OUTBOX_SWEEP_AFTER": "1", "OUTBOX_SWEEP_INTERVAL": "0.5"})
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http, pause=0.002)
        senders.per_sender = 20
        senders.start()
        outcome = senders.join()

        async def purge_delivery() -> int:
            nc = await nats_client.connect(nats.url)
            try:
                js = nc.jetstream()
                stream = f"{bus.env['NATS_PREFIX']}-delivery"
                waiting = (await js.stream_info(stream)).state.messages
                await js.purge_stream(stream)
                return waiting
            finally:
                await nc.close()

        lost = asyncio.run(purge_delivery())
        bus.start_worker()
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
    swept = sum(int(line.split("re-enqueued ")[1].split()[0]) for line in log_lines(bus, "worker", "outbox sweep:"))
    report("nats: tasks lost", outcome, account, started, f"tasks NATS lost: {lost}",
           f"messages re-sent by the outbox sweep: {swept}")
    assert lost >= 1  # tasks (one per message, or a batch per several) really were lost
    assert len(outcome.accepted) == 60 and not outcome.failed, outcome.failed
    assert swept >= len(outcome.accepted)  # every message was re-sent: none had been routed
    assert_exactly_once(account)
