"""The SDK's exceptions: one tree rooted in `BusError`.

    BusError                      anything the SDK raises on purpose
    ├── ConfigurationError        missing/invalid sandbox id, bus URL or config value
    ├── AgentStateError           call out of order (e.g. collaborate_with before start, start twice)
    ├── BusConnectionError        the bus could not be reached (after the retry policy was used up)
    ├── BusServerError            the bus kept answering 5xx or 429 (after the retry policy was used up)
    ├── BusRejected               the bus refused the request (4xx); carries the server's error code
    │   ├── AuthenticationError   401: missing, invalid, expired or revoked credentials
    │   └── PermissionDenied      403: the credentials may not do this (role, other sandbox, policy)
    ├── BusTimeoutError           something did not happen in time
    │   └── CollaborationTimeout  collaborate_with got no response within its timeout
    ├── CollaborationFailed       the other agent's handler raised while answering collaborate_with (or it has none)
    ├── NoHandler                 BaseAgent.handle got a REQUEST no handler of the agent takes
    └── UnknownCorrelationId      wait_for_response for a request that is neither pending nor answered

Catch `BusError` to handle every failure of the bus; catch a subclass for one kind.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "AgentStateError",
    "AuthenticationError",
    "BusConnectionError",
    "BusError",
    "BusRejected",
    "BusServerError",
    "BusTimeoutError",
    "CollaborationFailed",
    "CollaborationTimeout",
    "ConfigurationError",
    "NoHandler",
    "PermissionDenied",
    "UnknownCorrelationId",
]


class BusError(Exception):
    """Base of every exception the SDK raises on purpose."""


class ConfigurationError(BusError):
    """The agent is misconfigured: a required setting is missing or invalid."""


class AgentStateError(BusError):
    """The call does not fit the agent's state (not started, already started, stopped)."""


class BusConnectionError(BusError):
    """The bus could not be reached: connection refused, DNS failure, network timeout, socket dropped."""


class BusServerError(BusError):
    """The bus answered with a server error (5xx), or asked to slow down (429), every time it was tried.

    `retry_after` is the bus's Retry-After hint in seconds, when it gave one.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"bus server error {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


MAX_DETAILS_CHARS = 500  # how much of a refusal's details its text shows
TOKEN_HINT = ("set BUS_TOKEN or pass ContainerAgentConfig(token=...): a registrar or operator API key (e.g. "
              "`collab-bus keys create --role registrar --workspace default --name my-agent`) or this sandbox's token")


class BusRejected(BusError):
    """The bus refused the request (HTTP 4xx or a refused WebSocket). Retrying the same request will not help.

    `code` is the server's stable error code (e.g. ``unknown_sandbox``, ``validation_error``), `details` its
    details object and `status` the HTTP status (1008 for a refused WebSocket). The text shows all three, the
    details as compact JSON (cut after MAX_DETAILS_CHARS characters).
    """

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(self._describe(message))

    def _describe(self, message: str) -> str:
        """The exception's text: status, code, `message` and the details."""
        details = json.dumps(self.details, separators=(",", ":"), sort_keys=True, default=str) if self.details else ""
        if len(details) > MAX_DETAILS_CHARS:
            details = details[:MAX_DETAILS_CHARS] + "…"
        return f"bus rejected the request ({self.status} {self.code}): {message}" + (
            f" (details: {details})" if details else "")


class AuthenticationError(BusRejected):
    """The bus refused the credentials (401): missing, invalid, expired or revoked.

    Its text says how to give the agent credentials: BUS_TOKEN or ``ContainerAgentConfig(token=…)``; when none were
    sent it says so, not the bus's own hint (which is for REST callers). `message` stays the bus's.
    """

    def _describe(self, message: str) -> str:
        if self.details.get("reason") == "missing":
            message = "no credentials were sent"
        return f"{super()._describe(message)}; {TOKEN_HINT}"


class PermissionDenied(BusRejected):
    """The credentials are valid but may not do this (403): `code` is ``forbidden``, ``sandbox_mismatch``,
    ``workspace_mismatch`` or ``policy_denied`` (then `details["rule"]` names the refusing rule)."""


class BusTimeoutError(BusError):
    """Something the caller waited for did not happen in time."""


class CollaborationTimeout(BusTimeoutError):
    """`collaborate_with` got no response within `timeout` seconds."""

    def __init__(self, target_sandbox: str, correlation_id: str, timeout: float):
        super().__init__(f"no response from {target_sandbox!r} within {timeout:g}s (correlation_id {correlation_id})")
        self.target_sandbox = target_sandbox
        self.correlation_id = correlation_id
        self.timeout = timeout


class CollaborationFailed(BusError):
    """The other agent received the request but its handler raised; `error` is what it reported."""

    def __init__(self, target_sandbox: str, correlation_id: str, error: dict[str, Any]):
        kind = error.get("type", "error")
        super().__init__(f"{target_sandbox!r} failed to handle the request: {kind}: {error.get('message', '')}")
        self.target_sandbox = target_sandbox
        self.correlation_id = correlation_id
        self.error = error


class NoHandler(BusError):
    """`BaseAgent.handle` got a REQUEST that no handler registered with `BaseAgent.on` takes. The agent answers the
    requester with a failure (its `collaborate_with` raises CollaborationFailed) instead of leaving it waiting."""

    def __init__(self, agent_name: str, message_type: str):
        super().__init__(f"no handler for {message_type} messages in agent {agent_name!r}")
        self.agent_name = agent_name
        self.message_type = message_type


class UnknownCorrelationId(BusError):
    """`wait_for_response` was asked for a correlation id this agent neither waits for (see `pending_requests`) nor
    holds a response to: never sent from here, already answered and taken, timed out, or (without a cursor file)
    sent by an earlier process."""

    def __init__(self, correlation_id: str):
        super().__init__(f"no pending request and no response with correlation_id {correlation_id!r}")
        self.correlation_id = correlation_id
