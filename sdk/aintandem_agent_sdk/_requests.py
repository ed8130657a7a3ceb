"""Requests and their responses (private): `collaborate_with`, the futures waiting for RESPONSEs, and the record of
pending requests and of answers nobody has taken yet (on disk next to the cursor file, when there is one), so a
requester that restarts still gets the response to a request it made before."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aintandem_agent_sdk._files import write_json_atomically
from aintandem_agent_sdk._waiting import wait_within
from aintandem_agent_sdk.errors import (
    AgentStateError,
    CollaborationFailed,
    CollaborationTimeout,
    ConfigurationError,
    UnknownCorrelationId,
)
from aintandem_agent_sdk.messages import AgentMessage, MessageType, PendingRequest

SendMessage = Callable[..., Awaitable[str]]
MAX_KEPT_ANSWERS = 1000  # responses kept for wait_for_response that nobody has taken yet


@dataclasses.dataclass(frozen=True)
class Answer:
    """A response kept until someone takes it; `durable` when it answers a request of the record (then saved)."""

    correlation_id: str
    target_sandbox: str
    content: dict[str, Any]
    failed: bool
    durable: bool = False

    @classmethod
    def of(cls, response: AgentMessage, target_sandbox: str | None = None, durable: bool = False) -> Answer:
        """The answer a received RESPONSE gives to a request sent to `target_sandbox` (default: its sender)."""
        return cls(response.correlation_id or "", target_sandbox or response.from_sandbox, response.content,
                   response.is_error_response, durable)

    def result(self) -> dict[str, Any]:
        """The response's content; CollaborationFailed when the other agent's handler raised (or it had none)."""
        if self.failed:
            raise CollaborationFailed(self.target_sandbox, self.correlation_id, self.content.get("error") or {})
        return self.content


def requests_file(cursor_file: str | None) -> Path | None:
    """Where the pending requests are kept: beside the cursor file (``cursor.json`` → ``cursor.requests.json``)."""
    if not cursor_file:
        return None
    path = Path(cursor_file)
    return path.with_name(f"{path.stem}.requests.json")


class RequestRecord:
    """Pending requests by correlation id, and kept answers (the last MAX_KEPT_ANSWERS), saved atomically to
    `path` after every change when there is one (answers to requests of the record only)."""

    def __init__(self, sandbox_id: str, path: Path | None):
        self.sandbox_id, self.path = sandbox_id, path
        self.pending: dict[str, PendingRequest] = {}
        self.answers: OrderedDict[str, Answer] = OrderedDict()
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            owner = data["sandbox_id"]
            pending = [PendingRequest(**item) for item in data["pending"]]
            answers = [Answer(**item, durable=True) for item in data["answers"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"requests file {path} is unreadable ({exc}); fix or delete it") from None
        if owner != self.sandbox_id:
            raise ConfigurationError(f"requests file {path} belongs to sandbox {owner!r}, not {self.sandbox_id!r}")
        self.pending = {request.correlation_id: request for request in pending}
        self.answers = OrderedDict((answer.correlation_id, answer) for answer in answers)

    def add(self, request: PendingRequest) -> None:
        """Record a request before it is sent."""
        self.pending[request.correlation_id] = request
        self._save()

    def drop(self, correlation_id: str) -> None:
        """Forget a pending request (it failed to send, or timed out)."""
        if self.pending.pop(correlation_id, None) is not None:
            self._save()

    def answered(self, response: AgentMessage, keep: bool) -> bool:
        """A response arrived: its request is no longer pending; keep the answer when `keep` (nobody took it).
        Returns whether it answered a request of the record."""
        correlation_id = response.correlation_id or ""
        request = self.pending.pop(correlation_id, None)
        if keep:
            target = request.target_sandbox if request else None
            self.answers[correlation_id] = Answer.of(response, target, durable=request is not None)
            self.answers.move_to_end(correlation_id)
            while len(self.answers) > MAX_KEPT_ANSWERS:
                self.answers.popitem(last=False)
        if request is not None:
            self._save()
        return request is not None

    def take_answer(self, correlation_id: str) -> Answer | None:
        """The kept answer to `correlation_id`, handed out once."""
        answer = self.answers.pop(correlation_id, None)
        if answer is not None and answer.durable:
            self._save()
        return answer

    def _save(self) -> None:
        if self.path is None:
            return
        answers = [{k: v for k, v in dataclasses.asdict(a).items() if k != "durable"}
                   for a in self.answers.values() if a.durable]
        write_json_atomically(self.path, {"sandbox_id": self.sandbox_id, "answers": answers,
                                          "pending": [dataclasses.asdict(r) for r in self.pending.values()]})


class Requests:
    """The requests this sandbox sent, matched to their responses by correlation id.

    Promises: a response reaches whoever awaits its correlation id (`collaborate` or `wait`); one that arrives while
    nobody does is kept, so a later `wait` returns it at once; a request whose caller was cancelled or whose agent
    stopped stays pending (on disk with a cursor file) until its response arrives.
    """

    def __init__(self, sandbox_id: str, send_message: SendMessage, path: Path | None = None,
                 late_grace: float = 10.0):
        self.sandbox_id = sandbox_id
        self.record = RequestRecord(sandbox_id, path)
        self._send_message = send_message
        self._late_grace = late_grace
        self._waiters: dict[str, set[asyncio.Future[AgentMessage]]] = {}

    def pending(self) -> list[PendingRequest]:
        """The requests still waiting for their response, oldest first."""
        return sorted(self.record.pending.values(), key=lambda request: request.sent_at)

    async def collaborate(self, target_sandbox: str, task: str | dict[str, Any], timeout: float, *, to_agent: str,
                          priority: int, metadata: dict[str, Any] | None,
                          idempotency_key: str | None = None, skill: str | None = None) -> dict[str, Any]:
        """Send `task` as a REQUEST and return its RESPONSE's content (see ContainerAgent.collaborate_with)."""
        content = task if isinstance(task, dict) else {"task": task}
        correlation_id = correlation_id_for(self.sandbox_id, idempotency_key)
        answer = self.record.take_answer(correlation_id)  # asked before with this key, answered since
        if answer is not None:
            return answer.result()
        if correlation_id not in self.record.pending:
            self.record.add(PendingRequest(correlation_id, target_sandbox, content, time.time(), timeout))

        async def ask(waiter: asyncio.Future[AgentMessage]) -> AgentMessage:
            await self._send_message(target_sandbox, content, MessageType.REQUEST, to_agent=to_agent,
                                     priority=priority, ttl=max(1, math.ceil(timeout)), requires_response=True,
                                     correlation_id=correlation_id, metadata=metadata,
                                     idempotency_key=idempotency_key, skill=skill)
            return await waiter

        response = await self._await(correlation_id, target_sandbox, timeout, ask, forget_on_timeout=True)
        return Answer.of(response, target_sandbox).result()

    async def wait(self, correlation_id: str, timeout: float | None, running: bool) -> dict[str, Any]:
        """The response to `correlation_id` (see ContainerAgent.wait_for_response)."""
        answer = self.record.take_answer(correlation_id)
        if answer is not None:
            return answer.result()
        request = self.record.pending.get(correlation_id)
        if request is None:
            raise UnknownCorrelationId(correlation_id)
        if not running:
            raise AgentStateError("start() the agent first: responses arrive on its socket")
        if timeout is None:
            timeout = max(request.deadline - time.time(), self._late_grace)

        async def wait(waiter: asyncio.Future[AgentMessage]) -> AgentMessage:
            return await waiter

        response = await self._await(correlation_id, request.target_sandbox, timeout, wait,
                                     forget_on_timeout=time.time() + timeout >= request.deadline)
        return Answer.of(response, request.target_sandbox).result()

    async def _await(self, correlation_id: str, target_sandbox: str, timeout: float,
                     step: Callable[[asyncio.Future[AgentMessage]], Awaitable[AgentMessage]], *,
                     forget_on_timeout: bool) -> AgentMessage:
        """Run `step` (which awaits the waiter it is given) within `timeout`. A cancelled or stopped wait leaves the
        request pending; a timeout forgets it when `forget_on_timeout`; a failed send forgets it."""
        waiter: asyncio.Future[AgentMessage] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(correlation_id, set()).add(waiter)
        try:
            return await wait_within(step(waiter), timeout)
        except (asyncio.CancelledError, AgentStateError):
            raise
        except TimeoutError:
            if forget_on_timeout:
                self.record.drop(correlation_id)
            raise CollaborationTimeout(target_sandbox, correlation_id, timeout) from None
        except BaseException:
            self.record.drop(correlation_id)
            raise
        finally:
            self._unwatch(correlation_id, waiter)

    def _unwatch(self, correlation_id: str, waiter: asyncio.Future[AgentMessage]) -> None:
        waiters = self._waiters.get(correlation_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[correlation_id]

    def claim(self, response: AgentMessage) -> bool:
        """Take a received RESPONSE: hand it to whoever awaits it, else keep it for `wait`. Returns False when it
        answers no request of this agent that anyone awaits or recorded (the agent's handler gets it too)."""
        if not response.correlation_id:
            return False
        waiters = [w for w in self._waiters.pop(response.correlation_id, ()) if not w.done()]
        known = self.record.answered(response, keep=not waiters)
        for waiter in waiters:
            waiter.set_result(response)
        return bool(waiters) or known

    def stopped(self) -> None:
        """The agent stopped: whoever waits for a response gets AgentStateError (the requests stay pending)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(AgentStateError("the agent stopped before the response arrived"))


def correlation_id_for(sandbox_id: str, idempotency_key: str | None) -> str:
    """A fresh correlation id, or (given a key) the one this sandbox's key always names: a request sent again with
    its key after a restart is the same request, waiting for the same response."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(uuid.NAMESPACE_URL, f"aintandem-request:{sandbox_id}:{idempotency_key}").hex
