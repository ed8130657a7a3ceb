"""ContainerAgent: one sandbox's connection to the Collaboration Bus."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import signal
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from aintandem_agent_sdk._sending import Sending
from aintandem_agent_sdk._status import ConnectionStatus, StatusCallback
from aintandem_agent_sdk._socket_sends import SocketSends
from aintandem_agent_sdk.agent import BaseAgent
from aintandem_agent_sdk.config import ContainerAgentConfig
from aintandem_agent_sdk.cursor import Cursor
from aintandem_agent_sdk.errors import (
    AgentStateError,
    AuthenticationError,
    BusConnectionError,
    BusError,
    BusRejected,
    BusServerError,
    CollaborationFailed,
    CollaborationTimeout,
    ConfigurationError,
    PermissionDenied,
)
from aintandem_agent_sdk.http import BusHttp
from aintandem_agent_sdk.messages import AgentMessage, MessageType

__all__ = ["ConnectionStatus", "ContainerAgent", "StatusCallback"]

log = logging.getLogger("aintandem_agent_sdk")

MAX_FRAME_BYTES = 32 * 1024 * 1024
REFUSED = 1008  # the close code the bus uses when it refuses a socket (the reason is the error code)
GOING_AWAY = 1001  # the close code of a bus node that stops on purpose (a restart): reconnect at once


class ContainerAgent(Sending):
    """Connects one sandbox's agent to the bus: registers it, delivers its mailbox to the agent, sends for it.

    Arguments default to the environment: `sandbox_id` to SANDBOX_ID, `collaboration_bus_url` to
    COLLABORATION_BUS_URL (e.g. ``http://bus:8000``), the token to BUS_TOKEN. Use it as
    ``async with ContainerAgent(...) as bus:`` or call `start()` and `stop()`.

    What it promises once started:

    - every mailbox entry is handed to `agent.handle` once, in seq order (with one handler at a time),
      across socket drops and bus restarts; with a cursor file, across container restarts too;
    - an entry is ACKed after the handler returns and NACKed with the error when it raises; for a
      REQUEST the handler's dict is sent back as the RESPONSE first;
    - the socket reconnects by itself with capped exponential back-off and jitter (at once after a close with
      1001 "going away": a bus node stopping on purpose), and heartbeats keep
      the sandbox online; `on_status` callbacks hear (status, detail) on every change;
    - sends are retried on connection errors and 5xx with one Idempotency-Key, so never duplicated.
    """

    def __init__(self, sandbox_id: str | None = None, collaboration_bus_url: str | None = None,
                 agent: BaseAgent | None = None, config: ContainerAgentConfig | None = None, *,
                 on_status: StatusCallback | None = None):
        self.sandbox_id = sandbox_id or os.environ.get("SANDBOX_ID") or ""
        if not self.sandbox_id:
            raise ConfigurationError("no sandbox id: pass sandbox_id or set SANDBOX_ID")
        url = collaboration_bus_url or os.environ.get("COLLABORATION_BUS_URL") or ""
        if not url:
            raise ConfigurationError("no bus URL: pass collaboration_bus_url or set COLLABORATION_BUS_URL")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"the bus URL must look like http://host:port, got {url!r}")
        self.bus_url = url.rstrip("/")
        self.agent = agent or BaseAgent()
        self.agent.bus = self
        self.config = config or ContainerAgentConfig()
        self._listeners: list[StatusCallback] = [on_status] if on_status else []
        self._status = ConnectionStatus.DISCONNECTED
        self._http: BusHttp | None = None
        self._tasks: list[asyncio.Task] = []
        self._ws: ClientConnection | None = None
        self._cursor: Cursor | None = None
        self._pending: dict[str, asyncio.Future[AgentMessage]] = {}
        self._in_flight: set[int] = set()
        self._running = False
        self._fatal: BusError | None = None
        self._failures = 0
        self._refusal: dict[str, Any] = {}
        self._closing: asyncio.Future[None] | None = None
        self._token: str | None = self.config.token
        self._token_expires_at: float | None = None
        self._recoveries = 0
        self._socket_sends = SocketSends(self.config.request_timeout)

    # ----------------------------------------------------------------- lifecycle

    @property
    def status(self) -> ConnectionStatus:
        """The socket's current state."""
        return self._status

    @property
    def last_seq(self) -> int:
        """The seq of the last mailbox entry processed with nothing unprocessed before it (0: none yet)."""
        return self._cursor.position if self._cursor else 0

    def add_status_listener(self, callback: StatusCallback) -> None:
        """Call `callback(status, detail)` (plain or async) on every connection status change."""
        self._listeners.append(callback)

    async def __aenter__(self) -> ContainerAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Register, open the mailbox socket and start handling messages; returns once connected.

        While the bus is not up yet it keeps trying for `config.connect_timeout` seconds, then raises
        BusConnectionError. A refusal (bad token, invalid registration) raises BusRejected at once.
        """
        if self._running:
            raise AgentStateError("the agent is already started")
        self._cursor = Cursor(self.sandbox_id, self.config.cursor_file)
        self._queue: asyncio.Queue[AgentMessage] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self._in_flight, self._fatal, self._failures, self._closing = set(), None, 0, None
        self._running = True
        try:
            await asyncio.wait_for(self._open_session(), self.config.connect_timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise BusConnectionError(f"could not connect to the bus at {self.bus_url} within "
                                     f"{self.config.connect_timeout:g}s") from None
        except BaseException:
            await self.stop()
            raise

    async def _open_session(self) -> None:
        await self._register_when_up()
        self._tasks = [asyncio.create_task(self._connection_loop(), name=f"bus-socket-{self.sandbox_id}"),
                       asyncio.create_task(self._heartbeat_loop(), name=f"bus-heartbeat-{self.sandbox_id}"),
                       asyncio.create_task(self._token_refresh_loop(), name=f"bus-token-{self.sandbox_id}")]
        self._tasks += [asyncio.create_task(self._handler_loop(), name=f"bus-handler-{self.sandbox_id}-{n}")
                        for n in range(self.config.max_concurrent_handlers)]
        connected = asyncio.ensure_future(self._connected.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({connected, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            stopped.cancel()
        if self._fatal is not None:
            raise self._fatal
        if not self._connected.is_set():
            raise AgentStateError("the agent was stopped while starting")

    async def _register_when_up(self) -> None:
        attempt = 0
        while True:
            try:
                registration = await self.register()
                break
            except (BusConnectionError, BusServerError) as exc:
                attempt += 1
                delay = self.config.reconnect.delay(attempt)
                log.warning("bus not reachable yet (%s); trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        if self._cursor is not None:  # without a cursor file: resume after what was acknowledged before
            self._cursor.advance_to(int(registration.get("settled_seq") or 0))

    async def stop(self) -> None:
        """Close the socket and stop handling; a handler still running is cancelled (its entry is not ACKed,
        so it comes back on the next start). Safe to call twice, and from a signal handler."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        was_running, self._running = self._running, False
        if was_running:
            self._stopped.set()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(AgentStateError("the agent stopped before the response arrived"))
        if self._http is not None:
            await self._http.close()
            self._http = None
        if was_running:
            await self._set_status(ConnectionStatus.DISCONNECTED, "stopped")

    async def run_forever(self, handle_signals: bool = True) -> None:
        """Wait until `stop()` is called (by SIGINT/SIGTERM too, when `handle_signals`); raise what stopped
        the agent if the bus refused it for good (e.g. its token was revoked)."""
        if not self._running:
            raise AgentStateError("start() the agent first")
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.stop()))
                    installed.append(signum)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                    pass
        try:
            await self._stopped.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
        if self._fatal is not None:
            raise self._fatal

    # ----------------------------------------------------------------- REST calls

    def _client(self) -> BusHttp:
        if self._http is None:
            self._http = BusHttp(self.bus_url, self._token, self.config.request_timeout, self.config.retry)
        return self._http

    async def register(self) -> dict[str, Any]:
        """Register (or update) this sandbox and its agent with the bus; returns the bus's registration.

        The bus answers with a sandbox token; the agent uses it from then on (the configured token may be an
        operator or registrar API key, good for registering only). If the current token is refused (it
        expired, or the sandbox was unregistered meanwhile), the configured token is tried once more.
        """
        body = {"sandbox_id": self.sandbox_id, "workspace": self.config.workspace,
                "agents": [self.agent.describe()], "metadata": self.config.metadata}
        try:
            registration = await self._client().request("POST", "/api/v1/sandboxes/register", json=body)
        except AuthenticationError:
            if not self.config.token or self.config.token == self._token:
                raise
            registration = await self._client().request("POST", "/api/v1/sandboxes/register", json=body,
                                                        token=self.config.token)
        if registration.get("token"):
            self._use_token(registration["token"], registration.get("token_expires_at"))
        return registration

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A REST call with the sandbox token; if the bus refuses the token (rotated, expired, sandbox re-created),
        register again with the configured credentials once and retry."""
        try:
            return await self._client().request(method, path, **kwargs)
        except AuthenticationError:
            if not self.config.token or self.config.token == self._token:
                raise
            log.warning("the bus refused the sandbox token on %s %s; registering again for a new one", method, path)
            await self.register()
            return await self._client().request(method, path, **kwargs)

    def _use_token(self, token: str, expires_at: float | None) -> None:
        self._token, self._token_expires_at = token, expires_at
        self._client().set_token(token)

    async def refresh_token(self) -> None:
        """Get a fresh sandbox token from the bus now (the agent does it by itself before the token expires)."""
        issued = await self._client().request("POST", f"/api/v1/sandboxes/{quote(self.sandbox_id, safe='')}/token",
                                              json={})
        self._use_token(issued["token"], issued.get("expires_at"))
        log.info("sandbox token refreshed; it expires in %.0fs", (issued.get("expires_at") or 0) - time.time())

    async def _token_refresh_loop(self) -> None:
        """Refresh the token when two thirds of its life have passed; retry with back-off when that fails."""
        failures = 0
        while True:
            if self._token_expires_at is None:
                await asyncio.sleep(self.config.heartbeat_interval)
                continue
            await asyncio.sleep(max(1.0, (self._token_expires_at - time.time()) * 2 / 3))
            try:
                await self.refresh_token()
                failures = 0
            except BusRejected as exc:
                log.error("the bus refused to refresh the sandbox token: %s", exc)
                self._token_expires_at = None
            except BusError as exc:
                failures += 1
                delay = self.config.reconnect.delay(failures)
                log.warning("could not refresh the sandbox token (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def unregister(self) -> None:
        """Remove this sandbox from the registry (its mailbox is kept for a later registration)."""
        await self._client().request("DELETE", f"/api/v1/sandboxes/{quote(self.sandbox_id, safe='')}")

    async def collaborate_with(self, target_sandbox: str, task: str | dict[str, Any], timeout: float = 30.0, *,
                               to_agent: str = "any", priority: int = 5,
                               metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask another sandbox's agent to do `task` and return its RESPONSE's content.

        `task` is sent as ``{"task": task}`` (a dict is sent as it is) in a REQUEST with a fresh correlation
        id and a ttl of `timeout` (nobody waits for the answer after that). Raises CollaborationTimeout when
        no response arrives within `timeout` seconds, CollaborationFailed when the other agent's handler
        raised, and BusRejected when the bus refuses the request (e.g. unknown sandbox).
        """
        if not self._running:
            raise AgentStateError("start() the agent first: responses arrive on its socket")
        content = task if isinstance(task, dict) else {"task": task}
        correlation_id = uuid.uuid4().hex
        waiter: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = waiter

        async def ask() -> AgentMessage:
            await self.send_message(target_sandbox, content, MessageType.REQUEST, to_agent=to_agent,
                                    priority=priority, ttl=max(1, math.ceil(timeout)), requires_response=True,
                                    correlation_id=correlation_id, metadata=metadata)
            return await waiter

        try:
            response = await asyncio.wait_for(ask(), timeout)
        except asyncio.TimeoutError:
            raise CollaborationTimeout(target_sandbox, correlation_id, timeout) from None
        finally:
            self._pending.pop(correlation_id, None)
        if response.is_error_response:
            raise CollaborationFailed(target_sandbox, correlation_id, response.content.get("error") or {})
        return response.content

    # ----------------------------------------------------------------- the socket

    def _socket_url(self) -> str:
        parts = urlsplit(self.bus_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        position = self._cursor.position if self._cursor else 0
        return f"{scheme}://{parts.netloc}{parts.path}/ws/sandboxes/{quote(self.sandbox_id, safe='')}?since={position}"

    async def _connection_loop(self) -> None:
        while True:
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            welcomed = False
            try:
                async with connect(self._socket_url(), additional_headers=headers, max_size=MAX_FRAME_BYTES,
                                   open_timeout=self.config.request_timeout, close_timeout=2) as ws:
                    self._ws = ws
                    try:
                        async for raw in ws:
                            await self._on_frame(ws, raw)
                    finally:
                        welcomed = self._connected.is_set()
                        self._ws = None
                        self._connected.clear()
                        self._socket_sends.disconnected()
                if welcomed and ws.close_code == GOING_AWAY:
                    await self._reconnect_at_once()
                    continue
                problem = "the bus closed the connection"
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == REFUSED:
                    if await self._on_refused(exc.rcvd.reason):
                        continue
                    return
                if welcomed and exc.rcvd is not None and exc.rcvd.code == GOING_AWAY:
                    await self._reconnect_at_once()
                    continue
                problem = f"connection lost ({exc})"
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401 and await self._recover_credentials():
                    continue
                if 400 <= status < 500 and status != 429:
                    kind = {401: AuthenticationError, 403: PermissionDenied}.get(status, BusRejected)
                    await self._give_up(kind(status, f"http_{status}", f"the bus refused the socket with HTTP {status}"))
                    return
                problem = f"the bus answered the socket with HTTP {status}"
            except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
                problem = f"cannot reach the bus ({type(exc).__name__}: {exc})"
            self._failures += 1
            delay = self.config.reconnect.delay(self._failures)
            log.warning("%s; reconnecting in %.1fs (attempt %d)", problem, delay, self._failures)
            await self._set_status(ConnectionStatus.RECONNECTING, f"{problem}; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _reconnect_at_once(self) -> None:
        """The bus node closed a working socket with 1001 (a planned stop): reconnect without back-off (another
        node, or the restarted one, takes it); if that fails, the usual back-off follows."""
        log.info("the bus is going away (a restart); reconnecting now")
        await self._set_status(ConnectionStatus.RECONNECTING, "the bus is going away; reconnecting now")

    async def _recover_credentials(self) -> bool:
        """The socket's token was refused: register again (with the configured token if need be) for a new one.
        Gives up after two tries that did not lead to a connection."""
        if self._recoveries >= 2:
            return False
        self._recoveries += 1
        try:
            await self.register()
            return True
        except BusError as exc:
            log.error("the bus refused this sandbox's credentials: %s", exc)
            return False

    async def _on_refused(self, code: str) -> bool:
        """The bus refused the socket (close 1008): re-register once if it forgot us; else give up for good."""
        error, self._refusal = self._refusal, {}
        if code == "unknown_sandbox" and not error.get("retried"):
            log.warning("the bus does not know sandbox %s any more; registering again", self.sandbox_id)
            await self._register_when_up()
            self._refusal = {"retried": True}
            return True
        await self._give_up(BusRejected(REFUSED, code or "refused", error.get("message") or "the bus refused the socket",
                                        error.get("details")))
        return False

    async def _give_up(self, error: BusError) -> None:
        log.error("stopping: %s", error)
        self._fatal = error
        self._stopped.set()
        await self._set_status(ConnectionStatus.DISCONNECTED, str(error))

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
            await self._on_message(AgentMessage.from_frame(frame))
        elif kind in ("accepted", "error") and self._socket_sends.on_answer(frame):
            return
        elif kind == "error":
            self._refusal = {**self._refusal, "message": frame.get("message"), "details": frame.get("details")}
            log.warning("the bus reported %s: %s", frame.get("code"), frame.get("message"))

    async def _on_welcome(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        assert self._cursor is not None
        head = int(frame.get("head_seq") or 0)
        if head < self._cursor.position:
            log.warning("the bus's mailbox for %s ends at seq %d but this agent processed up to seq %d: the "
                        "mailbox was reset; starting again from its beginning", self.sandbox_id, head,
                        self._cursor.position)
            self._cursor.reset()
            self._in_flight.clear()
            await ws.close()
            return
        self._failures, self._refusal, self._recoveries = 0, {}, 0
        self._connected.set()
        log.info("connected to %s as %s (resuming after seq %d; mailbox head %d)", self.bus_url, self.sandbox_id,
                 self._cursor.position, head)
        await self._set_status(ConnectionStatus.CONNECTED, f"resuming after seq {self._cursor.position}")

    async def _on_message(self, message: AgentMessage) -> None:
        assert self._cursor is not None and message.seq is not None
        seq = message.seq
        if seq in self._in_flight:
            return  # already queued or being handled: its ACK follows
        if self._cursor.seen(seq) and not (message.redelivered and message.attempt == 1):
            await self._ack(seq)  # handled before; the bus did not get our ACK (a replayed dead letter is handled again)
            return
        self._in_flight.add(seq)
        waiter = self._pending.get(message.correlation_id or "") if message.message_type is MessageType.RESPONSE else None
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            await self._settle(message, ok=True)
        else:
            self._queue.put_nowait(message)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            if self._connected.is_set():
                await self._send_frame({"type": "heartbeat"})

    async def _send_frame(self, frame: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(frame))
            return True
        except ConnectionClosed:
            return False

    # ----------------------------------------------------------------- handling

    async def _handler_loop(self) -> None:
        while True:
            message = await self._queue.get()
            await self._process(message)

    async def _process(self, message: AgentMessage) -> None:
        try:
            result = await self.agent.handle(message)
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"handle() must return a dict or None, not {type(result).__name__}")
        except Exception as exc:
            log.exception("the handler failed on seq %s (%s %s from %s)", message.seq, message.message_type.value,
                          message.message_id, message.from_sandbox)
            if message.message_type is MessageType.REQUEST and message.requires_response:
                await self._report_failure(message, exc)
            await self._settle(message, ok=False, reason=f"{type(exc).__name__}: {exc}")
            return
        if message.message_type is MessageType.REQUEST and result is not None:
            try:
                await self.reply(message, result)
            except BusError as exc:
                log.error("could not send the response to %s: %s", message.message_id, exc)
                await self._settle(message, ok=False, reason=f"could not send the response: {exc}")
                return
        await self._settle(message, ok=True)

    async def _report_failure(self, request: AgentMessage, exc: Exception) -> None:
        try:
            await self.reply(request, {"error": {"type": type(exc).__name__, "message": str(exc)}},
                             metadata={"status": "error"})
        except BusError as error:
            log.warning("could not tell %s that its request failed: %s", request.from_sandbox, error)

    async def _settle(self, message: AgentMessage, ok: bool, reason: str = "") -> None:
        """ACK (or NACK with `reason`) the entry, then record it as processed."""
        assert self._cursor is not None and message.seq is not None
        try:
            if ok:
                await self._ack(message.seq)
            else:
                await self._nack(message.seq, reason)
        finally:
            self._cursor.mark(message.seq)
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
            await self._request("POST", f"/api/v1/sandboxes/{quote(self.sandbox_id, safe='')}/{verb}",
                                         json=body)
        except BusRejected as exc:
            log.info("%s of seq %s refused: %s", verb, body["seq"], exc)
        except BusError as exc:
            log.warning("could not %s seq %s (%s); the bus will push the entry again", verb, body["seq"], exc)

    async def _set_status(self, status: ConnectionStatus, detail: str) -> None:
        self._status = status
        for callback in list(self._listeners):
            try:
                result = callback(status, detail)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("status callback %r failed", callback)
