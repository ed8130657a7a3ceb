"""Fault tests over real processes (Redis with appendonly, and for the broker and API restarts also NATS
JetStream; collab-bus api + workers + beat, real sockets). More on NATS: tests/test_nats_faults.py.

Each runs a few hundred messages from three sender threads to three recipients (direct messages and broadcasts),
injects a fault mid-stream, waits until the bus settles, and then accounts for every message the bus committed
(each 202, and any request that failed on the client's side but was committed anyway): exactly one mailbox entry
per intended recipient or a dead letter, each mailbox numbered 1..N, nothing lost, nothing duplicated. Socket
clients must have processed every seq exactly once (deduplicating by seq after a reconnect with `since`).

Timeouts are generous and nothing asserts a timing: they only bound how long a broken bus can hang the run.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.nats_server import NatsServer
from tests.servers import BusProcess, RedisServer, bus_client, wait_for
from tests.traffic import (
    MailboxReader,
    Outcome,
    Senders,
    assert_exactly_once,
    assert_reader_saw_every_entry,
    assert_workers_alive,
    log_lines,
    mailbox,
    register,
    report,
    settle,
)

PER_SENDER = 100  # three senders: 300 accepted messages per test, about 8 % of them broadcasts
SETTLE_TIMEOUT = 120
# Redis gives the tasks of a dead worker to another one after this many seconds (default 3600).
VISIBILITY = {"REDIS_VISIBILITY_TIMEOUT": "4"}
# Beat re-enqueues messages accepted but still unrouted 2 s later (e.g. the API died between commit and enqueue).
SWEEP = {"OUTBOX_SWEEP_AFTER": "2", "OUTBOX_SWEEP_INTERVAL": "1"}


@pytest.fixture
def redis_aof():
    """A redis-server of this test alone, with appendonly yes (it may be stopped, killed and restarted)."""
    server = RedisServer(appendonly=True)
    yield server
    server.cleanup()


@dataclass
class RestartableBroker:
    """A broker server of one test (`server`: stop(), kill(sig), start() on the same port and store), the
    BusProcess mode and arguments that reach it, and the settings that make a dead worker's tasks come back soon."""

    kind: str
    server: RedisServer | NatsServer
    bus_args: dict
    env: dict


@pytest.fixture(params=["redis", "nats"])
def restartable_broker(request):
    """Redis with appendonly yes, or a nats-server (JetStream file store, sync_interval always), of this test."""
    if request.param == "redis":
        server = RedisServer(appendonly=True)
        broker = RestartableBroker("redis", server, {"redis_url": server.url}, VISIBILITY)
    else:
        server = NatsServer()
        broker = RestartableBroker("nats", server, {"nats_url": server.url}, {"NATS_ACK_WAIT": "4"})
    yield broker
    server.cleanup()


@pytest.fixture
def buses():
    """Make buses (BusProcess(...) arguments) that are cleaned up after the test."""
    made = []

    def make(*args, **kwargs) -> BusProcess:
        made.append(BusProcess(*args, **kwargs))
        return made[-1]

    yield make
    for bus in made:
        bus.cleanup()


class Cast:
    """The sandboxes of one run: three senders and three recipients, all registered (broadcasts reach five)."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.senders = [f"s{i}-{tag}" for i in range(3)]
        self.recipients = [f"r{i}-{tag}" for i in range(3)]
        self.all = self.senders + self.recipients


def _start(bus: BusProcess, http: httpx.Client, **load) -> tuple[Cast, Senders]:
    cast = Cast()
    register(http, *cast.all)
    return cast, Senders(bus.url, cast.senders, cast.recipients, cast.tag, PER_SENDER, **load)


def _midstream(senders: Senders, accepted: int = PER_SENDER) -> None:
    wait_for(lambda: senders.accepted_count >= accepted, 60, f"{accepted} accepted messages")


def _task_ids(bus: BusProcess, worker: str, what: str) -> set[str]:
    """Ids of the deliver tasks that worker's log says were `received` / `succeeded`."""
    return {line.split("deliver[", 1)[1].split("]", 1)[0]
            for line in log_lines(bus, worker, "workers.delivery.deliver[") if f"] {what}" in line}


def _unacked_tasks(broker: redis.Redis) -> dict[str, str]:
    """Task id -> message id of every task Redis holds as taken but not acknowledged (kombu's `unacked` hash)."""
    held = {}
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]  # [payload, exchange, routing key]
        body = json.loads(base64.b64decode(message["body"])) if message.get("properties", {}).get(
            "body_encoding") == "base64" else json.loads(message["body"])
        if message["headers"].get("task") == "workers.delivery.deliver" and body[0]:  # not the argument-less sweeps
            held[message["headers"]["id"]] = body[0][0]
    return held


def test_kill_9_a_worker_mid_delivery(redis_aof, buses):
    """Two workers and beat: one worker is frozen while it holds tasks it has not acknowledged, then killed with
    SIGKILL. Redis hands those tasks to the other worker after the visibility timeout (3 s) and the deliveries
    (idempotent) complete exactly once. A task Redis had already popped for the victim (BRPOP) but that the victim
    never recorded as unacknowledged is gone from Redis: its message stays `accepted` until the outbox sweep (after
    10 s here, so the two recoveries are told apart) enqueues it again."""
    started = time.monotonic()
    bus = buses("redis", redis_url=redis_aof.url, with_beat=True,
                extra_env={"REDIS_VISIBILITY_TIMEOUT": "3", "OUTBOX_SWEEP_AFTER": "10", "OUTBOX_SWEEP_INTERVAL": "1"})
    bus.start_worker("worker2")
    victim = bus.workers["worker"]
    broker = redis.Redis.from_url(bus.env["REDIS_URL"])
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http)
        senders.start()
        _midstream(senders)

        def frozen_holding_tasks() -> dict[str, str]:
            """Freeze the worker (SIGSTOP); keep it frozen if it holds unfinished tasks, else let it go on."""
            os.killpg(victim.pid, signal.SIGSTOP)
            stranded = {task: message for task, message in _unacked_tasks(broker).items()
                        if task in _task_ids(bus, "worker", "received") - _task_ids(bus, "worker", "succeeded")}
            if not stranded:
                os.killpg(victim.pid, signal.SIGCONT)
            return stranded

        stranded = wait_for(frozen_holding_tasks, 30, "the worker to hold unfinished tasks")
        bus.kill_worker("worker", signal.SIGKILL)  # mid-delivery: these tasks were taken and never acknowledged
        outcome = senders.join()
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        assert_workers_alive(bus)
        # Every message may already be placed (the victim may have committed before it froze) while Redis has not
        # yet handed the stranded tasks over (visibility timeout, then the survivor's next restore): wait for it.
        wait_for(lambda: set(stranded) <= _task_ids(bus, "worker2", "succeeded"), 30,
                 "worker2 to rerun the tasks the killed worker held")
        finished_by_worker2 = set(stranded) & _task_ids(bus, "worker2", "succeeded")
    swept = sum(int(line.split("re-enqueued ")[1].split()[0]) for line in log_lines(bus, "worker2", "outbox sweep:"))
    report("kill -9 worker", outcome, account, started,
           f"tasks the killed worker held unfinished: {len(stranded)}, rerun by worker2: {len(finished_by_worker2)}",
           f"messages re-enqueued by the outbox sweep (task lost with the victim): {swept}",
           f"tasks received: worker {len(_task_ids(bus, 'worker', 'received'))}, "
           f"worker2 {len(_task_ids(bus, 'worker2', 'received'))}")
    assert_exactly_once(account)
    assert len(outcome.accepted) == 3 * PER_SENDER and not outcome.failed, outcome.failed
    assert finished_by_worker2 == set(stranded)  # Redis gave each stranded task to the survivor
    assert all(account.placed(message_id) for message_id in stranded.values())
    assert not log_lines(bus, "worker2", "Traceback") and not log_lines(bus, "api", "Traceback")


@pytest.mark.parametrize("crash", [False, True], ids=["shutdown", "kill-9"])
def test_restart_the_broker_mid_stream(restartable_broker, buses, crash):
    """The broker (Redis with appendonly yes, or NATS with its JetStream file store) goes away mid-stream for 2 s
    and comes back on the same port and files, shut down cleanly or killed with SIGKILL; sends go on meanwhile
    (committed, answered 202, enqueued by the outbox sweep once it is back); a recipient holds its socket
    throughout and reconnects whenever it is dropped."""
    started = time.monotonic()
    broker = restartable_broker
    bus = buses(broker.kind, with_beat=True, extra_env={**broker.env, **SWEEP}, **broker.bus_args)
    bus.start_worker("worker2")
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http, pause=0.005)
        reader = MailboxReader(bus.ws_url, cast.recipients[0]).start_and_wait()
        senders.start()
        _midstream(senders)
        if crash:
            broker.server.kill(signal.SIGKILL)
        else:
            broker.server.stop()
        time.sleep(2)  # sends go on meanwhile: committed, answered 202, enqueued later by the outbox sweep
        broker.server.start()
        outcome = senders.join()
        assert_workers_alive(bus)  # they reconnect; none may stop over the lost connection
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)
        reader.stop()
    report(f"{broker.kind} {'kill -9' if crash else 'restart'}", outcome, account, started, reader.summary())
    assert_exactly_once(account)
    assert len(outcome.accepted) == 3 * PER_SENDER and not outcome.failed, outcome.failed
    assert_reader_saw_every_entry(reader, account)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_restart_the_api_mid_stream(restartable_broker, buses, sig):
    """The API process is stopped (gunicorn's graceful SIGTERM, or SIGKILL) mid-stream and started again on the
    same port, on Redis and on NATS (its fanout listener and event log reconnect). Sends meanwhile fail on the
    client's side and are not counted as accepted (but any the bus did commit must be delivered too); socket
    clients reconnect with since until the API answers again."""
    started = time.monotonic()
    broker = restartable_broker
    bus = buses(broker.kind, with_beat=True, extra_env={**broker.env, **SWEEP}, **broker.bus_args)
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http, pause=0.005, retry_pause=0.1)
        readers = [MailboxReader(bus.ws_url, r).start_and_wait() for r in cast.recipients[:2]]
        senders.start()
        _midstream(senders)
        bus.restart_api("api", sig, down_for=1)
        outcome = senders.join()
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        for reader in readers:
            reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)
            reader.stop()
    report(f"{broker.kind}: api {signal.Signals(sig).name}", outcome, account, started,
           *(r.summary() for r in readers))
    assert_exactly_once(account)
    assert len(outcome.accepted) >= 250  # senders go on until they have PER_SENDER accepted each
    assert outcome.failed  # the API really was down mid-stream
    for reader in readers:
        assert_reader_saw_every_entry(reader, account)
        assert reader.connections >= 2  # the restart dropped it and it came back


def test_drop_client_sockets_mid_stream_and_resume_with_since(restartable_broker, buses):
    """Two recipients' sockets are cut again and again (TCP shutdown, no close frame) while hundreds of entries
    stream; each reconnects with since: one with its exact cursor, one with a cursor lagging by 3 (it re-receives
    a few entries and dedupes them by seq). No entry may be missing, none may arrive out of order."""
    started = time.monotonic()
    broker = restartable_broker
    bus = buses(broker.kind, extra_env=broker.env, **broker.bus_args)
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http, pause=0.01, request_every=5)
        readers = [MailboxReader(bus.ws_url, cast.recipients[0]).start_and_wait(),
                   MailboxReader(bus.ws_url, cast.recipients[1], lag_on_reconnect=3).start_and_wait()]
        senders.start()
        drops = 0
        while senders.running:
            time.sleep(0.25)
            readers[drops % 2].drop()
            drops += 1
        outcome = senders.join()
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        for reader in readers:
            reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)
            reader.stop()
    report("socket drops", outcome, account, started, f"drops caused: {drops}", *(r.summary() for r in readers))
    assert_exactly_once(account)
    assert len(outcome.accepted) == 3 * PER_SENDER and not outcome.failed, outcome.failed
    for reader in readers:
        assert_reader_saw_every_entry(reader, account)
        assert reader.drops >= 3
    assert readers[1].resent > 0  # the lagging cursor really re-sent entries, and they were deduped


def test_recipient_offline_for_a_while_then_back(restartable_broker, buses):
    """A recipient (ACKing its requests) closes its socket mid-stream and stays away for longer than its requests'
    whole redelivery budget, then comes back with since: its entries waited without using attempts, it gets every
    one of them exactly once, ACKs them, and nothing is dead-lettered."""
    started = time.monotonic()
    fast_acks = {"ACK_TIMEOUT": "1.5", "MAX_DELIVERY_ATTEMPTS": "3", "MAX_REDELIVERY_BACKOFF": "2",
                 "REDELIVERY_SWEEP_INTERVAL": "0.2"}
    broker = restartable_broker
    bus = buses(broker.kind, with_beat=True, extra_env={**broker.env, **SWEEP, **fast_acks}, **broker.bus_args)
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http, pause=0.005, request_every=3)
        away, staying = (MailboxReader(bus.ws_url, r).start_and_wait() for r in cast.recipients[:2])
        senders.start()
        _midstream(senders, accepted=60)
        away.go_offline()
        left_at = away.last_seq
        gone = time.monotonic()
        outcome = senders.join()
        # Offline for longer than 1.5 + 2 + 2 s: had its attempts been counted meanwhile, they would be dead now.
        time.sleep(max(0.0, 8 - (time.monotonic() - gone)))
        missed = http.get(f"/api/v1/sandboxes/{away.sandbox}/messages", params={"since": left_at}).json()
        away.come_back()
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        for reader in (away, staying):
            reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)

        def requests_acked() -> bool:
            return all(state == "acked" for r in (away, staying) for _, mid, state in mailbox(http, r.sandbox)
                       if outcome.types[mid] in ("request", "command"))

        wait_for(requests_acked, 60, "every request entry of the connected recipients to be acknowledged")
        away.stop()
        staying.stop()
    report("offline recipient", outcome, account, started, f"entries waiting while offline: {len(missed['entries'])}",
           away.summary(), staying.summary())
    assert_exactly_once(account)
    assert len(outcome.accepted) == 3 * PER_SENDER and not outcome.failed, outcome.failed
    assert len(missed["entries"]) >= 50  # it really missed a good part of the stream
    assert account.dead == []
    for reader in (away, staying):
        assert_reader_saw_every_entry(reader, account)


def _more(bus: BusProcess, cast: Cast, tag: str, count: int = 6) -> Outcome:
    """Send `count` more direct messages from the first sender to the first two recipients."""
    return Senders(bus.url, cast.senders[:1], cast.recipients[:2], f"{cast.tag}-{tag}", count, broadcast_every=0
                   ).start().join()


def _merge(outcome: Outcome, more: Outcome) -> None:
    outcome.accepted += more.accepted
    outcome.failed.update(more.failed)
    outcome.intended.update(more.intended)
    outcome.types.update(more.types)


def _local_ports_of_process_group(pgid: int) -> set[int]:
    """Local TCP ports of the sockets held by the processes of process group `pgid` (read from /proc)."""
    inodes = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (stat.parent / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (OSError, IndexError, ValueError):
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _cut_subscriptions(broker: redis.Redis, bus: BusProcess, api: str = "api") -> int:
    """Kill the Redis connections on which API process `api` is subscribed (its fanout listener); return how many."""
    ports = _local_ports_of_process_group(bus.apis[api].pid)
    subscribed = [c for c in broker.client_list()
                  if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0 and int(c["addr"].rsplit(":", 1)[1]) in ports]
    for client in subscribed:
        broker.client_kill_filter(_id=client["id"])
    return len(subscribed)


def test_api_loses_its_notification_subscription_mid_stream(redis_aof, buses):
    """The API's fanout listener loses its Redis subscription again and again (CLIENT KILL), the last time right
    before the final messages: notifications published while it reconnects are gone, yet the open sockets must
    still get every entry (the API has them read what they missed from the database once it is subscribed again),
    without any later message to reveal the gap."""
    started = time.monotonic()
    bus = buses("redis", redis_url=redis_aof.url, extra_env=VISIBILITY)
    broker = redis.Redis.from_url(redis_aof.url)
    with bus_client(bus.url, timeout=10) as http:
        cast, senders = _start(bus, http, pause=0.01)
        readers = [MailboxReader(bus.ws_url, r).start_and_wait() for r in cast.recipients[:2]]
        senders.start()
        cuts = 0
        while senders.running:
            time.sleep(0.4)
            cuts += _cut_subscriptions(broker, bus)
        outcome = senders.join()
        cuts += _cut_subscriptions(broker, bus)
        _merge(outcome, _more(bus, cast, "tail"))  # sent while the listener is away: only a catch-up delivers them
        # Once it listens again, live notifications flow as before.
        wait_for(lambda: len(log_lines(bus, "api", "fanout listener bound")) > cuts, 30, "the listener to resubscribe")
        time.sleep(1.5)
        _merge(outcome, _more(bus, cast, "live"))
        account = settle(http, outcome, cast.all, SETTLE_TIMEOUT)
        for reader in readers:
            reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)
            reader.stop()
    report("subscription lost", outcome, account, started, f"subscriptions cut: {cuts}",
           *(r.summary() for r in readers))
    assert cuts >= 3
    assert_exactly_once(account)
    for reader in readers:
        assert_reader_saw_every_entry(reader, account)
