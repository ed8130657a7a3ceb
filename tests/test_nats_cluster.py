"""The bus on a 3-server NATS JetStream cluster under SDK traffic (issue 26): tests/failover.py's Cluster (HAProxy in
front of two API nodes, two workers and beat, on PostgreSQL) with `MESSAGE_BACKEND=nats`, NATS_URL naming the three
servers of tests/nats_server.py's NatsCluster (`sync_interval: always`) and NATS_REPLICAS=3, so every stream of the
bus is kept by all three.

SDK agents (ContainerAgent, tests/failover_traffic.py) exchange notifications and `collaborate_with` requests through
the balancer while a NATS fault of tests/failover_faults.py happens: the server leading the `delivery` stream is
SIGKILLed, each server in turn is (so each one an API node, a worker or beat is connected to goes down once), or the
`delivery` stream's leader steps down. Each killed server is started again and waited for until it is current in
every stream. Nothing lost, nothing handled twice, every request answered; the longest delivery stall is printed
(nothing asserts a timing). One cluster for the module.
"""

from __future__ import annotations

import pytest

from tests.failover import Cluster, run_fault
from tests.failover_faults import FAULTS, nats_connections
from tests.servers import bus_client, wait_for


@pytest.fixture(scope="module")
def cluster(postgres_server):
    """HAProxy, API nodes `api` and `api2`, workers `worker` and `worker2` and beat on a NatsCluster of their own
    (NATS_REPLICAS=3, NATS_ACK_WAIT=5) and a PostgreSQL database of their own."""
    made = Cluster(postgres_server, kind="nats")
    try:
        yield made
    finally:
        made.cleanup()


def test_the_bus_runs_on_three_servers_with_every_queue_kept_by_all_three(cluster):
    """Every bus process holds a connection to a server of the cluster (a worker has several: its consumer, its
    producers, its remote control; beat from its first scheduled send on); /readyz answers through the balancer;
    the queue report shows the `delivery` stream with three replicas and a leader."""
    processes = {*cluster.bus.apis, *cluster.bus.workers, "beat"}

    def connected() -> dict[int, list[str]] | None:
        found = nats_connections(cluster)
        return found if {name for names in found.values() for name in names} == processes else None

    print(f"\n[nats-cluster] bus processes per NATS server port: {wait_for(connected, 15, 'every process on NATS')}")
    with bus_client(cluster.url) as http:
        assert http.get("/readyz").status_code == 200
    report = _queue_report(cluster)
    assert report["delivery"]["replicas"] == 3 and report["delivery"]["leader"], report


@pytest.mark.parametrize("fault", ["nats-server-kill", "nats-servers-kill-each", "nats-leader-stepdown"],
                         ids=["kill-delivery-leader", "kill-each-in-turn", "leader-stepdown"])
def test_nats_fault_under_sdk_traffic(cluster, fault):
    """The fault under SDK traffic through the balancer: every message handled exactly once, every request answered,
    and (after the killed servers came back) the `delivery` stream still kept by three servers."""
    result = run_fault(cluster, FAULTS[fault])
    result.print()
    result.assert_exactly_once()
    assert _queue_report(cluster)["delivery"]["replicas"] == 3


def _queue_report(cluster: Cluster) -> dict:
    """The NATS broker's queue report (app/brokers/nats.py) for the cluster's bus."""
    from app.config import Settings

    return Settings.from_env(cluster.bus.env).broker.queue_report(timeout=5)["queues"]
