"""Coalescing: the work of concurrent callers done in shared batches, each caller still getting its own outcome.

While one batch is being written, the items that arrive queue; the caller of the first of them then writes the
whole queue (up to `max_batch`) as the next batch. Every caller returns only once its own item is done. Group
commit (app.services.group_commit) and the mailbox sockets' ACKs use it: one transaction per batch instead of
one per item is what the database's write lock and each commit cost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

DEFAULT_MAX_BATCH = 200


class _Slot(Generic[Item]):
    __slots__ = ("item", "ready", "leads", "outcome")

    def __init__(self, item):
        self.item = item
        self.ready = threading.Event()
        self.leads = False  # set (with `ready`) when this slot's caller is to write the next batch
        self.outcome: object = None


class Coalescer(Generic[Item, Outcome]):
    """Runs `write(items)` for the items of concurrent `submit` calls, one batch at a time.

    `write` returns one outcome per item, in order: a value, or an exception to raise to that item's caller; if
    `write` itself raises, every item of the batch gets that exception. `after(outcomes)`, when given, runs once
    the next batch may start and before any caller of this batch returns (for what must precede the answers,
    such as announcing what was committed); its errors are logged, not raised.
    """

    def __init__(self, write: Callable[[list[Item]], Sequence[Outcome | BaseException]],
                 after: Callable[[list[Outcome | BaseException]], None] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, name: str = "batch"):
        self.write = write
        self.after = after
        self.max_batch = max_batch
        self.name = name
        self._lock = threading.Lock()
        self._queue: list[_Slot] = []
        self._writing = False

    def submit(self, item: Item) -> Outcome:
        """`item`'s outcome, once the batch it joined is written; raises the exception that is its outcome."""
        slot = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            slot.leads = not self._writing
            self._writing = True
        if not slot.leads:
            slot.ready.wait()
        if slot.leads:
            self._write_next_batch()
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome  # type: ignore[return-value]

    def queued(self) -> int:
        """How many items wait for the next batch."""
        with self._lock:
            return len(self._queue)

    def _write_next_batch(self) -> None:
        with self._lock:
            batch = self._queue[:self.max_batch]
            del self._queue[:self.max_batch]
        try:
            try:
                outcomes = list(self.write([slot.item for slot in batch]))
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for {len(batch)} items")
            except BaseException as exc:
                outcomes = [exc] * len(batch)
            finally:  # the next batch is written while this one finishes
                self._hand_over()
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome = outcome
            if self.after is not None:
                try:
                    self.after(outcomes)
                except Exception:
                    log.exception("%s: the step after a batch of %d failed", self.name, len(batch))
        finally:
            for slot in batch:
                slot.ready.set()

    def _hand_over(self) -> None:
        """Let the first queued item's caller write the next batch, or mark the coalescer idle."""
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.ready.set()
            else:
                self._writing = False
