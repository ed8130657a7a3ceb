"""ContainerAgent: one sandbox's connection to the Collaboration Bus.

The public front; the work is done by private parts: `_session` (REST calls, registration, the token),
`_connection` (the mailbox socket and its reconnect state machine), `_mailbox` (handling and settling entries),
`_requests` (collaborate_with and responses) and `_sending` (the send family).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any
from urllib.parse import urlsplit

from aintandem_agent_sdk._connection import Connection, socket_url
from aintandem_agent_sdk._mailbox import Mailbox
from aintandem_agent_sdk._requests import Requests, requests_file
from aintandem_agent_sdk._sending import Sending, skill_metadata
from aintandem_agent_sdk._session import Session
from aintandem_agent_sdk._socket_sends import SocketSends
from aintandem_agent_sdk._status import ConnectionStatus, StatusCallback, StatusReporter
from aintandem_agent_sdk.agent import BaseAgent
from aintandem_agent_sdk.config import ContainerAgentConfig
from aintandem_agent_sdk.cursor import Cursor
from aintandem_agent_sdk.errors import AgentStateError, BusConnectionError, ConfigurationError
from aintandem_agent_sdk.http import BusHttp
from aintandem_agent_sdk.messages import PendingRequest

__all__ = ["ConnectionStatus", "ContainerAgent", "StatusCallback"]


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
    - sends are retried on connection errors and 5xx with one Idempotency-Key, so never duplicated (give your own
      `idempotency_key` and a send repeated after a restart is not duplicated either);
    - what a handler sends follows from the message it handles (``metadata.trace.parent_id``);
    - a request of `collaborate_with` stays in `pending_requests()` until its response arrives, with a cursor file
      across restarts too, and `wait_for_response` gets that response later.
    """

    def __init__(self, sandbox_id: str | None = None, collaboration_bus_url: str | None = None,
                 agent: BaseAgent | None = None, config: ContainerAgentConfig | None = None, *,
                 on_status: StatusCallback | None = None):
        self.sandbox_id = sandbox_id or os.environ.get("SANDBOX_ID") or ""
        if not self.sandbox_id:
            raise ConfigurationError("no sandbox id: pass sandbox_id or set SANDBOX_ID")
        self.bus_url = _bus_url(collaboration_bus_url or os.environ.get("COLLABORATION_BUS_URL") or "")
        self.agent = agent or BaseAgent()
        self.agent.bus = self
        self.config = config or ContainerAgentConfig()
        self._reporter = StatusReporter(on_status)
        self._session = Session(self.bus_url, self.sandbox_id, self.config, lambda: self.agent.describe())
        self._socket_sends = SocketSends(self.config.request_timeout)
        self._requests = Requests(self.sandbox_id, self.send_message, requests_file(self.config.cursor_file),
                                  late_grace=self.config.request_timeout)
        self._mailbox: Mailbox | None = None
        self._connection: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._closing: asyncio.Future[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def status(self) -> ConnectionStatus:
        """The socket's current state."""
        return self._reporter.status

    @property
    def _status(self) -> ConnectionStatus:  # what the send family looks at
        return self._reporter.status

    @property
    def last_seq(self) -> int:
        """The seq of the last mailbox entry processed with nothing unprocessed before it (0: none yet)."""
        return self._mailbox.position if self._mailbox else 0

    def add_status_listener(self, callback: StatusCallback) -> None:
        """Call `callback(status, detail)` (plain or async) on every connection status change."""
        self._reporter.add(callback)

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
        self._mailbox = Mailbox(self.sandbox_id, Cursor(self.sandbox_id, self.config.cursor_file), self.agent,
                                send_frame=self._send_frame, request=self._request, reply=self.reply,
                                claim_response=self._requests.claim)
        self._connection = Connection(self._session, self._mailbox, self._socket_sends, self._reporter, self.config)
        self._stopped = asyncio.Event()
        self._running, self._closing = True, None
        try:
            await asyncio.wait_for(self._open_session(), self.config.connect_timeout)
        except TimeoutError:
            await self.stop()
            raise BusConnectionError(f"could not connect to the bus at {self.bus_url} within "
                                     f"{self.config.connect_timeout:g}s") from None
        except BaseException:
            await self.stop()
            raise

    async def _open_session(self) -> None:
        assert self._mailbox is not None and self._connection is not None
        self._mailbox.resume_after(await self._session.register_when_up())
        self._start_tasks(self._mailbox, self._connection)
        connected = asyncio.ensure_future(self._connection.connected.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({connected, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            stopped.cancel()
        if self._connection.state.fatal is not None:
            raise self._connection.state.fatal
        if not self._connection.connected.is_set():
            raise AgentStateError("the agent was stopped while starting")

    def _start_tasks(self, mailbox: Mailbox, connection: Connection) -> None:
        name = self.sandbox_id
        self._tasks = [asyncio.create_task(self._run_connection(connection), name=f"bus-socket-{name}"),
                       asyncio.create_task(connection.heartbeat_loop(), name=f"bus-heartbeat-{name}"),
                       asyncio.create_task(self._session.token_refresh_loop(), name=f"bus-token-{name}")]
        self._tasks += [asyncio.create_task(mailbox.handler_loop(), name=f"bus-handler-{name}-{n}")
                        for n in range(self.config.max_concurrent_handlers)]

    async def _run_connection(self, connection: Connection) -> None:
        await connection.run()  # returns only when the bus refused the sandbox for good
        self._stopped.set()

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
            self._requests.stopped()
        await self._session.close()
        if was_running:
            await self._reporter.set(ConnectionStatus.DISCONNECTED, "stopped")

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
        if self._connection is not None and self._connection.state.fatal is not None:
            raise self._connection.state.fatal

    # ----------------------------------------------------------------- REST calls

    def _client(self) -> BusHttp:
        return self._session.client()

    async def register(self) -> dict[str, Any]:
        """Register (or update) this sandbox and its agent with the bus; returns the bus's registration.

        The bus answers with a sandbox token; the agent uses it from then on (the configured token may be an
        operator or registrar API key, good for registering only). If the current token is refused (it
        expired, or the sandbox was unregistered meanwhile), the configured token is tried once more.
        """
        return await self._session.register()

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self._session.request(method, path, **kwargs)

    async def refresh_token(self) -> None:
        """Get a fresh sandbox token from the bus now (the agent does it by itself before the token expires)."""
        await self._session.refresh_token()

    async def unregister(self) -> None:
        """Remove this sandbox from the registry (its mailbox is kept for a later registration)."""
        await self._session.client().request("DELETE", self._session.path)

    async def collaborate_with(self, target_sandbox: str, task: str | dict[str, Any], timeout: float = 30.0, *,
                               to_agent: str = "any", priority: int = 5,
                               metadata: dict[str, Any] | None = None,
                               idempotency_key: str | None = None, skill: str | None = None) -> dict[str, Any]:
        """Ask another sandbox's agent to do `task` and return its RESPONSE's content.

        `task` is sent as ``{"task": task}`` (a dict is sent as it is) in a REQUEST with a fresh correlation
        id and a ttl of `timeout` (nobody waits for the answer after that). Raises CollaborationTimeout when
        no response arrives within `timeout` seconds, CollaborationFailed when the other agent's handler
        raised (or it has no REQUEST handler), and BusRejected when the bus refuses the request (e.g. unknown
        sandbox; at once, without sending, content over the bus's limit: 413 ``payload_too_large``).

        The request is one of `pending_requests()` until its response arrives: when the call is cancelled or the
        agent stops (or dies, with a cursor file) first, `wait_for_response` gets the response later. With an
        `idempotency_key` the request's correlation id comes from the key, so asking again with the same key (and
        the same task) after a restart sends nothing new and returns the same response.

        ``collaborate_with("any", task, skill="summarize")`` asks whichever online agent of the workspace declares
        the skill (ConfigurationError for a skill with another target, or "any" without a skill).
        """
        skill_metadata(target_sandbox, skill, metadata)  # refuse a bad combination before anything is recorded
        if not self._running:
            raise AgentStateError("start() the agent first: responses arrive on its socket")
        return await self._requests.collaborate(target_sandbox, task, timeout, to_agent=to_agent, priority=priority,
                                                metadata=metadata, idempotency_key=idempotency_key, skill=skill)

    def pending_requests(self) -> list[PendingRequest]:
        """The requests `collaborate_with` sent whose response has not arrived yet, oldest first. With a cursor file
        they are kept beside it (``<cursor stem>.requests.json``), so a restarted agent lists the requests its
        earlier process made and can `wait_for_response` for them."""
        return self._requests.pending()

    async def wait_for_response(self, correlation_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The content of the RESPONSE to the request with `correlation_id` (one of `pending_requests()`, typically
        made before a restart).

        Returns at once when the response arrived already and nobody took it (each response is handed out once);
        else waits for it up to `timeout` seconds (default: until the request's deadline, and at least
        `config.request_timeout`, time for a resumed mailbox to replay it). Raises CollaborationFailed when the
        other agent's handler raised, CollaborationTimeout when nothing came in time (past the deadline the
        request is then forgotten), UnknownCorrelationId when the id is neither pending nor answered.
        """
        return await self._requests.wait(correlation_id, timeout, self._running)

    # ----------------------------------------------------------------- the socket

    def _socket_url(self) -> str:
        return socket_url(self.bus_url, self.sandbox_id, self.last_seq)

    async def _send_frame(self, frame: dict[str, Any] | str) -> bool:
        return await self._connection.send_frame(frame) if self._connection is not None else False


def _bus_url(url: str) -> str:
    """The bus's base URL without a trailing slash; ConfigurationError unless it looks like http(s)://host[:port]."""
    if not url:
        raise ConfigurationError("no bus URL: pass collaboration_bus_url or set COLLABORATION_BUS_URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"the bus URL must look like http://host:port, got {url!r}")
    return url.rstrip("/")
