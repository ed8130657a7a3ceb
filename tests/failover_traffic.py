"""SDK traffic for the failover checker (tests/failover.py): one receiver agent and a few sender agents, all
talking to one URL (the balancer), and the counts of what happened to every send.

Senders send notifications with idempotency keys, and every few a `collaborate_with` request; the receiver's handler
records each message it handles by its key. Every attempt at a send is counted by its key (REST POSTs, the SDK's
own retries included, and `send` frames on the mailbox socket), so a send that needed more than one attempt and
was handled exactly once counts as recovered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from aintandem_agent_sdk import (
    AgentMessage,
    BaseAgent,
    BusConnectionError,
    BusServerError,
    ConnectionStatus,
    ContainerAgent,
    ContainerAgentConfig,
    MessageType,
)
from tests.servers import TEST_ADMIN_KEY

REQUEST_TIMEOUT = 40
SEND_ATTEMPTS = 10  # a sender's own tries of one send, each after the SDK's retries are used up


@dataclass(frozen=True)
class Load:
    """The traffic: `senders` agents each sending at least `per_sender` notifications `pause` s apart (going on
    until the fault is over), every `request_every`-th also a `collaborate_with` request (0: none)."""

    senders: int = 4
    per_sender: int = 50
    request_every: int = 10
    pause: float = 0.1


class Receiver(BaseAgent):
    """Handles every message once per call, recording its key and when; answers requests with their key."""

    def __init__(self, name: str):
        super().__init__(name, capabilities=["receive"])
        self.handled: Counter[str] = Counter()
        self.times: list[float] = []
        self.first_handled: dict[str, float] = {}

    async def handle(self, message: AgentMessage) -> dict | None:
        key, now = message.content["key"], time.monotonic()
        self.handled[key] += 1
        self.times.append(now)
        self.first_handled.setdefault(key, now)
        return {"answer": key} if message.message_type is MessageType.REQUEST else None


@dataclass
class Tally:
    """What the senders did: notification keys accepted, request keys asked and answered, failures seen, and the
    attempts each key's send took (socket frames and REST POSTs, the SDK's retries and the senders' own)."""

    sent: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    attempts: Counter[str] = field(default_factory=Counter)
    first_try: dict[str, float] = field(default_factory=dict)  # key -> when its first send began
    send_failures: list[str] = field(default_factory=list)  # sends that raised after the SDK's retries
    request_failures: list[str] = field(default_factory=list)


class Traffic:
    """SDK agents on both ends, all through the balancer at `url`: one receiver and `load.senders` senders, sending
    notifications with idempotency keys (and `collaborate_with` requests) until `fault_over` is set and at least
    `load.per_sender` each. A send that fails after the SDK's own retries (BusConnectionError, BusServerError) is
    sent again with its key, up to SEND_ATTEMPTS times."""

    def __init__(self, url: str, load: Load, tag: str | None = None):
        self.url, self.load = url, load
        self.tag = tag or uuid.uuid4().hex[:6]
        self.tally = Tally()
        self.reconnects: Counter[str] = Counter()
        self.receiver = Receiver(f"recv-{self.tag}")
        self.receiver_agent = self._agent(f"recv-{self.tag}", self.receiver)
        self.senders = [self._agent(f"send{i}-{self.tag}", BaseAgent(f"send{i}-{self.tag}"))
                        for i in range(load.senders)]
        self.fault_over = asyncio.Event()
        self.receiver_node = ""  # the API node the receiver's socket landed on, known before the fault
        self.sending_since = 0.0
        self._requests: list[asyncio.Task] = []

    def _agent(self, sandbox: str, agent: BaseAgent) -> ContainerAgent:
        bus = ContainerAgent(sandbox, self.url, agent, ContainerAgentConfig(token=TEST_ADMIN_KEY))

        def count(status: ConnectionStatus, detail: str) -> None:
            if status is ConnectionStatus.RECONNECTING:
                self.reconnects[sandbox] += 1

        bus.add_status_listener(count)
        self._count_attempts(bus)
        return bus

    def _count_attempts(self, bus: ContainerAgent) -> None:
        """Count every attempt at a send by its idempotency key: each REST POST (the SDK's own retries included)
        and each `send` frame on the mailbox socket (a frame left unanswered is sent again over REST). Reads the
        SDK's private parts, as tests/test_sdk_sends.py does."""
        attempts = self.tally.attempts

        async def rest(request: httpx.Request) -> None:
            if request.method == "POST" and (key := request.headers.get("Idempotency-Key")):
                attempts[key] += 1

        bus._client().client.event_hooks["request"].append(rest)
        frames = bus._socket_sends
        send_frame = frames.send

        async def socket(send, message, key):
            attempts[key] += 1
            return await send_frame(send, message, key)

        frames.send = socket

    @property
    def accepted(self) -> int:
        return len(self.tally.sent)

    async def send_all(self) -> None:
        """Run every sender to its end and wait for every request's answer (or failure)."""
        self.sending_since = time.monotonic()
        await asyncio.gather(*(self._sender(agent, i) for i, agent in enumerate(self.senders)))
        await asyncio.gather(*self._requests)

    async def _sender(self, agent: ContainerAgent, index: int) -> None:
        n, load = 0, self.load
        while n < load.per_sender or not self.fault_over.is_set():
            key = f"{self.tag}-{index}-{n:05d}"
            if load.request_every and n % load.request_every == 0:
                self._requests.append(asyncio.create_task(self._ask(agent, f"{key}-req")))
            await self._notify(agent, key)
            n += 1
            await asyncio.sleep(load.pause)

    async def _notify(self, agent: ContainerAgent, key: str) -> None:
        self.tally.first_try[key] = time.monotonic()
        for _ in range(SEND_ATTEMPTS):
            try:
                await agent.send_message(self.receiver_agent.sandbox_id, {"key": key}, MessageType.NOTIFICATION,
                                         idempotency_key=key)
                self.tally.sent.add(key)
                return
            except (BusConnectionError, BusServerError) as exc:
                self.tally.send_failures.append(f"{key}: {type(exc).__name__}: {exc}")
        raise AssertionError(f"{key}: {SEND_ATTEMPTS} sends failed: {self.tally.send_failures[-3:]}")

    async def _ask(self, agent: ContainerAgent, key: str) -> None:
        """Ask with `key`; asked again with the same key after a send that failed (the bus stores it once)."""
        self.tally.asked.add(key)
        self.tally.first_try[key] = time.monotonic()
        for _ in range(SEND_ATTEMPTS):
            try:
                answer = await agent.collaborate_with(self.receiver_agent.sandbox_id, {"key": key},
                                                      timeout=REQUEST_TIMEOUT, idempotency_key=key)
                if answer == {"answer": key}:
                    self.tally.answered.add(key)
                return
            except (BusConnectionError, BusServerError) as exc:
                self.tally.send_failures.append(f"{key}: {type(exc).__name__}: {exc}")
            except Exception as exc:  # counted and reported: every request must be answered
                self.tally.request_failures.append(f"{key}: {type(exc).__name__}: {exc}")
                return

    def lost(self) -> set[str]:
        return (self.tally.sent | self.tally.asked) - set(self.receiver.handled)

    def twice(self) -> dict[str, int]:
        return {key: count for key, count in self.receiver.handled.items() if count > 1}

    def retried(self) -> set[str]:
        """The senders' keys whose send took more than one attempt (the receiver's replies left out)."""
        return {key for key in self.tally.first_try if self.tally.attempts[key] > 1}

    def recovered(self) -> set[str]:
        """Keys whose send took more than one attempt and that were nevertheless handled exactly once (a request:
        and answered)."""
        return {key for key in self.retried() & (self.tally.sent | self.tally.asked)
                if self.receiver.handled[key] == 1 and (key in self.tally.sent or key in self.tally.answered)}

    def longest_stall(self) -> float:
        """The longest gap between two messages handled one after the other."""
        times = sorted(self.receiver.times)
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def delays(self) -> list[float]:
        """Per message handled, the seconds from the start of its first send to its first handling."""
        handled, tried = self.receiver.first_handled, self.tally.first_try
        return [handled[key] - tried[key] for key in handled.keys() & tried.keys()]
