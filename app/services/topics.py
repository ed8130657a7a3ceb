"""Topics: names, patterns and how they match (as AMQP topic exchanges do), and sandboxes' durable subscriptions.

A topic is dot-separated words (`research.papers.crdt`); a pattern is the same with two wildcards as whole words:
`*` matches exactly one word, `#` zero or more (`research.#` matches `research` and `research.a.b`; `#` alone
matches every topic). A topic message is a broadcast restricted to the sandboxes of the sender's workspace with a
matching subscription; subscriptions are stored, so a subscriber that is offline finds the message in its mailbox.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from sqlalchemy import select

from app.db import Database
from app.errors import Conflict, NotFound, UnknownSandbox
from app.models import TOPIC_LENGTH, Sandbox, Subscription, isoformat
from app.services import audit

WORD = r"[A-Za-z0-9_-]+"
TOPIC_RE = re.compile(rf"{WORD}(\.{WORD})*\Z")
PATTERN_RE = re.compile(rf"({WORD}|\*|#)(\.({WORD}|\*|#))*\Z")
MAX_SUBSCRIPTIONS = 100  # per sandbox

TOPIC_RULE = (f"dot-separated words of letters, digits, _ and - (no empty word), at most {TOPIC_LENGTH} "
              "characters, e.g. research.papers")
PATTERN_RULE = f"{TOPIC_RULE}; a word may be * (exactly one word) or # (zero or more words)"


def is_topic(text: str) -> bool:
    """Whether `text` is a valid topic name."""
    return len(text) <= TOPIC_LENGTH and bool(TOPIC_RE.match(text))


def is_pattern(text: str) -> bool:
    """Whether `text` is a valid subscription pattern."""
    return len(text) <= TOPIC_LENGTH and bool(PATTERN_RE.match(text))


def matches(pattern: str, topic: str) -> bool:
    """Whether `topic` matches `pattern` (`*` one word, `#` zero or more words)."""
    return _matcher(pattern)(tuple(topic.split(".")))


@lru_cache(maxsize=4096)
def _matcher(pattern: str):
    words = tuple(pattern.split("."))

    def match(topic: tuple[str, ...]) -> bool:
        @cache
        def at(i: int, j: int) -> bool:  # words[i:] against topic[j:]
            if i == len(words):
                return j == len(topic)
            if words[i] == "#":
                return at(i + 1, j) or (j < len(topic) and at(i, j + 1))
            return j < len(topic) and words[i] in ("*", topic[j]) and at(i + 1, j + 1)
        return at(0, 0)

    return match


def _view(row: Subscription) -> dict:
    return {"sandbox_id": row.sandbox_id, "pattern": row.pattern, "created_at": isoformat(row.created_at)}


def subscribe(db: Database, sandbox_id: str, pattern: str, actor: audit.Actor) -> tuple[dict, bool]:
    """Subscribe a registered sandbox to `pattern` (audited); (the subscription, whether it is new). Subscribing
    again is a no-op. UnknownSandbox for an unregistered sandbox; Conflict `too_many_subscriptions` past
    MAX_SUBSCRIPTIONS."""
    with db.write() as session:
        sandbox = session.get(Sandbox, sandbox_id, with_for_update=True)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        existing = session.scalar(select(Subscription).where(Subscription.sandbox_id == sandbox_id,
                                                             Subscription.pattern == pattern))
        if existing is not None:
            return _view(existing), False
        count = len(session.scalars(select(Subscription.id).where(Subscription.sandbox_id == sandbox_id)).all())
        if count >= MAX_SUBSCRIPTIONS:
            raise Conflict(f"sandbox {sandbox_id!r} has {count} subscriptions, the most it may have",
                           code="too_many_subscriptions", details={"limit": MAX_SUBSCRIPTIONS})
        row = Subscription(sandbox_id=sandbox_id, pattern=pattern)
        session.add(row)
        session.flush()
        audit.record(session, actor, "subscription.created", target=f"sandbox:{sandbox_id}", pattern=pattern)
        return _view(row), True


def unsubscribe(db: Database, sandbox_id: str, pattern: str, actor: audit.Actor) -> dict:
    """End a subscription (audited); NotFound `unknown_subscription` when there is none."""
    with db.write() as session:
        row = session.scalar(select(Subscription).where(Subscription.sandbox_id == sandbox_id,
                                                        Subscription.pattern == pattern))
        if row is None:
            raise NotFound(f"sandbox {sandbox_id!r} has no subscription {pattern!r}", code="unknown_subscription",
                           details={"sandbox_id": sandbox_id, "pattern": pattern})
        view = _view(row)
        session.delete(row)
        audit.record(session, actor, "subscription.deleted", target=f"sandbox:{sandbox_id}", pattern=pattern)
        return view


def list_for(db: Database, sandbox_id: str) -> list[dict]:
    """A registered sandbox's subscriptions, oldest first; UnknownSandbox otherwise."""
    with db.read() as session:
        sandbox = session.get(Sandbox, sandbox_id)
        if sandbox is None or not sandbox.is_registered:
            raise UnknownSandbox(sandbox_id)
        rows = session.scalars(select(Subscription).where(Subscription.sandbox_id == sandbox_id)
                               .order_by(Subscription.id))
        return [_view(row) for row in rows]


def subscribers(session, sandbox_ids: list[str], topic: str) -> set[str]:
    """Those of `sandbox_ids` with a subscription matching `topic` (in the caller's transaction)."""
    found = set()
    for start in range(0, len(sandbox_ids), 500):
        rows = session.execute(select(Subscription.sandbox_id, Subscription.pattern)
                               .where(Subscription.sandbox_id.in_(sandbox_ids[start:start + 500])))
        found.update(sandbox for sandbox, pattern in rows if sandbox not in found and matches(pattern, topic))
    return found

