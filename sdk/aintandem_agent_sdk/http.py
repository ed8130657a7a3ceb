"""REST calls to the bus with retries, bearer token and idempotency keys."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from aintandem_agent_sdk.config import RetryPolicy
from aintandem_agent_sdk.errors import (
    AuthenticationError,
    BusConnectionError,
    BusRejected,
    BusServerError,
    PermissionDenied,
)

__all__ = ["BusHttp"]

log = logging.getLogger("aintandem_agent_sdk")

RETRIED_STATUSES = {429} | set(range(500, 600))


class BusHttp:
    """An HTTP client for one bus: JSON in and out, errors as the SDK's exceptions.

    Connection errors, 429 and 5xx answers are retried per `retry`; every attempt of one call carries the
    same Idempotency-Key when one is given, so the bus creates the message only once.
    """

    def __init__(self, base_url: str, token: str | None, timeout: float, retry: RetryPolicy,
                 transport: httpx.AsyncBaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry = retry
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                        transport=transport)

    def set_token(self, token: str | None) -> None:
        """Send `token` as the bearer token from now on (None: no credentials)."""
        if token:
            self.client.headers["Authorization"] = f"Bearer {token}"
        else:
            self.client.headers.pop("Authorization", None)

    async def request(self, method: str, path: str, json: dict[str, Any] | None = None,
                      idempotency_key: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Make the call (with `token` instead of the client's own, when given) and return the JSON answer;
        raises BusRejected (4xx), or after the last attempt BusConnectionError / BusServerError."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        failure: Exception = BusConnectionError("no attempt made")
        for attempt in range(1, self.retry.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._pause(attempt - 1, failure))
            try:
                response = await self.client.request(method, path, json=json, headers=headers)
            except httpx.TransportError as exc:
                failure = BusConnectionError(f"{method} {path}: cannot reach the bus at {self.client.base_url} "
                                             f"({type(exc).__name__}: {exc})")
                log.debug("attempt %d: %s", attempt, failure)
                continue
            if response.status_code in RETRIED_STATUSES:
                failure = _server_error(response)
                log.debug("attempt %d: %s", attempt, failure)
                continue
            if response.status_code >= 400:
                raise _rejected(response)
            answer: dict[str, Any] = response.json()
            return answer
        raise failure

    def _pause(self, retry: int, failure: Exception) -> float:
        delay = self.retry.backoff.delay(retry)
        retry_after = getattr(failure, "retry_after", None)
        return max(delay, min(retry_after, self.retry.backoff.maximum)) if retry_after else delay

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _error_body(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"]), dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200] or response.reason_phrase, {}


def _rejected(response: httpx.Response) -> BusRejected:
    code, message, details = _error_body(response)
    kind = {401: AuthenticationError, 403: PermissionDenied}.get(response.status_code, BusRejected)
    return kind(response.status_code, code, message, details)


def _server_error(response: httpx.Response) -> BusServerError:
    code, message, _ = _error_body(response)
    try:
        retry_after: float | None = float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        retry_after = None
    return BusServerError(response.status_code, code, message, retry_after)
