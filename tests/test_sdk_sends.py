"""How the SDK sends: over the mailbox socket while connected (REST only when it is not), and `send_batch`, against
a real bus (embedded)."""

from __future__ import annotations

import asyncio

import pytest

from aintandem_agent_sdk import BusRejected, MessageType, PermissionDenied
from tests.test_sdk import agent_for, eventually, report, run, sdk_bus  # noqa: F401  (sdk_bus is a fixture)


def rest_posts(agent) -> list[str]:
    """The paths of the REST POSTs `agent` makes from now on."""
    posts: list[str] = []

    async def record(request):
        if request.method == "POST":
            posts.append(request.url.path)

    agent._client().client.event_hooks["request"].append(record)
    return posts


def test_a_connected_agent_sends_over_its_socket_and_refusals_keep_their_status(sdk_bus, unique):
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, alice) as a, agent_for(sdk_bus, bob) as b:
            posts = rest_posts(a)
            sent = [await a.send_message(bob, {"n": n}, MessageType.NOTIFICATION) for n in range(5)]
            broadcast_id = await a.broadcast({"hello": "all"})
            with pytest.raises(PermissionDenied) as refused:  # commands need a grant
                await a.send_message(bob, {"note": "hi"}, MessageType.COMMAND)
            assert (refused.value.status, refused.value.code) == (403, "policy_denied")
            with pytest.raises(BusRejected) as unknown:
                await a.send_message(unique("nobody"), {"x": 1})
            assert (unknown.value.status, unknown.value.code) == (404, "unknown_sandbox")
            assert posts == [], "a connected agent sent over REST"
            await eventually(lambda: len(b.agent.received) == 6, "bob to receive the five messages and the broadcast")
            # separate sends: mailbox order is delivery order, which need not be send order
            assert sorted(m.message_id for m in b.agent.received) == sorted([*sent, broadcast_id])

    run(scenario())


def test_an_agent_that_is_not_connected_sends_over_rest(sdk_bus, unique):
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, bob) as b:
            a = agent_for(sdk_bus, alice)
            await a.register()  # registered, never connected
            posts = rest_posts(a)
            message_id = await a.send_message(bob, {"via": "rest"}, MessageType.NOTIFICATION)
            assert posts == ["/api/v1/messages"]
            await eventually(lambda: b.agent.received, "bob to receive it")
            assert b.agent.received[0].message_id == message_id
            await a.stop()

    run(scenario())


def test_send_batch_answers_each_message_and_delivers_them_in_order(sdk_bus, unique):
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, alice) as a, agent_for(sdk_bus, bob) as b:
            specs = [{"target_sandbox": bob, "content": {"n": n}, "message_type": MessageType.NOTIFICATION}
                     for n in range(10)]
            specs.insert(3, {"target_sandbox": unique("nobody"), "content": {"n": -1}})
            specs.insert(5, {"target_sandbox": bob, "content": {"n": -2}, "priority": 42})
            results = await a.send_batch(specs)
            assert [r.index for r in results] == list(range(12))
            assert [r.ok for r in results].count(False) == 2
            assert (results[3].error.status, results[3].error.code) == (404, "unknown_sandbox")
            assert (results[5].error.status, results[5].error.code) == (400, "validation_error")
            sent = [r.message_id for r in results if r.ok]
            await eventually(lambda: len(b.agent.received) == 10, "bob to receive the ten accepted messages")
            assert [m.message_id for m in b.agent.received] == sent
            assert [m.content["n"] for m in b.agent.received] == list(range(10))
            assert (await report(sdk_bus.url, sent[0]))["message"]["from_agent"] == alice

    run(scenario())


def test_publish_subscribe_and_a_subscriber_that_was_offline(sdk_bus, unique):
    """A subscription made with the SDK outlives the agent's process: what was published meanwhile waits in the
    mailbox and reaches the agent when it starts again, with its topic."""
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, alice) as a:
            async with agent_for(sdk_bus, bob) as b:
                await b.subscribe("news.#")
                await b.subscribe("alerts.*")
                await b.subscribe("news.#")  # again: nothing changes
                assert await b.subscriptions() == ["news.#", "alerts.*"]
                await b.unsubscribe("alerts.*")
                with pytest.raises(BusRejected) as missing:
                    await b.unsubscribe("alerts.*")
                assert (missing.value.status, missing.value.code) == (404, "unknown_subscription")
                with pytest.raises(BusRejected) as bad:
                    await b.subscribe("news..x")
                assert (bad.value.status, bad.value.code) == (400, "validation_error")
                first = await a.publish("news.today", {"n": 1})
                await eventually(lambda: b.agent.received, "bob to receive the first topic message")
                assert (b.agent.received[0].message_id, b.agent.received[0].topic) == (first, "news.today")
            later = await a.publish("news.tomorrow", {"n": 2})  # bob is offline
            await a.publish("alerts.disk", {"n": 3})  # no longer subscribed
            with pytest.raises(BusRejected) as invalid:
                await a.publish("no topic", {"n": 4})
            assert invalid.value.status == 400
            async with agent_for(sdk_bus, bob) as b:
                await eventually(lambda: any(m.message_id == later for m in b.agent.received), "bob to catch up")
                assert [(m.topic, m.content) for m in b.agent.received] == [("news.tomorrow", {"n": 2})]

    run(scenario())


def test_a_send_repeated_with_its_idempotency_key_is_stored_once(sdk_bus, unique):
    """Each send method takes an idempotency_key: the same key again (over the socket or, from a restarted agent
    that is not connected, over REST) gives back the first message's id, and one mailbox entry arrives."""
    async def scenario():
        alice, bob = unique("alice"), unique("bob")
        async with agent_for(sdk_bus, bob) as b:
            await b.subscribe("jobs.#")
            async with agent_for(sdk_bus, alice) as a:
                first = await a.send_message(bob, {"job": 1}, MessageType.NOTIFICATION, idempotency_key="job-1")
                assert await a.send_message(bob, {"job": 1}, MessageType.NOTIFICATION,
                                            idempotency_key="job-1") == first
                other = await a.send_message(bob, {"job": 1}, MessageType.NOTIFICATION, idempotency_key="job-2")
                broadcast = await a.broadcast({"all": 1}, idempotency_key="all-1")
                assert await a.broadcast({"all": 1}, idempotency_key="all-1") == broadcast
                published = await a.publish("jobs.done", {"job": 1}, idempotency_key="pub-1")
                assert await a.publish("jobs.done", {"job": 1}, idempotency_key="pub-1") == published
                batch = [{"target_sandbox": bob, "content": {"b": n}, "message_type": "notification",
                          "idempotency_key": f"batch-{n}"} for n in range(3)]
                batch_ids = [r.message_id for r in await a.send_batch(batch)]
                assert all(batch_ids) and len(set(batch_ids)) == 3
            restarted = agent_for(sdk_bus, alice)  # a new process: registered, not connected (so over REST)
            await restarted.register()
            posts = rest_posts(restarted)
            assert await restarted.send_message(bob, {"job": 1}, MessageType.NOTIFICATION,
                                                idempotency_key="job-1") == first
            assert [r.message_id for r in await restarted.send_batch(batch)] == batch_ids
            assert posts == ["/api/v1/messages", "/api/v1/messages/batch"]
            await restarted.stop()
            expected = sorted([first, other, broadcast, published, *batch_ids])
            await eventually(lambda: len(b.agent.received) >= len(expected), "bob to receive every message")
            await asyncio.sleep(0.5)  # nothing more comes
            assert sorted(m.message_id for m in b.agent.received) == expected

    run(scenario())
