"""The SDK's wait with a timeout (aintandem_agent_sdk._waiting): a cancelled caller is cancelled, even when what it
waited for completed in the same loop iteration (asyncio.wait_for before Python 3.12 returns the result instead and
the cancellation is lost: ContainerAgent.stop() then waited forever for a handler whose reply the bus had just
answered)."""

from __future__ import annotations

import asyncio

import pytest

from aintandem_agent_sdk._waiting import wait_within


def test_a_cancellation_wins_over_a_result_that_arrives_in_the_same_iteration():
    async def scenario():
        answer = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(wait_within(answer, 10))
        await asyncio.sleep(0)  # the task waits for the answer
        answer.set_result("accepted")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())


def test_a_result_a_timeout_and_the_awaitable_cancelled_on_timeout():
    async def scenario():
        assert await wait_within(asyncio.sleep(0, "done"), 1) == "done"
        never = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError):
            await wait_within(never, 0.01)
        assert never.cancelled()

    asyncio.run(scenario())
