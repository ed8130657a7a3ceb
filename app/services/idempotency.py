"""Idempotent sends: an `Idempotency-Key` makes a retried send answer with the message the first send created.

A key is scoped per sending sandbox (the message's from_sandbox). The first send with a key stores the message
and, in the same transaction, the key with the message id and a fingerprint of the validated request; a later
send with the same key from the same sandbox within the window creates nothing and gets the original message
back (`replayed`), or Conflict `idempotency_key_reused` when its request differs. After the window the key may
be used again (its row is replaced), and `purge_expired` removes expired rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.errors import Conflict
from app.models import IdempotencyKey, Message, utcnow
from app.services import audit, messages

UNFINGERPRINTED_FIELDS = ("timestamp",)  # set by the server whatever the client sends
RACE_ATTEMPTS = 3  # transactions tried when concurrent sends keep colliding on the key's primary key


@dataclass(frozen=True)
class Accepted:
    """The outcome of a send: the stored message, and whether it is the original of an earlier send with the same
    key (`replayed`: nothing was stored, enqueued or announced by this send)."""

    message: Message
    replayed: bool = False


def fingerprint(data: dict) -> str:
    """The sha256 (hex) of the validated request as canonical JSON (sorted keys, compact, UTF-8), without the
    fields the server overwrites (`timestamp`). Equal for requests that differ only in key order, whitespace,
    a client timestamp or spelling out a default value."""
    canonical = {k: v for k, v in data.items() if k not in UNFINGERPRINTED_FIELDS}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def accept(db: Database, data: dict, key: str | None, *, max_content_bytes: int, window: int,
           actor: audit.Actor | None = None) -> Accepted:
    """Accept a validated AgentMessage at most once per (from_sandbox, `key`) within `window` seconds.

    Without a key this is `messages.accept`. With one: when the sandbox sent this key less than `window` seconds
    ago, return its original message with `replayed=True` if the request's fingerprint matches, else raise
    Conflict `idempotency_key_reused` (details: idempotency_key, message_id). Otherwise store the message as
    `messages.accept` does (same errors) and record the key in the same transaction, replacing an expired record;
    a send refused on its first try records nothing; `actor` audits the acceptance. Concurrent sends with one key
    store exactly one message: the others get it replayed.
    """
    messages.check_content_size(data, max_content_bytes)
    return accept_checked(db, data, key, window=window, actor=actor)


def accept_checked(db: Database, data: dict, key: str | None, *, window: int,
                   actor: audit.Actor | None = None) -> Accepted:
    """`accept` for a message whose content size was checked already."""
    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            with db.write() as session:
                return accept_in(session, data, key, window=window, actor=actor)
        except IntegrityError as exc:
            failure: Exception = exc
        except Conflict as exc:
            if exc.code != "duplicate_message_id" or key is None:
                raise
            failure = exc
        settled = settle_race(db, data, key, window)
        if settled is not None:
            return settled
        if attempt == RACE_ATTEMPTS:
            raise failure
    raise AssertionError("unreachable")  # the loop returns or raises


def accept_in(session, data: dict, key: str | None, *, window: int, actor: audit.Actor | None = None) -> Accepted:
    """`accept` inside the caller's write transaction (give each call a savepoint of its own when several share
    one): the same replays and refusals, except that a concurrent insert of this key or of a client-chosen
    message_id surfaces as IntegrityError (or Conflict `duplicate_message_id`) for the caller to settle with
    `settle_race`."""
    message = messages.new_message(data)
    client_chose_id = bool(data.get("message_id"))
    if key is None:
        messages.store(session, message, client_chose_id=client_chose_id, actor=actor)
        return Accepted(message)
    sandbox_id, print_ = data["from_sandbox"], fingerprint(data)
    record = _record(session, sandbox_id, key, lock=True)
    now = utcnow()
    if record is not None and _live(record, now, window):
        return _replay(session, record, print_)
    messages.store(session, message, client_chose_id=client_chose_id, actor=actor)
    if record is None:
        session.add(IdempotencyKey(sandbox_id=sandbox_id, key=key, message_id=message.id, fingerprint=print_,
                                   created_at=now))
    else:  # expired: the key starts a new life with this message
        record.message_id, record.fingerprint, record.created_at = message.id, print_, now
    session.flush()
    return Accepted(message)


def settle_race(db: Database, data: dict, key: str | None, window: int) -> Accepted | None:
    """After a send with `key` lost a race (a concurrent send inserted this key or this client-chosen message_id
    after our read of the key: PostgreSQL, read committed; SQLite serializes writers), the winner's key record,
    committed by now, decides: its message replayed (or Conflict for a different request). None when no live
    record decides and the send may be tried again; a client-chosen id that is taken raises Conflict."""
    if key is not None:
        with db.read() as session:
            record = _record(session, data["from_sandbox"], key)
            if record is not None and _live(record, utcnow(), window):
                return _replay(session, record, fingerprint(data))
    if data.get("message_id"):
        raise messages.duplicate_message_id(data["message_id"]) from None
    return None


def purge_expired(db: Database, window: int, *, now: datetime | None = None) -> int:
    """Delete the key records older than `window` seconds (at `now`, default the current time); return how many.

    Only expired records go: a live key keeps protecting its sandbox from duplicates until its window ends.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=window)
    with db.write() as session:
        return session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at <= cutoff)).rowcount


def _record(session, sandbox_id: str, key: str, *, lock: bool = False) -> IdempotencyKey | None:
    """The record of (sandbox_id, key), locked for this transaction when `lock` (PostgreSQL; a no-op on SQLite,
    whose write transactions hold the database lock), so concurrent replacements of an expired record queue."""
    query = select(IdempotencyKey).where(IdempotencyKey.sandbox_id == sandbox_id, IdempotencyKey.key == key)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _live(record: IdempotencyKey, now: datetime, window: int) -> bool:
    """True while `record` is younger than `window` seconds."""
    created = record.created_at
    if created.tzinfo is None:  # SQLite hands back naive datetimes, stored as UTC
        created = created.replace(tzinfo=UTC)
    return now - created < timedelta(seconds=window)


def _replay(session, record: IdempotencyKey, print_: str) -> Accepted:
    """The original message of a live `record` for a request with fingerprint `print_`, or the Conflict when the
    request differs from the one that created it."""
    if record.fingerprint != print_:
        raise Conflict(
            f"Idempotency-Key {record.key!r} was used by sandbox {record.sandbox_id!r} for a different request "
            f"(message {record.message_id!r}); use a new key for a new message",
            code="idempotency_key_reused", details={"idempotency_key": record.key, "message_id": record.message_id})
    return Accepted(session.get(Message, record.message_id), replayed=True)
