"""Credentials and permissions: API keys, sandbox tokens (JWT), roles and the one permission table.

Callers present a bearer token. An API key (``cbk_…``) carries a role: admin, operator, viewer, or
registrar (bound to one workspace, may only register sandboxes there). A sandbox token is a JWT
(HS256, signed with AUTH_JWT_SECRET) bound to one sandbox and its workspace; it expires, and it is
revoked when the sandbox is unregistered or its token is rotated (the sandbox's token_version moves).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import jwt
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.config import MIN_ADMIN_KEY_LENGTH
from app.db import Database
from app.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized, UnknownSandbox
from app.models import KEY_ROLES, ApiKey, Role, Sandbox, isoformat, utcnow
from app.services.directory import Directory, mark_changed
from app.token_format import looks_like_jwt

KEY_PREFIX = "cbk_"
JWT_ALGORITHM = "HS256"  # the only algorithm accepted: alg=none, RS*/ES* and other HS variants are refused
JWT_ISSUER = "collab-bus"

# permission -> roles that hold it. Sandbox tokens are further limited to their own sandbox (and workspace),
# registrar keys to their workspace: see `authorize`.
PERMISSIONS: dict[str, frozenset[str]] = {
    "messages.send": frozenset({Role.ADMIN, Role.OPERATOR, Role.SANDBOX}),
    "messages.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SANDBOX}),
    "sandboxes.register": frozenset({Role.ADMIN, Role.OPERATOR, Role.REGISTRAR, Role.SANDBOX}),
    "sandboxes.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SANDBOX}),
    "sandboxes.unregister": frozenset({Role.ADMIN, Role.OPERATOR, Role.SANDBOX}),
    "sandboxes.token": frozenset({Role.ADMIN, Role.OPERATOR, Role.SANDBOX}),
    "mailbox.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SANDBOX}),
    "mailbox.settle": frozenset({Role.ADMIN, Role.OPERATOR, Role.SANDBOX}),
    "streams.observe": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "dead_letters.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "dead_letters.manage": frozenset({Role.ADMIN, Role.OPERATOR}),
    "policies.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "policies.manage": frozenset({Role.ADMIN, Role.OPERATOR}),
    "audit.read": frozenset({Role.ADMIN, Role.OPERATOR}),
    "traces.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "workspaces.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.SANDBOX}),
    "workspaces.manage": frozenset({Role.ADMIN, Role.OPERATOR}),
    "sandboxes.manage": frozenset({Role.ADMIN, Role.OPERATOR}),
    "sandboxes.logs": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "collaboration.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "collaboration.manage": frozenset({Role.ADMIN, Role.OPERATOR}),
    "configuration.read": frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER}),
    "keys.manage": frozenset({Role.ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and for sandbox tokens the sandbox (and workspace) the token is bound to."""

    role: str
    actor: str
    sandbox_id: str | None = None
    workspace: str | None = None
    key_id: int | None = None
    expires_at: float | None = None

    @property
    def is_sandbox(self) -> bool:
        """True for a sandbox token."""
        return self.role == Role.SANDBOX


ANONYMOUS_ADMIN = Principal(role=Role.ADMIN, actor="anonymous")  # what every caller is when AUTH_ENABLED=false


def authorize(principal: Principal, permission: str, *, sandbox_id: str | None = None,
              workspace: str | None = None) -> None:
    """Raise Forbidden unless `principal` holds `permission` for this sandbox / workspace.

    Sandbox tokens act only on their own sandbox (`sandbox_id`) and within their own workspace (`workspace`);
    registrar keys only within their workspace. Other roles are not scoped.
    """
    if principal.role not in PERMISSIONS[permission]:
        raise Forbidden(f"role {principal.role!r} may not {permission.replace('.', ' ')}",
                        details={"permission": permission, "role": principal.role,
                                 "allowed_roles": sorted(PERMISSIONS[permission])})
    scoped_workspace = principal.workspace if principal.role in (Role.SANDBOX, Role.REGISTRAR) else None
    if principal.is_sandbox and sandbox_id is not None and sandbox_id != principal.sandbox_id:
        raise Forbidden(f"the token of sandbox {principal.sandbox_id!r} may not act on sandbox {sandbox_id!r}",
                        code="sandbox_mismatch",
                        details={"permission": permission, "token_sandbox": principal.sandbox_id,
                                 "sandbox_id": sandbox_id})
    if scoped_workspace is not None and workspace is not None and workspace != scoped_workspace:
        raise Forbidden(f"this {principal.role} credential is limited to workspace {scoped_workspace!r}",
                        code="workspace_mismatch",
                        details={"permission": permission, "token_workspace": scoped_workspace, "workspace": workspace})


# ------------------------------------------------------------------------------------------- API keys

def hash_key(secret: str) -> str:
    """The stored form of an API key (keys are long random strings, so a plain SHA-256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_prefix(secret: str) -> str:
    """What listings show of a key: ``cbk_`` and 8 characters of a generated key; 4 characters of a preset one
    (an operator's own ADMIN_API_KEY may be short: its listing must not give half of it away)."""
    return secret[:12] if secret.startswith(KEY_PREFIX) else secret[:4]


def new_key_secret() -> str:
    """A fresh API key: ``cbk_`` and 43 URL-safe random characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_to_dict(key: ApiKey) -> dict:
    """The public representation of a key (never its secret or hash)."""
    return {"id": key.id, "name": key.name, "role": key.role, "workspace": key.workspace, "prefix": key.prefix,
            "created_at": isoformat(key.created_at), "revoked_at": isoformat(key.revoked_at),
            "last_used_at": isoformat(key.last_used_at)}


def create_key(db: Database, name: str, role: str, workspace: str | None = None,
               secret: str | None = None) -> tuple[dict, str]:
    """Create an API key; return (its description, its secret). The secret is not stored and cannot be shown again.

    A registrar key needs a workspace; other roles take none. `secret` presets the key (ADMIN_API_KEY).
    """
    if role not in KEY_ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(KEY_ROLES)}", details={"role": [f"unknown: {role}"]})
    if (role == Role.REGISTRAR) != bool(workspace):
        raise InvalidRequest("a registrar key needs a workspace, and only a registrar key takes one",
                             details={"workspace": ["required for registrar keys only"]})
    secret = secret or new_key_secret()
    with db.write() as session:
        if session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))) is not None:
            raise Conflict("this key exists already", code="duplicate_key")
        key = ApiKey(name=name, role=role, workspace=workspace, key_hash=hash_key(secret), prefix=key_prefix(secret),
                     created_at=utcnow())
        session.add(key)
        session.flush()
        return key_to_dict(key), secret


def list_keys(db: Database, include_revoked: bool = True) -> list[dict]:
    """Every key, oldest first."""
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with db.read() as session:
        return [key_to_dict(k) for k in session.scalars(query)]


def revoke_key(db: Database, ident: str) -> dict:
    """Revoke the key with this id, name or prefix (it must name exactly one active key); return it."""
    with db.write() as session:
        query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
        if ident.isdigit():
            matches = session.scalars(query.where(ApiKey.id == int(ident))).all()
        else:
            matches = session.scalars(query.where((ApiKey.name == ident) | (ApiKey.prefix == key_prefix(ident)))).all()
        if not matches:
            raise NotFound(f"no active key with id, name or prefix {ident!r}", code="unknown_key",
                           details={"key": ident})
        if len(matches) > 1:
            raise Conflict(f"{len(matches)} active keys match {ident!r}; use the id",
                           code="ambiguous_key", details={"ids": [k.id for k in matches]})
        key = matches[0]
        key.revoked_at = utcnow()
        mark_changed(session)
        return key_to_dict(key)


def ensure_admin_key(db: Database, preset: str | None, key_file: Path) -> str | None:
    """Make sure an admin key exists; return a newly created secret (to print once), else None.

    With `preset` (ADMIN_API_KEY) that key is registered if it is not yet. Otherwise, when no active admin
    key exists, one is created and written to `key_file` with mode 0600.
    """
    if preset:
        with db.read() as session:
            known = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(preset)))
        if known is None:
            try:
                create_key(db, "admin (ADMIN_API_KEY)", Role.ADMIN, secret=preset)
            except (Conflict, IntegrityError):  # another API node registered it at the same moment
                pass
        return None
    with db.read() as session:
        active = session.scalar(select(ApiKey).where(ApiKey.role == Role.ADMIN, ApiKey.revoked_at.is_(None)).limit(1))
    if active is not None:
        return None
    _, secret = create_key(db, "admin (first start)", Role.ADMIN)
    write_secret_file(key_file, secret)
    return secret


def write_secret_file(path: Path, secret: str) -> None:
    """Write `secret` to `path`, readable by the owner only (0600), replacing what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)


def jwt_secret(configured: str | None, secret_file: Path) -> str:
    """AUTH_JWT_SECRET, or else the secret kept in `secret_file` (created 0600 on first use)."""
    if configured:
        return configured
    if secret_file.exists():
        return secret_file.read_text().strip()
    secret = secrets.token_hex(32)
    write_secret_file(secret_file, secret)
    return secret


LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is refreshed at most this often (one write per minute)


def _key_principal(directory: Directory, secret: str) -> Principal:
    key = directory.api_key(hash_key(secret))
    if key is None:
        raise Unauthorized("unknown API key", details={"reason": "invalid"})
    if key.revoked:
        raise Unauthorized(f"API key {key.prefix}… was revoked", details={"reason": "revoked"})
    _note_key_use(directory, key.id)
    return Principal(role=key.role, actor=f"key:{key.id}:{key.name}", workspace=key.workspace, key_id=key.id)


def _note_key_use(directory: Directory, key_id: int) -> None:
    """Refresh the key's last_used_at, at most once per LAST_USED_RESOLUTION from each process."""
    if directory.first_use_in(("key-used", key_id), LAST_USED_RESOLUTION.total_seconds()):
        with directory.db.write() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


# ------------------------------------------------------------------------------------------- sandbox tokens

def issue_sandbox_token(secret: str, sandbox: Sandbox, ttl: int) -> dict:
    """A token for `sandbox` valid `ttl` seconds: {"token", "expires_at" (unix seconds), "token_type"}."""
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "sub": sandbox.id, "ws": sandbox.workspace, "role": Role.SANDBOX,
              "ver": sandbox.token_version, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    return {"token": jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), "expires_at": now + ttl,
            "token_type": "Bearer"}


def _sandbox_principal(directory: Directory, secret: str, token: str, leeway: float) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], issuer=JWT_ISSUER, leeway=leeway,
                            options={"require": ["exp", "iat", "sub", "ver", "iss"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the sandbox token has expired; refresh it before it does",
                           details={"reason": "expired"}) from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized(f"the sandbox token was issued in the future (more than {leeway:g}s of clock skew "
                           "between API nodes; see JWT_LEEWAY)", details={"reason": "not_yet_valid"}) from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized(f"only {JWT_ALGORITHM} tokens are accepted",
                           details={"reason": "algorithm_not_allowed"}) from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("the token's signature does not verify", details={"reason": "invalid_signature"}) from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}", details={"reason": "invalid"}) from None
    if claims.get("role") != Role.SANDBOX:
        raise Unauthorized("not a sandbox token", details={"reason": "invalid"})
    sandbox = directory.sandbox(claims["sub"])
    if sandbox is None or not sandbox.registered or sandbox.token_version != claims["ver"]:
        raise Unauthorized("the sandbox token was revoked (sandbox unregistered or token rotated)",
                           details={"reason": "revoked"})
    return Principal(role=Role.SANDBOX, actor=f"sandbox:{sandbox.id}", sandbox_id=sandbox.id,
                     workspace=sandbox.workspace, expires_at=float(claims["exp"]))


def authenticate_token(directory: Directory, jwt_key: str, token: str | None, leeway: float = 0.0) -> Principal:
    """The principal a bearer token stands for; Unauthorized (with details.reason) when it stands for none.
    Revocations (unregistering, token rotation, revoked keys) committed before the call are honoured.

    A sandbox token's `iat` and `exp` are checked with `leeway` seconds of tolerance for clock skew between
    the node that issued it and this one.
    """
    if not token:
        raise Unauthorized("authentication required: send `Authorization: Bearer <API key or sandbox token>`",
                           details={"reason": "missing"})
    if looks_like_jwt(token):
        return _sandbox_principal(directory, jwt_key, token, leeway)
    if token.startswith(KEY_PREFIX) or len(token) >= MIN_ADMIN_KEY_LENGTH:  # ADMIN_API_KEY may be any such value
        return _key_principal(directory, token)
    raise Unauthorized("the token is neither an API key nor a sandbox token", details={"reason": "malformed"})


def rotate_sandbox_token(db: Database, secret: str, sandbox_id: str, ttl: int, revoke_others: bool) -> dict:
    """A new token for `sandbox_id`; with `revoke_others`, every token issued before stops working."""
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        if revoke_others:
            sandbox.token_version += 1
            mark_changed(session)
        session.flush()
        return issue_sandbox_token(secret, sandbox, ttl)
