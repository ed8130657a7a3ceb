"""Redis behind Sentinel: a master, a replica and three sentinels (tests/sentinel.py), with the bus reaching Redis
only through the sentinels (`REDIS_URL=sentinel://…;sentinel://…`, REDIS_SENTINEL_MASTER).

The failovers run under traffic from three sender threads to three recipients (tests/traffic.py) and account for
every message the bus committed: exactly one mailbox entry per intended recipient, nothing lost, nothing twice. They
are the three ways Celery's own Sentinel support is known to break:
- celery#6348, no failover when the master is lost: the master is killed (SIGKILL) and stays down;
- celery#10096, no reconnect after a failover: a second failover, back to the first server, under the same bus;
- celery#7946, `ReadOnlyError` after a master is demoted: a manual `SENTINEL FAILOVER` demotes a live master, so
  connections opened to it stay open to a replica.
After a manual failover the former master stays a master until the sentinels convert it (~10 s): the workers'
SwitchFence (app/brokers/sentinel_fence.py) closes its clients' connections as soon as the sentinels agree on the new
one, so the processes do not split between two masters meanwhile.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from app.brokers.sentinel_fence import SwitchFence
from app.config import ConfigError, Settings
from tests.sentinel import MASTER_NAME, SentinelCluster
from tests.servers import BIN, BusProcess, RedisServer, bus_client, wait_for
from tests.traffic import (
    MailboxReader,
    Senders,
    assert_exactly_once,
    assert_reader_saw_every_entry,
    assert_workers_alive,
    log_lines,
    register,
    report,
    settle,
)

PER_SENDER = 150  # three senders, 0.1 s apart: traffic for about 15 s, through each fault
SETTLE_TIMEOUT = 120
# Beat's outbox sweep is held off: what a node failed to enqueue during the failover must be enqueued by the node.
NO_SWEEP = {"OUTBOX_SWEEP_AFTER": "3600"}


# ------------------------------------------------------------------------------------------------ the broker kind

def test_a_sentinel_url_selects_the_sentinel_kind_with_the_master_and_the_sentinels_password():
    settings = Settings.from_env({"MESSAGE_BACKEND": "redis", "REDIS_SENTINEL_MASTER": "bus",
                                  "REDIS_SENTINEL_PASSWORD": "s3cret",
                                  "REDIS_URL": "sentinel://:pw@10.0.0.1:26379/2;sentinel://:pw@10.0.0.2"})
    broker = settings.broker
    assert broker.name == "redis-sentinel" and broker.shared
    assert broker.sentinels() == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    options = broker.transport_options()
    assert options["master_name"] == "bus" and options["sentinel_kwargs"] == {"password": "s3cret"}
    assert options["priority_steps"] == list(range(10))  # what the Redis kind has, the Sentinel kind has too
    assert broker.priority(9) == 0
    assert broker.shown_url() == "sentinel://:***@10.0.0.1:26379/2;sentinel://:***@10.0.0.2"
    assert broker.celery_settings()["broker_url"] == settings.redis_url


def test_message_backend_does_not_name_the_sentinel_kind():
    with pytest.raises(ConfigError, match="MESSAGE_BACKEND must be one of memory, redis, rabbitmq"):
        Settings.from_env({"MESSAGE_BACKEND": "redis-sentinel"})


# --------------------------------------------------------------------------------------------- the bus on Sentinel

@pytest.fixture(scope="module")
def sentinel():
    cluster = SentinelCluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def bus(sentinel):
    """An API node, two workers and beat, reaching Redis through the sentinels (back on the first server)."""
    made = BusProcess("redis", redis_url=sentinel.url, with_beat=True,
                      extra_env={"REDIS_SENTINEL_MASTER": MASTER_NAME, **NO_SWEEP})
    made.start_worker("worker2")
    yield made
    made.cleanup()


def test_every_redis_use_goes_through_the_sentinels(sentinel, bus):
    """Readiness, the queue report, live notifications (the fanout) and the event log all reach the master the
    sentinels name: the keys are on the master (and replicated), none on a server the URL never named."""
    with bus_client(bus.url) as http:
        assert http.get("/readyz").json()["checks"]["broker"] == "ok"
        assert http.get("/api/v1/configuration").json()["broker"] == "redis-sentinel"
        register(http, "sa", "sb")
        reader = MailboxReader(bus.ws_url, "sb").start_and_wait()
        answer = http.post("/api/v1/messages", json={"from_sandbox": "sa", "to_sandbox": "sb", "from_agent": "x",
                                                     "message_type": "notification", "content": {"n": 1}})
        assert answer.status_code == 202
        reader.wait_until(1, 30)  # pushed live: the fanout went through the master
        reader.stop()
    master = redis.Redis(port=sentinel.master_port(), db=bus.redis_database)
    assert master.exists("collab.notify.events") and master.xlen("collab.notify.events") >= 1
    status = subprocess.run([str(BIN / "collab-bus"), "status", "--url", bus.url, "--json"], env=bus.env,
                            capture_output=True, text=True, timeout=60)
    assert '"kind": "redis-sentinel"' in status.stdout and '"reachable": true' in status.stdout, status.stdout


@pytest.mark.parametrize("fault", ["kill-master", "failover-and-back", "demote-live-master"])
def test_failover_under_traffic(sentinel, bus, fault):
    started = time.monotonic()
    with bus_client(bus.url, timeout=10) as http:
        tag = f"{fault[:4]}{int(started) % 100000}"
        senders_ids, recipients = [f"s{i}-{tag}" for i in range(3)], [f"r{i}-{tag}" for i in range(3)]
        register(http, *senders_ids, *recipients)
        senders = Senders(bus.url, senders_ids, recipients, tag, PER_SENDER, pause=0.1)
        reader = MailboxReader(bus.ws_url, recipients[0]).start_and_wait()
        senders.start()
        wait_for(lambda: senders.accepted_count >= PER_SENDER // 3, 60, "a tenth of the messages accepted")
        notes = _fault(sentinel, fault)
        outcome = senders.join()
        assert_workers_alive(bus)
        account = settle(http, outcome, senders_ids + recipients, SETTLE_TIMEOUT)
        reader.wait_until(len(account.mailboxes[reader.sandbox]), 60)
        reader.stop()
        ready = http.get("/readyz").json()
    retried = log_lines(bus, "api", "enqueued again")
    report(f"sentinel {fault}", outcome, account, started, *notes, reader.summary(),
           f"API node lines about tasks enqueued again: {len(retried)}")
    try:
        assert_exactly_once(account)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{_log_tails(bus)}\n{sentinel.logs()[-3000:]}") from None
    assert not outcome.failed, outcome.failed
    assert_reader_saw_every_entry(reader, account)
    assert ready["status"] == "ready", ready
    for process in ("api", "worker", "worker2", "beat"):
        assert not log_lines(bus, process, "ReadOnlyError"), f"{process} hit a demoted master (celery#7946)"
    if fault != "kill-master":  # the former master lived on: the workers closed its clients' connections at once
        fenced = [line for process in ("worker", "worker2", "beat")
                  for line in log_lines(bus, process, "client connection(s) to the former master")]
        assert fenced, "no process fenced the former master"


def _fault(sentinel: SentinelCluster, fault: str) -> list[str]:
    if fault == "kill-master":  # celery#6348: the master is lost for good (until the end of the test)
        killed, took = sentinel.kill_master()
        time.sleep(3)  # traffic goes on on the new master
        sentinel.restart(killed)
        return [f"master :{killed.port} killed; the sentinels named the replica after {took:.1f}s"]
    former = sentinel.master_port()
    first, took = sentinel.failover()  # demote-live-master (celery#7946): the former master lives on, demoted
    notes = [f"manual failover to :{first} in {took:.1f}s; :{former} converted to a replica "
             f"{sentinel.wait_demoted(former):.1f}s later"]
    if fault == "failover-and-back":  # celery#10096: a second failover under the same bus, back to the first server
        second, took = sentinel.failover()
        notes.append(f"and back to :{second} in {took:.1f}s, :{first} converted "
                     f"{sentinel.wait_demoted(first):.1f}s later")
    return notes


def _log_tails(bus: BusProcess, lines: int = 25) -> str:
    """The last lines of each process's log, for a failure report."""
    tails = []
    for path in sorted(bus.dir.glob("*.log")):
        tails.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(tails)


# --------------------------------------------------------------------------------------------------- the fence

def test_the_fence_closes_a_former_masters_clients_but_the_sentinels(caplog):
    """SwitchFence.fence on a server still acting as master: every client connection is closed but those named as
    a sentinel names its own (`sentinel-…`), which a sentinel needs to stay connected to convert the server."""
    server = RedisServer()
    try:
        ours, sentinels_own = redis.Redis(port=server.port), redis.Redis(port=server.port)
        ours.ping()
        sentinels_own.client_setname("sentinel-0123abcd-cmd")
        fence = SwitchFence([], MASTER_NAME, {}, {})  # no sentinel to agree with: fences at once
        with caplog.at_level("WARNING", logger="app.brokers.sentinel_fence"):
            fence.fence(("127.0.0.1", server.port), ("127.0.0.1", 1))
        names = [client.get("name", "") for client in redis.Redis(port=server.port).client_list()]
        assert "sentinel-0123abcd-cmd" in names and len(names) == 2, names  # the sentinel's and the asking one
        assert "closed 1 client connection(s) to the former master" in caplog.text
    finally:
        server.cleanup()


def test_a_fence_the_redis_user_may_not_run_says_so(caplog):
    """A bus whose Redis user may not use CLIENT cannot fence: one warning, no exception in the thread."""
    server = RedisServer()
    try:
        admin = redis.Redis(port=server.port)
        admin.execute_command("ACL", "SETUSER", "bus", "on", ">pw", "~*", "&*", "+@all", "-client")
        fence = SwitchFence([], MASTER_NAME, {}, {"username": "bus", "password": "pw"})
        with caplog.at_level("WARNING", logger="app.brokers.sentinel_fence"):
            fence.fence(("127.0.0.1", server.port), ("127.0.0.1", 1))
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and "not fenced" in warnings[0] and "no permissions" in warnings[0], warnings
    finally:
        server.cleanup()
