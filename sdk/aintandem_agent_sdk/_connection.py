"""The mailbox socket of one sandbox (private): connect, read frames, heartbeat, reconnect.

Reconnecting is one small state machine, `ReconnectState`: CONNECTING → CONNECTED (welcomed) → CONNECTING again at
once (a node going away, recovered credentials) or WAITING (back-off after a failed attempt) → CONNECTING ...,
until FAILED (the bus refused the sandbox for good). Its counters are reset by every welcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from aintandem_agent_sdk._limits import encode_frame
from aintandem_agent_sdk._session import Session
from aintandem_agent_sdk._socket_sends import SocketSends
from aintandem_agent_sdk._status import ConnectionStatus, StatusReporter
from aintandem_agent_sdk.config import ContainerAgentConfig
from aintandem_agent_sdk.errors import AuthenticationError, BusError, BusRejected, PermissionDenied
from aintandem_agent_sdk.messages import AgentMessage

log = logging.getLogger("aintandem_agent_sdk")

MAX_FRAME_BYTES = 32 * 1024 * 1024
REFUSED = 1008  # the close code the bus uses when it refuses a socket (the reason is the error code)
GOING_AWAY = 1001  # the close code of a bus node that stops on purpose (a restart): reconnect at once
MAX_CREDENTIAL_RECOVERIES = 2  # re-registrations for a refused socket token before giving up


def socket_url(bus_url: str, sandbox_id: str, position: int) -> str:
    """The mailbox socket's URL for a bus at `bus_url` (http → ws, https → wss), resuming after seq `position`."""
    parts = urlsplit(bus_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}/ws/sandboxes/{quote(sandbox_id, safe='')}?since={position}"


class Phase(Enum):
    """Where the connection stands."""

    CONNECTING = "connecting"  # opening the socket
    CONNECTED = "connected"  # welcomed by the bus
    WAITING = "waiting"  # backing off before the next attempt
    FAILED = "failed"  # refused for good: see ReconnectState.fatal


_MOVES = {Phase.CONNECTING: {Phase.CONNECTING, Phase.CONNECTED, Phase.WAITING, Phase.FAILED},
          Phase.CONNECTED: {Phase.CONNECTING, Phase.WAITING, Phase.FAILED},
          Phase.WAITING: {Phase.CONNECTING},
          Phase.FAILED: set()}


@dataclass
class ReconnectState:
    """The reconnect state machine: the phase, and what decides the next move (reset by each welcome)."""

    phase: Phase = Phase.CONNECTING
    failures: int = 0  # failed attempts since the last welcome: they set the back-off
    recoveries: int = 0  # re-registrations after a refused socket token since the last welcome
    reregistered: bool = False  # registered again after "unknown_sandbox" since the last welcome
    refusal: dict[str, Any] = field(default_factory=dict)  # the last error frame: it explains a following 1008
    fatal: BusError | None = None  # why the phase is FAILED

    @property
    def failed(self) -> bool:
        """Whether the bus refused the sandbox for good (the phase is FAILED)."""
        return self.phase is Phase.FAILED

    def _move(self, phase: Phase) -> None:
        if phase not in _MOVES[self.phase]:
            raise RuntimeError(f"reconnect state cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase

    def welcomed(self) -> None:
        """The bus welcomed the socket: start counting afresh."""
        self._move(Phase.CONNECTED)
        self.failures, self.recoveries, self.reregistered, self.refusal = 0, 0, False, {}

    def retry_now(self) -> None:
        """Connect again without waiting (a node went away, credentials were renewed, the sandbox re-registered)."""
        self._move(Phase.CONNECTING)

    def attempt_failed(self) -> int:
        """An attempt failed, or a working socket dropped: back off. Returns the number of failures in a row."""
        self._move(Phase.WAITING)
        self.failures += 1
        return self.failures

    def waited(self) -> None:
        """The back-off is over."""
        self._move(Phase.CONNECTING)

    def may_recover_credentials(self) -> bool:
        """Whether to register again for a new token after the socket's was refused (counts the try)."""
        if self.recoveries >= MAX_CREDENTIAL_RECOVERIES:
            return False
        self.recoveries += 1
        return True

    def may_reregister(self) -> bool:
        """Whether to register again after the bus said it does not know the sandbox (once per welcome)."""
        if self.reregistered:
            return False
        self.reregistered = True
        return True

    def take_refusal(self) -> dict[str, Any]:
        """The error frame that preceded a refusal (and forget it)."""
        refusal, self.refusal = self.refusal, {}
        return refusal

    def give_up(self, error: BusError) -> None:
        """The bus refused the sandbox for good."""
        self._move(Phase.FAILED)
        self.fatal = error


class FrameHandler(Protocol):
    """What the connection hands the mailbox's frames to (the mailbox)."""

    @property
    def position(self) -> int: ...

    def on_welcome(self, welcome: dict[str, Any]) -> bool: ...

    async def on_message(self, message: AgentMessage) -> None: ...

    def on_rerouted(self, seq: int) -> None: ...

    def resume_after(self, registration: dict[str, Any]) -> None: ...


class Connection:
    """Keeps one sandbox's mailbox socket open: reconnects with capped exponential back-off and jitter (at once after
    1001 "going away"), sends heartbeats, and hands frames to the mailbox and to the socket sends.

    `run()` returns only when the bus refused the sandbox for good (then `state.fatal` says why).
    """

    def __init__(self, session: Session, mailbox: FrameHandler, sends: SocketSends, status: StatusReporter,
                 config: ContainerAgentConfig):
        self.session, self.mailbox, self.sends, self.status, self.config = session, mailbox, sends, status, config
        self.state = ReconnectState()
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._welcomed = False

    async def run(self) -> None:
        """Connect, read, reconnect; return when the bus refused the sandbox for good."""
        while not self.state.failed:
            problem = await self._attempt()
            if problem is None:
                self.state.retry_now()
            elif not self.state.failed:
                await self._back_off(problem)

    async def _attempt(self) -> str | None:
        """One connection, read until it ends. Returns what went wrong (then back off), None to connect again now."""
        headers = {"Authorization": f"Bearer {self.session.token}"} if self.session.token else {}
        url = socket_url(self.session.bus_url, self.session.sandbox_id, self.mailbox.position)
        self._welcomed = False
        try:
            async with connect(url, additional_headers=headers, max_size=MAX_FRAME_BYTES,
                               open_timeout=self.config.request_timeout, close_timeout=2) as ws:
                await self._read(ws)
            if self._welcomed and ws.close_code == GOING_AWAY:
                await self._going_away()
                return None
            return "the bus closed the connection"
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == REFUSED:
                return await self._on_refused(exc.rcvd.reason)
            if self._welcomed and exc.rcvd is not None and exc.rcvd.code == GOING_AWAY:
                await self._going_away()
                return None
            return f"connection lost ({exc})"
        except InvalidStatus as exc:
            return await self._on_http_refusal(exc.response.status_code)
        except (TimeoutError, OSError, InvalidHandshake) as exc:
            return f"cannot reach the bus ({type(exc).__name__}: {exc})"

    async def _read(self, ws: ClientConnection) -> None:
        """Hand every frame on until the socket closes; `_welcomed` then says whether the bus had welcomed it."""
        self._ws = ws
        try:
            async for raw in ws:
                await self._on_frame(ws, raw)
        finally:
            self._welcomed = self.connected.is_set()
            self._ws = None
            self.connected.clear()
            self.sends.disconnected()

    async def _back_off(self, problem: str) -> None:
        failures = self.state.attempt_failed()
        delay = self.config.reconnect.delay(failures)
        log.warning("%s; reconnecting in %.1fs (attempt %d)", problem, delay, failures)
        await self.status.set(ConnectionStatus.RECONNECTING, f"{problem}; retrying in {delay:.1f}s")
        await asyncio.sleep(delay)
        self.state.waited()

    async def _going_away(self) -> None:
        """The bus node closed a working socket with 1001 (a planned stop): say so; the caller reconnects without
        back-off (another node, or the restarted one, takes it); if that fails, the usual back-off follows."""
        log.info("the bus is going away (a restart); reconnecting now")
        await self.status.set(ConnectionStatus.RECONNECTING, "the bus is going away; reconnecting now")

    async def _on_refused(self, code: str) -> str | None:
        """The bus refused the socket (close 1008): re-register once if it forgot us; else give up for good."""
        refusal = self.state.take_refusal()
        if code == "unknown_sandbox" and self.state.may_reregister():
            log.warning("the bus does not know sandbox %s any more; registering again", self.session.sandbox_id)
            self.mailbox.resume_after(await self.session.register_when_up())
            return None
        await self._give_up(BusRejected(REFUSED, code or "refused", refusal.get("message") or
                                        "the bus refused the socket", refusal.get("details")))
        return "refused"

    async def _on_http_refusal(self, status: int) -> str | None:
        """The socket's handshake got an HTTP error: renew refused credentials, give up on other 4xx, else retry."""
        if status == 401 and self.state.may_recover_credentials() and await self._reregister():
            return None
        if 400 <= status < 500 and status != 429:
            kind = {401: AuthenticationError, 403: PermissionDenied}.get(status, BusRejected)
            await self._give_up(kind(status, f"http_{status}", f"the bus refused the socket with HTTP {status}"))
            return "refused"
        return f"the bus answered the socket with HTTP {status}"

    async def _reregister(self) -> bool:
        try:
            await self.session.register()
            return True
        except BusError as exc:
            log.error("the bus refused this sandbox's credentials: %s", exc)
            return False

    async def _give_up(self, error: BusError) -> None:
        log.error("stopping: %s", error)
        self.state.give_up(error)
        await self.status.set(ConnectionStatus.DISCONNECTED, str(error))

    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON: %.200r", raw)
            return
        kind = frame.get("type")
        if kind == "welcome":
            await self._on_welcome(ws, frame)
        elif kind == "message":
            await self.mailbox.on_message(AgentMessage.from_frame(frame))
        elif kind == "rerouted" and isinstance(frame.get("seq"), int):
            self.mailbox.on_rerouted(frame["seq"])
        elif kind in ("accepted", "error") and self.sends.on_answer(frame):
            return
        elif kind == "error":
            self.state.refusal = {**self.state.refusal, "message": frame.get("message"),
                                  "details": frame.get("details")}
            log.warning("the bus reported %s: %s", frame.get("code"), frame.get("message"))

    async def _on_welcome(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.sends.limits.learn(welcome)
        if not self.mailbox.on_welcome(welcome):
            await ws.close()
            return
        head_seq = int(welcome.get("head_seq") or 0)
        self.state.welcomed()
        self.connected.set()
        log.info("connected to %s as %s (resuming after seq %d; mailbox head %d)", self.session.bus_url,
                 self.session.sandbox_id, self.mailbox.position, head_seq)
        await self.status.set(ConnectionStatus.CONNECTED, f"resuming after seq {self.mailbox.position}")

    async def heartbeat_loop(self) -> None:
        """Send a heartbeat every `heartbeat_interval` while connected (it keeps the sandbox online)."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            if self.connected.is_set():
                await self.send_frame({"type": "heartbeat"})

    async def send_frame(self, frame: dict[str, Any] | str) -> bool:
        """Send `frame` (or a frame `encode_frame` encoded) on the socket; False when there is none or it closed
        meanwhile."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(frame if isinstance(frame, str) else encode_frame(frame))
            return True
        except ConnectionClosed:
            return False

