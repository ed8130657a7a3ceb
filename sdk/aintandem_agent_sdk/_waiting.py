"""Waiting with a timeout without losing the caller's cancellation.

Before Python 3.12, `asyncio.wait_for` returns the result of an awaitable that completes in the same loop iteration
as the waiting task is cancelled, and the cancellation is lost: a handler stopped while the bus answered its send went
on handling, and `ContainerAgent.stop()` waited for it forever. `wait_within` lets the cancellation win.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """The result of `awaitable` within `timeout` seconds (None: no limit), else TimeoutError (and `awaitable` is
    cancelled). A cancellation of the caller always raises CancelledError, even when `awaitable` completed meanwhile.
    """
    future = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({future}, timeout=timeout)
    finally:
        if not future.done():
            future.cancel()
    if not done:
        raise TimeoutError
    return future.result()
