"""Group commit (app.services.group_commit) on real SQLite and PostgreSQL databases: sends that queue while a
transaction is written share the next one, and each is still accepted, replayed or refused on its own."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from app.errors import Conflict, NotFound, UnknownSandbox
from app.models import IdempotencyKey, Message
from app.services import registry
from app.services.group_commit import GroupCommitter

WINDOW = 3600


def message(sender: str, recipient: str | None, n: int, **extra) -> dict:
    return {"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "a", "to_agent": "any",
            "message_type": "notification", "content": {"n": n}, "priority": 5, "requires_response": False,
            "correlation_id": None, "ttl": None, **extra}


@pytest.fixture
def committer(db):
    registry.register(db, "s1", "default", [], {})
    registry.register(db, "r1", "default", [], {})
    groups: list[list[str]] = []
    def on_committed(fresh, _routed):
        groups.append([m.id for m in fresh])

    return GroupCommitter(db, window=WINDOW, on_committed=on_committed), groups


def send_all(committer: GroupCommitter, sends: list[tuple[dict, str | None]], *, hold) -> list:
    """Run every send in a thread of its own while `hold` (a lock) keeps the first transaction waiting, so the
    others queue behind it; return each send's outcome (the Accepted, or the exception) in order."""
    outcomes: list = [None] * len(sends)

    def run(index: int, data: dict, key: str | None) -> None:
        try:
            outcomes[index] = committer.accept(data, key)
        except Exception as exc:
            outcomes[index] = exc

    with hold:
        threads = [threading.Thread(target=run, args=(i, *s)) for i, s in enumerate(sends)]
        threads[0].start()
        deadline = time.monotonic() + 10
        while committer.queued() and time.monotonic() < deadline:  # the first took its one-send group
            time.sleep(0.005)
        for thread in threads[1:]:
            thread.start()
        while committer.queued() < len(sends) - 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert committer.queued() == len(sends) - 1
    for thread in threads:
        thread.join(10)
    return outcomes


def writer_hold(db):
    """A lock that keeps the committer's first transaction from starting: SQLite's writers queue on the
    database's writer lock; on PostgreSQL an exclusive lock on the table the first insert needs."""
    if db.is_sqlite:
        return db._writer_lock

    class TableLock:
        def __enter__(self):
            self.connection = db.engine.connect()
            self.transaction = self.connection.begin()
            self.connection.exec_driver_sql("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")

        def __exit__(self, *exc):
            self.transaction.rollback()
            self.connection.close()

    return TableLock()


def test_sends_that_queue_during_a_write_share_the_next_transaction_and_each_gets_its_own_outcome(db, committer):
    committer, groups = committer
    sends = [(message("s1", "r1", 0), None)]
    sends += [(message("s1", "r1", n), None) for n in range(1, 6)]
    sends += [(message("s1", "nobody", 6), None),                       # unknown recipient
              (message("s1", None, 7, correlation_id="no-such"), None),  # a response to no request
              (message("s1", "r1", 8, message_id="chosen-1"), None),
              (message("s1", "r1", 9, message_id="chosen-1"), None)]    # the same id again in the group
    outcomes = send_all(committer, sends, hold=writer_hold(db))

    assert isinstance(outcomes[6], UnknownSandbox)
    assert isinstance(outcomes[7], NotFound) and outcomes[7].code == "unknown_correlation_id"
    assert outcomes[8].message.id == "chosen-1"
    assert isinstance(outcomes[9], Conflict) and outcomes[9].code == "duplicate_message_id"
    accepted = [o.message.id for o in outcomes if not isinstance(o, Exception)]
    assert len(accepted) == 7
    assert groups == [[accepted[0]], accepted[1:]]  # the first alone, then everything that queued behind it
    with db.read() as session:
        stored = set(session.scalars(select(Message.id)))
    assert stored == set(accepted)


def test_a_group_replays_a_key_sent_before_and_stores_a_key_sent_twice_in_it_once(db, committer):
    committer, groups = committer
    first = committer.accept(message("s1", "r1", 0), "key-a")
    sends = [(message("s1", "r1", 1), None),
             (message("s1", "r1", 0), "key-a"),   # the same request again: the original, replayed
             (message("s1", "r1", 99), "key-a"),  # another request under that key: refused
             (message("s1", "r1", 2), "key-b"),
             (message("s1", "r1", 2), "key-b")]   # twice in one group: stored once
    outcomes = send_all(committer, sends, hold=writer_hold(db))

    assert outcomes[1].replayed and outcomes[1].message.id == first.message.id
    assert isinstance(outcomes[2], Conflict) and outcomes[2].code == "idempotency_key_reused"
    assert not outcomes[3].replayed and outcomes[4].replayed
    assert outcomes[4].message.id == outcomes[3].message.id
    assert groups[-1] == [outcomes[3].message.id]  # replays are not announced again
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 3
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 2


def test_a_failed_transaction_refuses_every_send_of_its_group_and_the_next_group_still_goes(db, committer):
    committer, groups = committer
    broken = message("s1", "r1", 1)
    broken["content"] = {"not json": object()}  # fails when the transaction is flushed
    outcomes = send_all(committer, [(message("s1", "r1", 0), None), (broken, None), (message("s1", "r1", 2), None)],
                        hold=writer_hold(db))
    assert not isinstance(outcomes[0], Exception)
    assert isinstance(outcomes[1], Exception) and isinstance(outcomes[2], Exception)
    assert committer.accept(message("s1", "r1", 3), None).message.id
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2


def test_a_coalescer_hands_each_caller_its_own_outcome_and_raises_only_its_own_error():
    from app.services.coalescing import Coalescer

    release = threading.Event()
    batches: list[list[int]] = []

    def write(items: list[int]) -> list:
        if not batches:
            release.wait(10)  # the first batch holds the writer while the others queue
        batches.append(items)
        return [ValueError(item) if item % 3 == 0 else item * 10 for item in items]

    coalescer = Coalescer(write)
    results: dict[int, object] = {}

    def call(item: int) -> None:
        try:
            results[item] = coalescer.submit(item)
        except ValueError as exc:
            results[item] = exc

    threads = [threading.Thread(target=call, args=(1,))]
    threads[0].start()
    while not batches and coalescer.queued():
        time.sleep(0.005)
    time.sleep(0.05)
    threads += [threading.Thread(target=call, args=(n,)) for n in range(2, 8)]
    for thread in threads[1:]:
        thread.start()
    while coalescer.queued() < 6:
        time.sleep(0.005)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(batches) == 2 and batches[0] == [1] and sorted(batches[1]) == [2, 3, 4, 5, 6, 7]
    assert {n: (str(r) if isinstance(r, ValueError) else r) for n, r in results.items()} == {
        1: 10, 2: 20, 3: "3", 4: 40, 5: 50, 6: "6", 7: 70}


def test_items_submitted_together_stay_together_in_order_across_batches_and_callers():
    """`submit_many`: a caller's items are queued at once, so another caller's items never land between them; when
    they span several batches (max_batch 4), the caller writes each batch one of its items is handed to lead."""
    from app.services.coalescing import Coalescer

    release = threading.Event()
    batches: list[list] = []

    def write(items: list) -> list:
        if not batches:
            release.wait(10)
        batches.append(items)
        return [ValueError(item) if item == "b3" else item.upper() for item in items]

    coalescer = Coalescer(write, max_batch=4)
    results: dict[str, list] = {}
    first = threading.Thread(target=lambda: results.update(a=coalescer.submit_many(["a0"])))
    first.start()
    while not coalescer._writing or coalescer.queued():
        time.sleep(0.005)
    many = [threading.Thread(target=lambda name=name: results.update(
        {name: coalescer.submit_many([f"{name}{i}" for i in range(6)])})) for name in ("b", "c")]
    for thread in many:
        thread.start()
    while coalescer.queued() < 12:
        time.sleep(0.005)
    release.set()
    for thread in [first, *many]:
        thread.join(10)
    assert [len(batch) for batch in batches] == [1, 4, 4, 4]
    flat = [item for batch in batches[1:] for item in batch]
    assert sorted([flat[:6], flat[6:]]) == [[f"b{i}" for i in range(6)], [f"c{i}" for i in range(6)]]
    assert results["a"] == ["A0"] and results["c"] == [f"C{i}" for i in range(6)]
    assert [str(r) if isinstance(r, ValueError) else r for r in results["b"]] == ["B0", "B1", "B2", "b3", "B4", "B5"]
    assert coalescer.submit_many([]) == []
