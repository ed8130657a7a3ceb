"""Trace propagation (private): what a handler sends follows from the message it handles.

The bus stamps ``metadata.trace = {"trace_id", "parent_id", "hops"}`` on every message, from the parent a sender
names in ``metadata.trace.parent_id``. While a handler runs (and in everything it awaits or starts as a task) the
handled message's id is the parent of every send, unless the caller put its own ``metadata["trace"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_handled: ContextVar[str | None] = ContextVar("aintandem_handled_message_id", default=None)


@contextmanager
def handling(message_id: str) -> Iterator[None]:
    """Within this block, sends follow from message `message_id`."""
    token = _handled.set(message_id)
    try:
        yield
    finally:
        _handled.reset(token)


def with_parent(metadata: dict[str, Any] | None, parent_id: str | None = None) -> dict[str, Any]:
    """A copy of `metadata` naming `parent_id` (default: the message being handled, if any) as the trace parent,
    unless it names a trace of its own."""
    metadata = dict(metadata or {})
    parent_id = parent_id or _handled.get()
    if parent_id and "trace" not in metadata:
        metadata["trace"] = {"parent_id": parent_id}
    return metadata
