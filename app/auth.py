"""The one place authentication plugs in (the security issue fills it in).

`authenticate()` runs before every REST request and in every WebSocket handshake. Today it admits
every caller as anonymous, and an `Authorization: Bearer ...` header is accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and, for sandbox tokens, the sandbox it is bound to."""

    role: str = "anonymous"
    sandbox_id: str | None = None
    bearer_token: str | None = None


def authenticate() -> Principal:
    """Identify the caller of the current request and remember it as `g.principal`."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    g.principal = Principal(bearer_token=token or request.args.get("token"))
    return g.principal


def authenticate_request() -> None:
    """Flask `before_request` hook: identify the caller; returns nothing so the request goes on."""
    authenticate()
