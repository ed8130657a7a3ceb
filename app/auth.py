"""Authentication and authorization at the HTTP/WebSocket edge.

`authenticate_request` runs before every request: it finds the bearer token (an `Authorization: Bearer`
header, or a `token` query parameter for browsers), checks it (app.services.auth), applies the per-caller
rate limit, and keeps the caller as `g.principal`. A failed authentication is audited, counted, and limited
per client address. WebSocket handshakes without a token are let through to the route, which then expects
an `auth` frame first (`authenticate_frame`), as long as their address holds fewer than
MAX_UNAUTHENTICATED_SOCKETS_PER_ADDRESS such sockets. Endpoints call `require(permission, ...)`.
With AUTH_ENABLED=false every caller is an anonymous admin.
"""

from __future__ import annotations

import logging
import time
from typing import NoReturn

from flask import g, request

from app import metrics
from app.context import BusContext, bus
from app.errors import BusError, Forbidden, TooManyRequests, Unauthorized
from app.services import audit
from app.services.auth import ANONYMOUS_ADMIN, Principal, authenticate_token, authorize
from app.ui import is_ui_path

log = logging.getLogger(__name__)

OPEN_PATHS = ("/", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/docs")
EXPECTED_AUTHORIZATION = "`Authorization: Bearer <key or token>`"
# What a browser sends by itself, on socket handshakes too, for a proxy in front of the bus that asks for it
BROWSER_SCHEMES = frozenset({"basic", "digest", "negotiate", "ntlm"})


def bearer_token() -> str | None:
    """The token the request carries: `Authorization: Bearer …`, else, on a WebSocket handshake only (browsers
    cannot set headers there), the `token` query parameter.

    An Authorization header of another form (`Token …`, a bare key, `Bearer` with nothing after it) is
    Unauthorized with reason `malformed`, naming the form expected and never echoing the header; on a handshake
    the schemes a browser adds by itself for a proxy (Basic, Digest, Negotiate, NTLM) are passed over.
    """
    parts = request.headers.get("Authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1].strip()
    handshake = request.path.startswith("/ws/")
    if parts and not (handshake and parts[0].lower() in BROWSER_SCHEMES):
        raise Unauthorized(f"malformed Authorization header: expected {EXPECTED_AUTHORIZATION}",
                           details={"reason": "malformed"})
    if handshake:
        return request.args.get("token") or None
    if "token" in request.args:
        raise Unauthorized("a token in the query string is accepted on /ws/ handshakes only (URLs end up in logs): "
                           f"send {EXPECTED_AUTHORIZATION}", details={"reason": "token_in_query"})
    return None


def client_address() -> str:
    """The client's address as this process sees it: behind TRUSTED_PROXIES proxies, the one the nearest proxy
    saw (X-Forwarded-For, applied by werkzeug's ProxyFix); else the peer's."""
    return request.remote_addr or "unknown"


def authenticate(token: str | None) -> Principal:
    """Check `token` for the current request and remember the caller as `g.principal`.

    Raises Unauthorized (audited and counted per client address) or, once an address has failed
    AUTH_FAILURE_LIMIT times in a minute, TooManyRequests for its further failures (valid credentials from it
    still pass); TooManyRequests too when the caller exceeded its request rate.
    """
    ctx = bus()
    if not ctx.settings.auth_enabled:
        g.principal = ANONYMOUS_ADMIN
        return g.principal
    try:
        principal = authenticate_token(ctx.directory, ctx.jwt_secret, token, ctx.settings.jwt_leeway)
    except Unauthorized as exc:
        refuse_credentials(exc)
    wait = ctx.rate_limiter.take(principal.actor)
    if wait:
        metrics.RATE_LIMITED.inc()
        raise TooManyRequests(f"request rate above {ctx.settings.rate_limit_per_second:g}/s for this caller",
                              retry_after=wait, details={"reason": "rate_limit"})
    g.principal = principal
    return principal


def refuse_credentials(exc: BusError) -> NoReturn:
    """Raise `exc` for the current request, counted and audited (`auth.failed` with the error's
    `details.reason`) per client address; once the address has failed AUTH_FAILURE_LIMIT times in a minute,
    raise TooManyRequests instead, without further audit rows."""
    ctx = bus()
    address = client_address()
    blocked = ctx.auth_failures.blocked_for(address)
    if blocked:
        metrics.AUTH_FAILURES.inc()
        raise TooManyRequests("too many failed authentications from this address; wait before trying again",
                              retry_after=blocked, details={"reason": "auth_failures"}) from None
    _failed(ctx, address, exc.details.get("reason", "invalid"))
    raise exc


def _failed(ctx: BusContext, address: str, reason: str) -> None:
    ctx.auth_failures.fail(address)
    metrics.AUTH_FAILURES.inc()
    log.warning("authentication failed from %s on %s %s: %s", address, request.method, request.path, reason)
    try:
        audit.record_now(ctx.db, audit.Actor("anonymous", None, address), "auth.failed", audit.REFUSED,
                         target=request.path, reason=reason, method=request.method)
    except Exception:  # the refusal stands even if the audit row cannot be written
        log.exception("could not audit a failed authentication")


def authenticate_request() -> None:
    """Flask `before_request` hook: authenticate every request except the open ones (health, metrics, the GUI's
    static pages).

    A WebSocket handshake that carries no token is let through: its route reads an `auth` frame first. It takes
    one of its address's places for sockets not authenticated yet; with none left it is refused (429).
    """
    if request.path in OPEN_PATHS or request.endpoint is None or is_ui_path(request.path):
        return
    if not bus().settings.auth_enabled:
        g.principal = ANONYMOUS_ADMIN
        return
    try:
        token = bearer_token()
    except Unauthorized as exc:
        refuse_credentials(exc)
    if token is None and request.path.startswith("/ws/"):
        _hold_unauthenticated_socket()
        return
    authenticate(token)


def _hold_unauthenticated_socket() -> None:
    ctx = bus()
    address = client_address()
    if not ctx.unauthenticated_sockets.acquire(address):
        limit = ctx.unauthenticated_sockets.limit
        refuse_credentials(TooManyRequests(
            f"this address already has {limit} sockets waiting for their `auth` frame; authenticate those, or "
            "send the token in the handshake", retry_after=max(1, round(ctx.settings.auth_frame_timeout)),
            code="too_many_unauthenticated_sockets", details={"reason": "too_many_unauthenticated_sockets",
                                                              "limit": limit}))
    g.unauthenticated_socket = address


def release_unauthenticated_socket(_exc: BaseException | None = None) -> None:
    """Give back the place the current socket held while unauthenticated (once authenticated, or at the end of
    the request; also a Flask `teardown_request` hook)."""
    address = g.pop("unauthenticated_socket", None)
    if address is not None:
        bus().unauthenticated_sockets.release(address)


def authenticate_frame(frame: dict) -> Principal:
    """Authenticate a socket from its first frame, ``{"type": "auth", "token": "…"}``; its place among its
    address's unauthenticated sockets is given back either way."""
    release_unauthenticated_socket()
    if frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
        refuse_credentials(Unauthorized(
            "authentication required: send {\"type\": \"auth\", \"token\": \"…\"} as the first frame, or a token "
            "in the Authorization header or `token` query parameter", details={"reason": "missing"}))
    return authenticate(frame["token"])


REFUSAL_AUDIT_INTERVAL = 10.0  # seconds: a flood of 429s from one caller leaves one audit row per interval


def audit_refusal(status: int, code: str) -> None:
    """Audit a request refused with 413 or 429 (`request.refused`); 429s at most once per caller per interval."""
    ctx = bus()
    principal = g.get("principal")
    actor = audit.Actor(principal.actor if principal else "anonymous", principal.role if principal else None,
                        client_address())
    if status == 429:
        now = time.monotonic()
        last = ctx.refusal_audit_times.get((actor.id, actor.remote_addr))
        if last is not None and now - last < REFUSAL_AUDIT_INTERVAL:
            return
        ctx.refusal_audit_times[(actor.id, actor.remote_addr)] = now
    try:
        audit.record_now(ctx.db, actor, "request.refused", audit.REFUSED, target=request.path, status=status,
                         code=code, method=request.method)
    except Exception:
        log.exception("could not audit a refused request")


def is_authenticated() -> bool:
    """Whether the current request has an authenticated caller yet."""
    return "principal" in g


def current_principal() -> Principal:
    """The caller of the current request."""
    return g.principal


def current_actor() -> audit.Actor:
    """The caller of the current request, as the audit trail names it."""
    principal = current_principal()
    return audit.Actor(principal.actor, principal.role, client_address())


def require(permission: str, *, sandbox_id: str | None = None, workspace: str | None = None) -> Principal:
    """The caller, if it holds `permission` (for this sandbox / workspace); else Forbidden, audited."""
    principal = current_principal()
    try:
        authorize(principal, permission, sandbox_id=sandbox_id, workspace=workspace)
    except Forbidden as exc:
        try:
            audit.record_now(bus().db, current_actor(), "access.denied", audit.REFUSED,
                             target=sandbox_id or workspace or request.path, permission=permission, code=exc.code,
                             path=request.path)
        except Exception:
            log.exception("could not audit a refusal")
        raise
    return principal
