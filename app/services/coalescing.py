"""Coalescing: the work of concurrent callers done in shared batches, each caller still getting its own outcome.

While one batch is being written, the items that arrive queue; the caller of the first of them then writes the
whole queue (up to `max_batch`) as the next batch. Every caller returns only once its own item is done. Group
commit (app.services.group_commit) and the mailbox sockets' ACKs use it: one transaction per batch instead of
one per item is what the database's write lock and each commit cost.

A caller about to write a batch first yields once (`time.sleep(0)`), so that the callers already able to run queue
their items into it. Under gevent (`collab-bus api`) that is what makes batches at all: nothing else runs while a
batch is written (the database calls block the whole process), so without it a caller found nobody queued behind it
and every item took a transaction of its own, e.g. each of 10,000 sockets' ACKs of one broadcast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

DEFAULT_MAX_BATCH = 200


class _Slot(Generic[Item]):
    __slots__ = ("item", "ready", "leads", "done", "outcome")

    def __init__(self, item):
        self.item = item
        self.ready = threading.Event()
        self.leads = False  # set (with `ready`) when this slot's caller is to write the next batch
        self.done = False  # set (with `ready`) once the batch holding this slot is written
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
        outcome = self.submit_many([item])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def submit_many(self, items: list[Item]) -> list[Outcome | BaseException]:
        """The outcomes of `items`, queued together in their order (so they share batches, one after another, with
        nothing in between), once each is written; an exception is returned in its item's place, not raised."""
        slots = [_Slot(item) for item in items]
        if not slots:
            return []
        with self._lock:
            self._queue.extend(slots)
            if not self._writing:
                slots[0].leads = True
                slots[0].ready.set()
                self._writing = True
        for slot in slots:  # this caller writes each batch that one of its items is handed to lead
            slot.ready.wait()
            if slot.leads and not slot.done:
                self._write_next_batch()
        return [slot.outcome for slot in slots]  # type: ignore[misc]

    def queued(self) -> int:
        """How many items wait for the next batch."""
        with self._lock:
            return len(self._queue)

    def _write_next_batch(self) -> None:
        if self.queued() < self.max_batch:
            _let_others_queue()
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
                slot.done = True
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


def _let_others_queue() -> None:
    """Yield once to the callers ready to run (greenlets under gevent, where `time.sleep` is gevent's; threads
    otherwise), so that those about to submit join the batch being gathered."""
    time.sleep(0)
