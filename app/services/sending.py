"""The one way a message enters the bus: checked, stored durably, announced and queued for delivery.

REST sends and broadcasts, the batch endpoint and the mailbox socket's `send` frame all call `SendService`.
Once `send` returns, or `send_batch` reports an item accepted, the message is durable: a failed enqueue is
logged and left to the outbox sweep, never reported to the client as a failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.errors import BusError, Conflict, Forbidden, InvalidRequest, TooManyRequests
from app.models import ANY_CAPABLE, BROADCAST, Message, Role
from app.services import audit, dead_letters, messages, policies, skills
from app.services.admission import Admission
from app.services.delivery import DeliveryResult
from app.services.direct_delivery import DirectRouter
from app.services.directory import Directory
from app.services.enqueue_retry import EnqueueRetry
from app.services.events import MESSAGE_ACCEPTED, MESSAGE_REFUSED, batched, event_notification
from app.services.group_commit import GroupCommitter
from app.services.guards import GuardLimits, SendGuards
from app.services.idempotency import Accepted
from app.services.ports import DeliveryQueue, Notifier

NO_GUARDS = GuardLimits(0, 0, 0)

log = logging.getLogger(__name__)

PRIVILEGED_ROLES = (Role.ADMIN, Role.OPERATOR)  # API keys that speak for the operators: policy defaults allow them


@dataclass(frozen=True)
class Sender:
    """Who sends: the sandbox its token belongs to (None for an API key), whether it speaks for the operators
    (policy defaults allow it), and the actor audit rows name."""

    sandbox_id: str | None
    privileged: bool
    actor: audit.Actor

    @classmethod
    def of(cls, principal, actor: audit.Actor) -> Sender:
        """The sender an authenticated principal (app.services.auth.Principal) and its actor stand for."""
        return cls(principal.sandbox_id if principal.is_sandbox else None, principal.role in PRIVILEGED_ROLES,
                   actor)


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one item of a batch: the accepted message, or the error that refused it."""

    index: int
    message: Message | None = None
    error: BusError | None = None

    @property
    def accepted(self) -> bool:
        """True when the item's message is stored."""
        return self.message is not None


class SendService:
    """Accepts messages for one process, with its database, delivery queue and notifier.

    Every refusal raises (or, in a batch, reports) a BusError: 403 `sandbox_mismatch` or `policy_denied`
    (audited as `message.refused`), 404 for an unknown recipient or correlation id, 409 for a taken message id
    or a reused idempotency key, 413 for oversized content, 422 for content a skill's input schema refuses, the
    runaway guards' 409 / 429, and 503 `overloaded` (Retry-After) for every send
    while the delivery backlog is at `max_backlog` (app.services.admission).
    """

    def __init__(self, db: Database, directory: Directory, delivery: DeliveryQueue, notifier: Notifier, *,
                 max_content_bytes: int, idempotency_window: int, max_backlog: int = 0,
                 guards: GuardLimits = NO_GUARDS, direct: DirectRouter | None = None):
        self.db = db
        self.directory = directory
        self.admission = Admission(db, max_backlog)
        self.delivery = delivery
        self.retry = EnqueueRetry(delivery)
        self.notifier = notifier
        self.max_content_bytes = max_content_bytes
        self.idempotency_window = idempotency_window
        self.guards = SendGuards(db, guards)
        self.direct = direct
        self.committer = GroupCommitter(db, window=idempotency_window, on_committed=self._dispatch_group,
                                        route=direct.route if direct is not None else None)

    def send(self, data: dict, sender: Sender, key: str | None = None) -> Accepted:
        """Accept one validated AgentMessage (at most once per sending sandbox and Idempotency-Key `key`).

        A replayed send (`Accepted.replayed`) stores, announces and enqueues nothing: the original did. Concurrent
        sends share transactions and delivery tasks (app.services.group_commit); each returns once its own
        message is committed and enqueued.
        """
        messages.check_content_size(data, self.max_content_bytes)  # 413 before any lookup
        self._check_sender(data, sender)
        self._check_guards(data, sender)
        self.admission.check()
        return self.committer.accept(data, key, sender.actor)

    def send_run(self, sends: list[tuple[dict, str | None]], sender: Sender) -> list[Accepted | BusError]:
        """`send` each (validated AgentMessage, Idempotency-Key) of `sends`, received together (a socket's run of
        `send` frames), in their order: checked one by one, then accepted in shared transactions with nothing
        between them. One outcome per send, in order: its Accepted, or the BusError that refused it."""
        outcomes: list[Accepted | BusError | None] = [None] * len(sends)
        checked = []
        for index, (data, key) in enumerate(sends):
            try:
                messages.check_content_size(data, self.max_content_bytes)
                self._check_sender(data, sender)
                self._check_guards(data, sender)
                checked.append((index, data, key))
            except BusError as exc:
                outcomes[index] = exc
        try:
            self.admission.check(len(checked))
        except BusError as exc:
            return [exc if outcome is None else outcome for outcome in outcomes]
        accepted = self.committer.accept_many([(data, key) for _, data, key in checked], sender.actor)
        for (index, _, _), outcome in zip(checked, accepted, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, BusError):
                raise outcome
            outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    def send_batch(self, items: list[dict], sender: Sender) -> list[ItemResult]:
        """Accept each validated AgentMessage of `items` on its own; one result per item, in order.

        The accepted items are stored in one transaction (each in a savepoint of its own, so a refused item
        takes nothing else with it), then announced and enqueued in their order.
        """
        results: list[ItemResult | None] = [None] * len(items)
        checked = []
        for index, data in enumerate(items):
            try:
                messages.check_content_size(data, self.max_content_bytes)
                self._check_sender(data, sender)
                self._check_guards(data, sender)
                checked.append((index, data))
            except BusError as exc:
                results[index] = ItemResult(index, error=exc)
        self.admission.check(len(checked))
        stored, routed = self._store_all(checked, sender.actor)
        for index, outcome in stored:
            results[index] = outcome
        self._dispatch_group([r.message for r in results if r.accepted], routed, one_task=True)
        return results

    def replay_dead_letter(self, dead_letter_id: int, policy, actor: audit.Actor) -> dead_letters.ReplayOutcome:
        """Send one dead letter back into delivery as a new attempt series (see dead_letters.replay), audited as
        `dead_letter.replayed`, then queue its message (when it needs routing again) and announce it."""
        outcome = dead_letters.replay(self.db, dead_letter_id, policy)
        audit.record_now(self.db, actor, "dead_letter.replayed", target=f"dead_letter:{dead_letter_id}",
                         message_id=outcome.message_id)
        if outcome.enqueue:
            self._enqueue(*outcome.enqueue, None)
        for notification in outcome.notifications:
            self.notifier.publish(notification)
        return outcome

    def _store_all(self, checked: list[tuple[int, dict]], actor: audit.Actor
                   ) -> tuple[list[tuple[int, ItemResult]], dict[str, DeliveryResult]]:
        if not checked:
            return [], {}
        with self.db.write() as session:
            stored = [(index, self._store_one(session, index, data, actor)) for index, data in checked]
            fresh = [outcome.message for _, outcome in stored if outcome.accepted]
            routed = self.direct.route(session, fresh) if self.direct is not None and fresh else {}
        return stored, routed

    @staticmethod
    def _store_one(session, index: int, data: dict, actor: audit.Actor) -> ItemResult:
        message = messages.new_message(data)
        try:
            with session.begin_nested():
                messages.store(session, message, client_chose_id=bool(data.get("message_id")), actor=actor)
        except IntegrityError:  # a client-chosen id stored since our check (PostgreSQL) or twice in this batch
            return ItemResult(index, error=messages.duplicate_message_id(message.id))
        except BusError as exc:
            return ItemResult(index, error=exc)
        return ItemResult(index, message=message)

    def _check_sender(self, data: dict, sender: Sender) -> None:
        """A sandbox sends only as itself (403 sandbox_mismatch, never rewritten); a direct message obeys the
        policies (403 policy_denied). Refusals are audited as `message.refused`."""
        try:
            if sender.sandbox_id is not None and data["from_sandbox"] != sender.sandbox_id:
                raise Forbidden(f"the token of sandbox {sender.sandbox_id!r} may not send as "
                                f"{data['from_sandbox']!r}", code="sandbox_mismatch",
                                details={"token_sandbox": sender.sandbox_id, "from_sandbox": data["from_sandbox"]})
            recipient = data.get("to_sandbox")
            if recipient == ANY_CAPABLE:  # the policies are applied to each capable agent when one is chosen
                self._check_capability_request(data)
            elif recipient:  # responses addressed by correlation_id go back to their requester unchecked
                policies.check_send(self.directory, from_sandbox=data["from_sandbox"], to_sandbox=recipient,
                                    message_type=data["message_type"], privileged=sender.privileged)
        except Forbidden as exc:
            audit.record_now(self.db, sender.actor, "message.refused", audit.REFUSED,
                             target=f"sandbox:{data.get('to_sandbox') or BROADCAST}", code=exc.code,
                             reason=exc.message, from_sandbox=data["from_sandbox"], message_type=data["message_type"])
            raise

    def _check_capability_request(self, data: dict) -> None:
        """A message to "any" names its skill in metadata.skill (400) and is not a response; its content satisfies
        the skill's input schemas (422 `content_invalid`)."""
        skill = skills.skill_of(data.get("metadata"))
        if data["message_type"] == "response":
            raise InvalidRequest('a response goes back to its requester: it cannot be addressed to "any"',
                                 details={"to_sandbox": ['"any" is for requests, commands and notifications']})
        facts = self.directory.sandbox(data["from_sandbox"])
        workspace = facts.workspace if facts is not None and facts.registered else None
        skills.check_content(self.db, workspace, skill, data["content"])

    def _check_guards(self, data: dict, sender: Sender) -> None:
        """The runaway guards (app.services.guards): a refusal (409 `hop_limit` or `trace_budget`, 429
        `pair_rate`) is audited as `message.refused` and announced as a `message.refused` event."""
        try:
            self.guards.check(data)
        except (Conflict, TooManyRequests) as exc:
            details = exc.details or {}
            audit.record_now(self.db, sender.actor, "message.refused", audit.REFUSED,
                             target=f"sandbox:{data.get('to_sandbox') or BROADCAST}", code=exc.code,
                             reason=exc.message, from_sandbox=data["from_sandbox"], trace_id=details.get("trace_id"))
            self.notifier.publish(event_notification(
                MESSAGE_REFUSED, from_sandbox=data["from_sandbox"], to_sandbox=data.get("to_sandbox"),
                message_type=data["message_type"], guard=exc.code, trace_id=details.get("trace_id"),
                hops=details.get("hops"), limit=details.get("limit")))
            raise

    def _dispatch_group(self, accepted: list[Message], routed: dict[str, DeliveryResult], *,
                        one_task: bool = False) -> None:
        """Announce messages committed together (with the entries of those routed directly,
        app.services.direct_delivery), then enqueue the others, delivered in their order: a batch's in one task
        (`one_task`; its ttl checks are the deliverer's, per message), separate sends' in one task per priority (a
        message is not delivered at another's priority). From this process, "accepted" precedes "delivered"."""
        self._announce(accepted, [n for result in routed.values() for n in result.notifications()])
        waiting = [message for message in accepted if message.id not in routed]
        if not waiting:
            return
        if one_task:
            groups = {max(m.priority for m in waiting): waiting}
        else:
            groups = {}
            for message in waiting:
                groups.setdefault(message.priority, []).append(message)
        for priority, group in sorted(groups.items(), reverse=True):
            if len(group) == 1:
                self._enqueue_one(group[0])
            else:
                self._enqueue([m.id for m in group], priority, None)

    def _announce(self, accepted: list[Message], entries: list[dict] = ()) -> None:
        events = [event_notification(MESSAGE_ACCEPTED, message_id=m.id, from_sandbox=m.from_sandbox,
                                     to_sandbox=m.to_sandbox, message_type=m.message_type,
                                     correlation_id=m.correlation_id, trace_id=m.trace_id, parent_id=m.parent_id,
                                     **({"topic": m.topic} if m.topic else {})) for m in accepted]
        for notification in batched([*events, *entries]):
            self.notifier.publish(notification)

    def _enqueue_one(self, message: Message) -> None:
        self._enqueue(message.id, message.priority, message.timestamp + message.ttl if message.ttl else None)

    def _enqueue(self, message_ids: str | list[str], priority: int, expires_at: float | None) -> None:
        try:
            if isinstance(message_ids, list):
                self.delivery.enqueue_many(message_ids, priority)
            else:
                self.delivery.enqueue(message_ids, priority, expires_at)
        except Exception as exc:  # durable already: enqueued again once the broker is back (else by the sweep)
            log.warning("message(s) %s accepted but not enqueued (%s); enqueued again as soon as the broker is back",
                        message_ids, exc)
            self.retry.add(message_ids if isinstance(message_ids, list) else [message_ids], priority, expires_at)
