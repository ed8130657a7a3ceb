"""The bus's exception tree. Every error a client can cause is a BusError with an HTTP status and a code.

    BusError                      500 internal_error
    ├── InvalidRequest            400 (validation_error, invalid_json, invalid_frame, ...)
    ├── PayloadTooLarge           413 payload_too_large
    ├── NotFound                  404 not_found
    │   ├── UnknownSandbox        404 unknown_sandbox
    │   ├── UnknownMessage        404 unknown_message
    │   └── UnknownWorkspace      404 unknown_workspace
    ├── Unauthorized              401 unauthorized (details.reason: missing, malformed, invalid, expired, revoked, …)
    ├── Forbidden                 403 forbidden (and sandbox_mismatch, policy_denied, …)
    ├── TooManyRequests           429 too_many_requests (Retry-After)
    ├── Conflict                  409 conflict (duplicate_message_id, workspace_mismatch, idempotency_key_reused, …)
    ├── Unprocessable             422 unprocessable (a skill's input does not match its schema)
    └── Unavailable               503 unavailable (database_unavailable, overloaded; Retry-After)

The HTTP layer turns each into `{"error": {"code", "message", "details"}}`; services raise them
without knowing about HTTP.
"""

from __future__ import annotations

from typing import Any


class BusError(Exception):
    """Base of every error the bus reports to a client."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details if details is not None else {}

    def to_dict(self) -> dict:
        """The JSON error body: {"error": {"code", "message", "details"}}."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error (none by default)."""
        return {}


class InvalidRequest(BusError):
    """The request (body, query or frame) does not match the schema."""

    status = 400
    code = "validation_error"


class PayloadTooLarge(BusError):
    """The request body or message content exceeds the configured limit."""

    status = 413
    code = "payload_too_large"


class NotFound(BusError):
    """The addressed resource does not exist."""

    status = 404
    code = "not_found"


class UnknownSandbox(NotFound):
    """The sandbox id is not registered (never was, or was unregistered)."""

    code = "unknown_sandbox"

    def __init__(self, sandbox_id: str, reason: str = "is not registered"):
        super().__init__(f"sandbox {sandbox_id!r} {reason}", details={"sandbox_id": sandbox_id})


class UnknownMessage(NotFound):
    """No message has this id."""

    code = "unknown_message"

    def __init__(self, message_id: str):
        super().__init__(f"message {message_id!r} does not exist", details={"message_id": message_id})


class UnknownWorkspace(NotFound):
    """No workspace has this id."""

    code = "unknown_workspace"

    def __init__(self, workspace: str):
        super().__init__(f"workspace {workspace!r} does not exist", details={"workspace": workspace})


class Conflict(BusError):
    """The request contradicts the current state (duplicate id, changed workspace)."""

    status = 409
    code = "conflict"


class Unprocessable(BusError):
    """The request is well-formed but its content does not satisfy what the bus checks it against (a skill's
    input schema); `details` name the failing path."""

    status = 422
    code = "unprocessable"


class Unauthorized(BusError):
    """No credentials, or credentials that do not authenticate (bad, expired, revoked); `details.reason` says which."""

    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="collab-bus"'}


class Forbidden(BusError):
    """The caller is authenticated but may not do this (role, another sandbox's resource, policy)."""

    status = 403
    code = "forbidden"


class TooManyRequests(BusError):
    """The caller exceeded a rate limit; it may retry after `retry_after` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None, details: Any = None):
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))}


class Unavailable(BusError):
    """A dependency (database, broker) cannot be reached right now; the client may retry."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None,
                 retry_after: float | None = None):
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))} if self.retry_after else {}
