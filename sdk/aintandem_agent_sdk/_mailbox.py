"""The mailbox of one sandbox as the agent works through it (private): the cursor, the entries in flight, the handler
loop, and settling each entry (ACK or NACK, over the socket or else over REST)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

from aintandem_agent_sdk._trace import handling
from aintandem_agent_sdk.cursor import Cursor
from aintandem_agent_sdk.errors import BusError, BusRejected, NoHandler
from aintandem_agent_sdk.messages import AgentMessage, MessageType

log = logging.getLogger("aintandem_agent_sdk")

SendFrame = Callable[[dict[str, Any]], Awaitable[bool]]
Request = Callable[..., Awaitable[dict[str, Any]]]
Reply = Callable[..., Awaitable[str]]
ClaimResponse = Callable[[AgentMessage], bool]


class Agent(Protocol):
    """What the mailbox hands entries to (a BaseAgent)."""

    async def handle(self, message: AgentMessage) -> dict[str, Any] | None: ...


class Mailbox:
    """Hands every entry to `agent.handle` once, in seq order, and settles it: ACK after the handler returned (for a
    REQUEST after its dict went back as the RESPONSE), NACK with the error when it raised.

    Responses that `claim_response` takes (a `collaborate_with` waits for them) skip the handler. The cursor moves
    over processed entries only; a replayed entry processed before is ACKed again, not handled again.
    """

    def __init__(self, sandbox_id: str, cursor: Cursor, agent: Agent, *, send_frame: SendFrame,
                 request: Request, reply: Reply, claim_response: ClaimResponse):
        self.sandbox_id, self.cursor, self.agent = sandbox_id, cursor, agent
        self._send_frame, self._request, self._reply, self._claim = send_frame, request, reply, claim_response
        self._queue: asyncio.Queue[AgentMessage] = asyncio.Queue()
        self._in_flight: set[int] = set()

    @property
    def position(self) -> int:
        """The last processed seq with nothing unprocessed before it (the socket resumes after it)."""
        return self.cursor.position

    def resume_after(self, registration: dict[str, Any]) -> None:
        """After registering: what the bus reports settled counts as processed (it matters without a cursor file)."""
        self.cursor.advance_to(int(registration.get("settled_seq") or 0))

    def on_welcome(self, welcome: dict[str, Any]) -> bool:
        """Whether the socket may go on. When our cursor is beyond the bus's mailbox (it was reset, or the cursor comes
        from elsewhere) the bus says `cursor_ahead` and resumes after its settled seq: so do we, on this socket. An
        older bus does not say it: its head before our cursor means the same, and we start again from the beginning
        on a new socket (False)."""
        head_seq, position = int(welcome.get("head_seq") or 0), self.cursor.position
        if welcome.get("cursor_ahead"):
            resumed_from = int(welcome.get("resumed_from") or 0)
            log.warning("the bus's mailbox for %s ends at seq %d but this agent's cursor is at seq %d (the mailbox was "
                        "reset, or the cursor comes from elsewhere); resuming after seq %d, up to which the bus says "
                        "every entry is settled", self.sandbox_id, head_seq, position, resumed_from)
            self._restart_at(resumed_from)
            return True
        if head_seq >= position:
            return True
        log.warning("the bus's mailbox for %s ends at seq %d but this agent processed up to seq %d: the mailbox was "
                    "reset; starting again from its beginning", self.sandbox_id, head_seq, position)
        self._restart_at(0)
        return False

    def _restart_at(self, seq: int) -> None:
        self.cursor.reset(seq)
        self._in_flight.clear()

    async def on_message(self, message: AgentMessage) -> None:
        """A pushed entry: queue it for the handlers, unless in flight, processed before, or a claimed response."""
        assert message.seq is not None
        seq = message.seq
        if seq in self._in_flight:
            return  # already queued or being handled: its ACK follows
        if self.cursor.seen(seq) and not (message.redelivered and message.attempt == 1):
            await self._ack(seq)  # handled before, the bus missed our ACK (a replayed dead letter is handled again)
            return
        self._in_flight.add(seq)
        if message.message_type is MessageType.RESPONSE and self._claim(message):
            await self.settle(message, ok=True)
        else:
            self._queue.put_nowait(message)

    def on_rerouted(self, seq: int) -> None:
        """A replayed entry went to another capable agent: keep our place in seq order, handle nothing (an entry
        already being handled finishes; the bus ignores its ACK)."""
        if seq not in self._in_flight:
            self.cursor.mark(seq)

    async def handler_loop(self) -> None:
        """Handle queued entries one after the other (run several loops for concurrent handlers)."""
        while True:
            message = await self._queue.get()
            await self._process(message)

    async def _process(self, message: AgentMessage) -> None:
        try:
            with handling(message.message_id):
                result = await self.agent.handle(message)
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"handle() must return a dict or None, not {type(result).__name__}")
        except NoHandler as exc:
            log.warning("%s: %s %s from %s (seq %s) is refused; register one with @agent.on(MessageType.REQUEST)",
                        exc, message.message_type.value, message.message_id, message.from_sandbox, message.seq)
            await self._failed(message, exc)
            return
        except Exception as exc:
            log.exception("the handler failed on seq %s (%s %s from %s)", message.seq, message.message_type.value,
                          message.message_id, message.from_sandbox)
            await self._failed(message, exc)
            return
        if message.message_type is MessageType.REQUEST and result is not None:
            try:
                await self._reply(message, result)
            except BusError as exc:
                log.error("could not send the response to %s: %s", message.message_id, exc)
                await self.settle(message, ok=False, reason=f"could not send the response: {exc}")
                return
        await self.settle(message, ok=True)

    async def _failed(self, message: AgentMessage, exc: Exception) -> None:
        """The entry could not be handled: tell a requester waiting for a response, then NACK it with the error."""
        if message.message_type is MessageType.REQUEST and message.requires_response:
            await self._report_failure(message, exc)
        await self.settle(message, ok=False, reason=f"{type(exc).__name__}: {exc}")

    async def _report_failure(self, request: AgentMessage, exc: Exception) -> None:
        try:
            await self._reply(request, {"error": {"type": type(exc).__name__, "message": str(exc)}},
                              metadata={"status": "error"})
        except BusError as error:
            log.warning("could not tell %s that its request failed: %s", request.from_sandbox, error)

    async def settle(self, message: AgentMessage, ok: bool, reason: str = "") -> None:
        """ACK (or NACK with `reason`) the entry, then record it as processed."""
        assert message.seq is not None
        try:
            if ok:
                await self._ack(message.seq)
            else:
                await self._nack(message.seq, reason)
        finally:
            self.cursor.mark(message.seq)
            self._in_flight.discard(message.seq)

    async def _ack(self, seq: int) -> None:
        if not await self._send_frame({"type": "ack", "seq": seq}):
            await self._settle_over_rest("ack", {"seq": seq})

    async def _nack(self, seq: int, reason: str) -> None:
        frame = {"seq": seq, "reason": (reason or "nacked by the recipient")[:2000]}
        if not await self._send_frame({"type": "nack", **frame}):
            await self._settle_over_rest("nack", frame)

    async def _settle_over_rest(self, verb: str, body: dict[str, Any]) -> None:
        """ACK/NACK without a socket; if even that fails the bus pushes the entry again and we ACK it then."""
        try:
            await self._request("POST", f"/api/v1/sandboxes/{quote(self.sandbox_id, safe='')}/{verb}", json=body)
        except BusRejected as exc:
            log.info("%s of seq %s refused: %s", verb, body["seq"], exc)
        except BusError as exc:
            log.warning("could not %s seq %s (%s); the bus will push the entry again", verb, body["seq"], exc)
