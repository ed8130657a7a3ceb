"""Who is who, cached per process: sandboxes' workspaces and token versions, API keys, the policy rules.

Every request needs these facts (to authenticate, then to decide a send) and they seldom change. A process
keeps what it read and trusts it while the directory generation in the database has not moved. Every change
to a cached fact moves the generation in the transaction that makes the change (`mark_changed`), so the next
lookup on every process — API nodes, workers, the CLI — sees it: revoking a token, unregistering a sandbox or
editing a policy takes effect at once everywhere. A lookup costs one single-row read instead of the ORM
queries it replaces.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select, update

from app.db import Database
from app.models import ApiKey, DirectoryGeneration, Sandbox

GENERATION_ROW = 1
GENERATION_QUERY = f"SELECT value FROM {DirectoryGeneration.__tablename__} WHERE id = {GENERATION_ROW}"
MAX_ENTRIES = 100_000  # beyond this the cache starts over (a bound against floods of distinct ids)

T = TypeVar("T")


def mark_changed(session) -> None:
    """Record in `session`'s transaction that a cached fact changed; every process reloads after it commits."""
    session.execute(update(DirectoryGeneration).where(DirectoryGeneration.id == GENERATION_ROW)
                    .values(value=DirectoryGeneration.value + 1))


@dataclass(frozen=True)
class SandboxFacts:
    """What authentication and policies need of a sandbox row."""

    id: str
    workspace: str
    registered: bool
    token_version: int


@dataclass(frozen=True)
class KeyFacts:
    """What authentication needs of an API key row."""

    id: int
    name: str
    role: str
    workspace: str | None
    prefix: str
    revoked: bool


class Directory:
    """The cached facts of one process. Lookups answer what the database holds as of the lookup (never older
    than the last change committed before it began); unknown sandboxes and keys are not cached."""

    def __init__(self, db: Database):
        self.db = db
        self._lock = threading.Lock()
        self._generation = -1
        self._entries: dict[Hashable, object] = {}
        self._uses: dict[Hashable, float] = {}

    def sandbox(self, sandbox_id: str) -> SandboxFacts | None:
        """The sandbox `sandbox_id` (registered or not), or None when there never was one."""
        return self.cached(("sandbox", sandbox_id), lambda: self._load_sandbox(sandbox_id))

    def api_key(self, key_hash: str) -> KeyFacts | None:
        """The API key whose hash is `key_hash` (revoked or not), or None when there is none."""
        return self.cached(("key", key_hash), lambda: self._load_key(key_hash))

    def first_use_in(self, key: Hashable, seconds: float) -> bool:
        """True for the first call with `key` in this process, then again once `seconds` have passed since the
        last True (to write "last used" stamps once in a while, not on every request)."""
        now = time.monotonic()
        with self._lock:
            last = self._uses.get(key)
            if last is not None and now - last < seconds:
                return False
            if len(self._uses) >= MAX_ENTRIES:
                self._uses.clear()
            self._uses[key] = now
            return True

    def generation(self) -> int:
        """The directory generation the database holds now (one plain query on a pooled connection, `Database.scalar`:
        it runs before every lookup, so it skips the ORM and Core)."""
        return self.db.scalar(GENERATION_QUERY)

    def cached(self, key: Hashable, load: Callable[[], T | None]) -> T | None:
        """What `load()` returns, from the cache while the generation stands (a None is not kept). `load` must
        read only facts whose changes call `mark_changed`."""
        generation = self.generation()
        with self._lock:
            if generation > self._generation:
                self._entries.clear()
                self._generation = generation
            if generation == self._generation and key in self._entries:
                return self._entries[key]  # type: ignore[return-value]
        value = load()  # read after the generation: at least as new as the changes it counts
        if value is not None:
            with self._lock:
                if generation == self._generation:  # not when a newer generation arrived meanwhile
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key] = value
        return value

    def _load_sandbox(self, sandbox_id: str) -> SandboxFacts | None:
        with self.db.read() as session:
            sandbox = session.get(Sandbox, sandbox_id)
            if sandbox is None:
                return None
            return SandboxFacts(sandbox.id, sandbox.workspace, sandbox.is_registered, sandbox.token_version)

    def _load_key(self, key_hash: str) -> KeyFacts | None:
        with self.db.read() as session:
            key = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
            if key is None:
                return None
            return KeyFacts(key.id, key.name, key.role, key.workspace, key.prefix, key.revoked_at is not None)
