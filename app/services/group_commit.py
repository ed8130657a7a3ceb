"""Group commit: the messages of concurrent sends stored in shared write transactions.

Sends that arrive while a transaction is being written queue and are written together in the next one
(app.services.coalescing), one savepoint per send, so each is accepted or refused on its own. Every send
returns only once its own message is committed: a 202 still means durable. The group is also announced and
enqueued together (see `SendService`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.errors import BusError, Conflict
from app.services import audit, idempotency
from app.services.coalescing import DEFAULT_MAX_BATCH, Coalescer
from app.services.idempotency import Accepted

DEFAULT_MAX_GROUP = DEFAULT_MAX_BATCH


@dataclass(frozen=True)
class _Send:
    data: dict
    key: str | None
    actor: audit.Actor | None


class _LostRace(Exception):
    """A send whose key or client-chosen id another node inserted meanwhile: it is settled on its own."""


class GroupCommitter:
    """Accepts messages as `idempotency.accept` does, sharing transactions between concurrent callers.

    `on_committed(messages, routed)` runs in the caller that wrote a group, after the commit and before any send of
    the group returns, with the newly stored messages in their order (replays left out) and the results of those
    `route(session, messages)` routed in the same transaction (by message id): so a client that waits for its 202
    before sending again finds its messages enqueued in the order it sent them.
    """

    def __init__(self, db: Database, *, window: int, on_committed: Callable[[list, dict], None],
                 route: Callable[[object, list], dict] | None = None, max_group: int = DEFAULT_MAX_GROUP):
        self.db = db
        self.window = window
        self.on_committed = on_committed
        self.route = route
        self._routed: dict[str, object] = {}  # routing results by message id, from _write to its group's _announce
        self._coalescer = Coalescer(self._write, self._announce, max_batch=max_group, name="group commit")

    def accept(self, data: dict, key: str | None, actor: audit.Actor | None = None) -> Accepted:
        """Store one validated AgentMessage (at most once per sending sandbox and Idempotency-Key `key`); the
        refusals of `idempotency.accept` are raised to this caller only."""
        return self._coalescer.submit(_Send(data, key, actor))

    def accept_many(self, sends: list[tuple[dict, str | None]], actor: audit.Actor | None = None
                    ) -> list[Accepted | BaseException]:
        """`accept` each (AgentMessage, Idempotency-Key) of `sends`, in their order, in the same transactions (their
        order kept); each one's Accepted, or the refusal in its place (not raised)."""
        return self._coalescer.submit_many([_Send(data, key, actor) for data, key in sends])

    def queued(self) -> int:
        """How many sends wait for the next transaction."""
        return self._coalescer.queued()

    def _write(self, group: list[_Send]) -> list[Accepted | BaseException]:
        outcomes = self._write_together(group)
        return [self._accept_alone(send) if isinstance(outcome, _LostRace) else outcome
                for send, outcome in zip(group, outcomes, strict=True)]

    def _write_together(self, group: list[_Send]) -> list[Accepted | BaseException]:
        outcomes: list[Accepted | BaseException] = []
        with self.db.write() as session:  # its failure fails the whole group (the coalescer reports it to each)
            for send in group:
                try:
                    with session.begin_nested():
                        outcomes.append(idempotency.accept_in(session, send.data, send.key, window=self.window,
                                                              actor=send.actor))
                except IntegrityError:
                    outcomes.append(_LostRace())
                except Conflict as exc:
                    lost = exc.code == "duplicate_message_id" and send.key is not None
                    outcomes.append(_LostRace() if lost else exc)
                except BusError as exc:
                    outcomes.append(exc)
            routed = self._route_in(session, outcomes)
        self._routed.update(routed)  # committed: the group's _announce takes them (another group may be writing)
        return outcomes

    def _route_in(self, session, outcomes: list) -> dict:
        fresh = [o.message for o in outcomes if isinstance(o, Accepted) and not o.replayed]
        return self.route(session, fresh) if self.route is not None and fresh else {}

    def _accept_alone(self, send: _Send) -> Accepted | BaseException:
        try:
            return idempotency.accept_checked(self.db, send.data, send.key, window=self.window, actor=send.actor)
        except BaseException as exc:
            return exc

    def _announce(self, outcomes: list) -> None:
        fresh = [o.message for o in outcomes if isinstance(o, Accepted) and not o.replayed]
        routed = {m.id: result for m in fresh if (result := self._routed.pop(m.id, None)) is not None}
        if fresh:
            self.on_committed(fresh, routed)
