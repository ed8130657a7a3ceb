"""Group commit: the messages of concurrent sends stored in shared write transactions.

While one transaction is being written, the sends that arrive queue; the first of them then writes the whole
queue (up to `max_group`) in the next transaction, one savepoint per send, so each is accepted or refused on
its own. Every send returns only once its own message is committed: a 202 still means durable. One
transaction per group instead of one per message is what the database's write lock (SQLite) and the commit's
fsync cost; the group is also announced and enqueued together (see `SendService`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.errors import BusError, Conflict
from app.services import audit, idempotency
from app.services.idempotency import Accepted

log = logging.getLogger(__name__)

DEFAULT_MAX_GROUP = 200


@dataclass
class _Send:
    """One queued send and, once its group is written, its outcome."""

    data: dict
    key: str | None
    actor: audit.Actor | None
    ready: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # set (with `ready`) when this send's caller is to write the next group
    accepted: Accepted | None = None
    error: BaseException | None = None
    lost_race: bool = False

    def outcome(self) -> Accepted:
        if self.error is not None:
            raise self.error
        assert self.accepted is not None
        return self.accepted


class GroupCommitter:
    """Accepts messages as `idempotency.accept` does, sharing transactions between concurrent callers.

    `on_committed(messages)` runs in the caller that wrote a group, after the commit and before any send of the
    group returns, with the newly stored messages in their order (replays left out): so a client that waits for
    its 202 before sending again finds its messages enqueued in the order it sent them.
    """

    def __init__(self, db: Database, *, window: int, on_committed: Callable[[list], None],
                 max_group: int = DEFAULT_MAX_GROUP):
        self.db = db
        self.window = window
        self.on_committed = on_committed
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Send] = []
        self._writing = False

    def accept(self, data: dict, key: str | None, actor: audit.Actor | None = None) -> Accepted:
        """Store one validated AgentMessage (at most once per sending sandbox and Idempotency-Key `key`); the
        refusals of `idempotency.accept` are raised to this caller only."""
        send = _Send(data, key, actor)
        with self._lock:
            self._queue.append(send)
            send.leads = not self._writing
            self._writing = True
        if not send.leads:
            send.ready.wait()
        if send.leads:
            self._write_next_group()
        return send.outcome()

    def _write_next_group(self) -> None:
        with self._lock:
            group = self._queue[:self.max_group]
            del self._queue[:self.max_group]
        try:
            try:
                self._write(group)
                for send in group:
                    if send.lost_race:
                        self._accept_alone(send)
            finally:  # the next group is written while this one is announced
                self._hand_over()
            fresh = [s.accepted.message for s in group if s.accepted is not None and not s.accepted.replayed]
            if fresh:
                self._announce(fresh)
        finally:
            for send in group:
                send.ready.set()

    def _write(self, group: list[_Send]) -> None:
        try:
            with self.db.write() as session:
                for send in group:
                    try:
                        with session.begin_nested():
                            send.accepted = idempotency.accept_in(session, send.data, send.key, window=self.window,
                                                                  actor=send.actor)
                    except IntegrityError:
                        send.lost_race = True
                    except Conflict as exc:
                        if exc.code == "duplicate_message_id" and send.key is not None:
                            send.lost_race = True
                        else:
                            send.error = exc
                    except BusError as exc:
                        send.error = exc
        except BaseException as exc:  # the transaction failed as a whole: nothing of the group is stored
            for send in group:
                send.accepted, send.error, send.lost_race = None, exc, False

    def _accept_alone(self, send: _Send) -> None:
        """A send that lost a race with another node on its key or message id: settled on its own."""
        send.accepted, send.lost_race = None, False
        try:
            send.accepted = idempotency.accept_checked(self.db, send.data, send.key, window=self.window,
                                                       actor=send.actor)
        except BaseException as exc:
            send.error = exc

    def _announce(self, fresh: list) -> None:
        try:
            self.on_committed(fresh)
        except Exception:  # stored already: the outbox sweep enqueues what was not
            log.exception("group commit: %d stored message(s) not announced or enqueued", len(fresh))

    def _hand_over(self) -> None:
        """Let the first queued send's caller write the next group, or mark the committer idle."""
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.ready.set()
            else:
                self._writing = False
