"""The REST side of a ContainerAgent (private): its HTTP client, registration and the sandbox token.

The configured token may be an operator or registrar key, good for registering only; registration answers with a
sandbox token, used from then on and refreshed before it expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aintandem_agent_sdk.config import ContainerAgentConfig
from aintandem_agent_sdk.errors import AuthenticationError, BusConnectionError, BusError, BusRejected, BusServerError
from aintandem_agent_sdk.http import BusHttp

log = logging.getLogger("aintandem_agent_sdk")


class Session:
    """One sandbox's REST calls with its current token; a refused sandbox token leads to one re-registration."""

    def __init__(self, bus_url: str, sandbox_id: str, config: ContainerAgentConfig,
                 describe_agent: Callable[[], dict[str, Any]]):
        self.bus_url, self.sandbox_id, self.config = bus_url, sandbox_id, config
        self._describe_agent = describe_agent
        self._http: BusHttp | None = None
        self.token: str | None = config.token
        self.token_expires_at: float | None = None

    @property
    def path(self) -> str:
        """This sandbox's REST path, e.g. ``/api/v1/sandboxes/sb-1``."""
        return f"/api/v1/sandboxes/{quote(self.sandbox_id, safe='')}"

    def client(self) -> BusHttp:
        """The HTTP client (made on first use, again after `close`)."""
        if self._http is None:
            self._http = BusHttp(self.bus_url, self.token, self.config.request_timeout, self.config.retry)
        return self._http

    async def close(self) -> None:
        """Close the HTTP client's connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def register(self) -> dict[str, Any]:
        """Register (or update) the sandbox and its agent; keep the sandbox token the bus answers with. When the
        current token is refused, the configured one is tried once more."""
        body = {"sandbox_id": self.sandbox_id, "workspace": self.config.workspace,
                "agents": [self._describe_agent()], "metadata": self.config.metadata}
        try:
            registration = await self.client().request("POST", "/api/v1/sandboxes/register", json=body)
        except AuthenticationError:
            if not self.config.token or self.config.token == self.token:
                raise
            registration = await self.client().request("POST", "/api/v1/sandboxes/register", json=body,
                                                       token=self.config.token)
        if registration.get("token"):
            self._use_token(registration["token"], registration.get("token_expires_at"))
        return registration

    async def register_when_up(self) -> dict[str, Any]:
        """`register`, tried again with back-off for as long as the bus cannot be reached or answers 5xx."""
        attempt = 0
        while True:
            try:
                return await self.register()
            except (BusConnectionError, BusServerError) as exc:
                attempt += 1
                delay = self.config.reconnect.delay(attempt)
                log.warning("bus not reachable yet (%s); trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A REST call with the sandbox token; if the bus refuses the token (rotated, expired, sandbox re-created),
        register again with the configured credentials once and retry."""
        try:
            return await self.client().request(method, path, **kwargs)
        except AuthenticationError:
            if not self.config.token or self.config.token == self.token:
                raise
            log.warning("the bus refused the sandbox token on %s %s; registering again for a new one", method, path)
            await self.register()
            return await self.client().request(method, path, **kwargs)

    def _use_token(self, token: str, expires_at: float | None) -> None:
        self.token, self.token_expires_at = token, expires_at
        self.client().set_token(token)

    async def refresh_token(self) -> None:
        """Get a fresh sandbox token now."""
        issued = await self.client().request("POST", f"{self.path}/token", json={})
        self._use_token(issued["token"], issued.get("expires_at"))
        log.info("sandbox token refreshed; it expires in %.0fs", (issued.get("expires_at") or 0) - time.time())

    async def token_refresh_loop(self) -> None:
        """Refresh the token when two thirds of its life have passed; retry with back-off when that fails."""
        failures = 0
        while True:
            if self.token_expires_at is None:
                await asyncio.sleep(self.config.heartbeat_interval)
                continue
            await asyncio.sleep(max(1.0, (self.token_expires_at - time.time()) * 2 / 3))
            try:
                await self.refresh_token()
                failures = 0
            except BusRejected as exc:
                log.error("the bus refused to refresh the sandbox token: %s", exc)
                self.token_expires_at = None
            except BusError as exc:
                failures += 1
                delay = self.config.reconnect.delay(failures)
                log.warning("could not refresh the sandbox token (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
