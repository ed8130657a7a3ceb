"""Sends over the open mailbox socket: a `send` frame per message, answered by `accepted` or `error` with its ref.

A send the socket cannot finish (not connected, the connection dropped, no answer in time, or a refusal worth
retrying such as 429/503) reports "not sent here" and the caller sends it over REST with the same
Idempotency-Key: the bus stores the message once whichever path got it there. So does a frame larger than the
socket takes (`SendLimits`, from the bus's welcome): sent anyway, it would cost the socket (the bus closes it, 1009).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aintandem_agent_sdk._limits import SendLimits, encode_frame
from aintandem_agent_sdk._waiting import wait_within
from aintandem_agent_sdk.errors import AuthenticationError, BusRejected, PermissionDenied

SendFrame = Callable[[dict[str, Any] | str], Awaitable[bool]]  # a frame, or one `encode_frame` encoded


class SocketSends:
    """The socket sends in flight on one agent's connection, matched to their answers by `ref`; `limits` are what
    the bus said its socket and its messages take."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.limits = SendLimits()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def send(self, send_frame: SendFrame, message: dict[str, Any], idempotency_key: str) -> str | None:
        """The message_id once the bus accepted `message` over the socket; None when it could not say (send it
        over REST with the same `idempotency_key`, e.g. a frame too large for the socket). Raises BusRejected when
        the bus refused the message."""
        ref = uuid.uuid4().hex
        encoded = encode_frame({"type": "send", "ref": ref, "idempotency_key": idempotency_key, "message": message})
        if not self.limits.fits_frame(encoded):
            return None
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = answer
        try:
            if not await send_frame(encoded):
                return None
            frame = await wait_within(answer, self.timeout)
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self._waiting.pop(ref, None)
        return self._outcome(frame)

    @staticmethod
    def _outcome(frame: dict[str, Any]) -> str | None:
        """The message id an `accepted` frame gives; None for a refusal worth retrying (429, 5xx: over REST); other
        `error` frames raised as the BusRejected they stand for."""
        if frame.get("type") == "accepted":
            return str(frame["message_id"])
        status = int(frame.get("status") or 0)
        if status == 429 or status >= 500 or not status:
            return None
        kind = {401: AuthenticationError, 403: PermissionDenied}.get(status, BusRejected)
        raise kind(status, str(frame.get("code")), str(frame.get("message")), dict(frame.get("details") or {}))

    def on_answer(self, frame: dict[str, Any]) -> bool:
        """Hand an `accepted` or `error` frame to the send it answers; False when it answers none of them."""
        waiter = self._waiting.get(frame.get("ref") or "")
        if waiter is None:
            return False
        if not waiter.done():
            waiter.set_result(frame)
        return True

    def disconnected(self) -> None:
        """The socket closed: every send still waiting goes over REST instead."""
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the socket closed before the bus answered"))
