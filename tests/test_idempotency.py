"""Idempotent sends (`Idempotency-Key`): plain calls into app.services.idempotency on a real SQLite database, the
API's bookkeeping on a Flask test client, and REST behaviour against the real bus (embedded, Redis, RabbitMQ)."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from app.composition import create_app
from app.config import Settings
from app.db import Database
from app.errors import Conflict, NotFound, PayloadTooLarge, UnknownSandbox
from app.migrate import upgrade
from app.models import IdempotencyKey, Message, MessageStatus, utcnow
from app.services import delivery, idempotency, registry
from tests.servers import authenticate_test_app, bus_client, wait_for

LIMIT = 256 * 1024
WINDOW = 3600
THREADS = 8
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def make(sender="a", to="b", content=None, **extra) -> dict:
    """Validated AgentMessage data, as the schema hands it to the services."""
    return {"message_id": None, "from_sandbox": sender, "to_sandbox": to, "from_agent": "agent", "to_agent": "any",
            "message_type": "notification", "content": content or {"x": 1}, "timestamp": None, "priority": 5,
            "requires_response": False, "correlation_id": None, "ttl": None, "metadata": {}, **extra}


def send(db, data: dict, key: str | None = "key-1", window: int = WINDOW) -> idempotency.Accepted:
    return idempotency.accept(db, data, key, max_content_bytes=LIMIT, window=window)


def count(db, model) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def records(db) -> list[tuple[str, str, str]]:
    with db.read() as session:
        return [(r.sandbox_id, r.key, r.message_id)
                for r in session.scalars(select(IdempotencyKey).order_by(IdempotencyKey.sandbox_id))]


def age(db, key: str, seconds: float) -> None:
    """Move the record of `key` `seconds` into the past."""
    with db.write() as session:
        session.execute(update(IdempotencyKey).where(IdempotencyKey.key == key)
                        .values(created_at=utcnow() - timedelta(seconds=seconds)))


@pytest.fixture
def sandboxes(db):
    for sandbox_id in ("a", "b", "c"):
        registry.register(db, sandbox_id, "default", [], {})
    return db


# --------------------------------------------------------------------------------------------- services


def test_fingerprint_ignores_the_timestamp_and_key_order_but_not_the_request():
    base = make(content={"x": 1, "y": [1, 2]})
    reordered = dict(reversed(list(make(content={"y": [1, 2], "x": 1}, timestamp=12.5).items())))
    assert idempotency.fingerprint(base) == idempotency.fingerprint(reordered)
    for changed in (make(content={"x": 2, "y": [1, 2]}), make(content={"x": 1, "y": [2, 1]}), make(priority=6),
                    make(to="c"), make(sender="c"), make(metadata={"m": 1}), make(message_id="m-1")):
        assert idempotency.fingerprint(changed) != idempotency.fingerprint(base)


def test_first_send_stores_the_message_and_its_key_together(sandboxes):
    db = sandboxes
    first = send(db, make())
    assert first.replayed is False
    assert records(db) == [("a", "key-1", first.message.id)]
    with db.read() as session:
        record = session.get(IdempotencyKey, ("a", "key-1"))
        assert record.fingerprint == idempotency.fingerprint(make())
        assert session.get(Message, first.message.id) is not None


def test_same_key_and_request_replays_the_original_and_stores_nothing(sandboxes):
    db = sandboxes
    first = send(db, make())
    again = send(db, make(timestamp=1.0))  # a client timestamp is overwritten anyway: same request
    assert again.replayed is True
    assert (again.message.id, again.message.timestamp) == (first.message.id, first.message.timestamp)
    assert count(db, Message) == 1 and count(db, IdempotencyKey) == 1


def test_replay_reports_the_current_status(sandboxes):
    db = sandboxes
    first = send(db, make())
    delivery.deliver(db, first.message.id)
    again = send(db, make())
    assert again.replayed and again.message.status == MessageStatus.DELIVERED
    assert again.message.timestamp == first.message.timestamp


def test_keys_are_scoped_per_sending_sandbox(sandboxes):
    db = sandboxes
    from_a = send(db, make(sender="a"))
    from_c = send(db, make(sender="c"))
    assert not from_a.replayed and not from_c.replayed
    assert from_a.message.id != from_c.message.id
    assert count(db, Message) == 2
    assert records(db) == [("a", "key-1", from_a.message.id), ("c", "key-1", from_c.message.id)]


def test_same_key_with_another_request_is_a_conflict_and_stores_nothing(sandboxes):
    db = sandboxes
    first = send(db, make(content={"n": 1}))
    for other in (make(content={"n": 2}), make(to="c", content={"n": 1}), make(content={"n": 1}, priority=9)):
        with pytest.raises(Conflict) as err:
            send(db, other)
        assert err.value.code == "idempotency_key_reused"
        assert err.value.status == 409
        assert err.value.details == {"idempotency_key": "key-1", "message_id": first.message.id}
    assert count(db, Message) == 1


@pytest.mark.parametrize("refused, error", [
    pytest.param(make(to="ghost"), UnknownSandbox, id="unknown-recipient"),
    pytest.param(make(content={"blob": "x" * LIMIT}), PayloadTooLarge, id="content-too-large"),
    pytest.param(make(to=None, message_type="response", correlation_id="no-such-request"), NotFound,
                 id="unknown-correlation-id"),
])
def test_a_send_refused_on_its_first_try_does_not_record_the_key(sandboxes, refused, error):
    db = sandboxes
    with pytest.raises(error):
        send(db, refused)
    assert count(db, IdempotencyKey) == 0 and count(db, Message) == 0
    accepted = send(db, make(content={"fixed": True}))  # the retry, corrected, is a first send
    assert accepted.replayed is False
    assert records(db) == [("a", "key-1", accepted.message.id)]


def test_a_send_refused_for_a_taken_message_id_does_not_record_the_key(sandboxes):
    db = sandboxes
    taken = send(db, make(message_id="chosen"), key=None).message
    with pytest.raises(Conflict) as err:
        send(db, make(message_id="chosen", content={"other": 1}))
    assert err.value.code == "duplicate_message_id"
    assert count(db, IdempotencyKey) == 0
    first = send(db, make(message_id="chosen-2"))
    again = send(db, make(message_id="chosen-2"))
    assert (first.replayed, again.replayed) == (False, True)
    assert again.message.id == "chosen-2" != taken.id


def test_without_a_key_every_send_is_a_new_message(sandboxes):
    db = sandboxes
    ids = {send(db, make(), key=None).message.id for _ in range(3)}
    assert len(ids) == 3 and count(db, IdempotencyKey) == 0


def test_after_the_window_the_key_is_reused_and_its_record_replaced(sandboxes):
    db = sandboxes
    first = send(db, make(content={"n": 1}), window=60)
    age(db, "key-1", 59)
    assert send(db, make(content={"n": 1}), window=60).replayed  # still inside the window
    age(db, "key-1", 61)
    fresh = send(db, make(content={"n": 2}), window=60)  # another request is fine once the key expired
    assert fresh.replayed is False and fresh.message.id != first.message.id
    assert records(db) == [("a", "key-1", fresh.message.id)]
    with db.read() as session:
        stored = session.get(IdempotencyKey, ("a", "key-1")).fingerprint
        assert stored == idempotency.fingerprint(make(content={"n": 2}))
    again = send(db, make(content={"n": 2}), window=60)
    assert again.replayed and again.message.id == fresh.message.id
    assert count(db, Message) == 2


def test_purge_deletes_only_expired_records(sandboxes):
    db = sandboxes
    old = send(db, make(content={"n": 1}), key="old", window=60)
    young = send(db, make(content={"n": 2}), key="young", window=60)
    age(db, "old", 61)
    age(db, "young", 30)
    assert idempotency.purge_expired(db, 60) == 1
    assert records(db) == [("a", "young", young.message.id)]
    assert idempotency.purge_expired(db, 60) == 0
    assert send(db, make(content={"n": 2}), key="young", window=60).replayed
    assert count(db, Message) == 2  # purging a key never removes its message
    with db.read() as session:
        assert session.get(Message, old.message.id) is not None
    assert idempotency.purge_expired(db, 60, now=utcnow() + timedelta(seconds=31)) == 1
    assert count(db, IdempotencyKey) == 0


def test_concurrent_sends_with_one_key_store_one_message(sandboxes):
    db = sandboxes
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def go():
        barrier.wait()
        try:
            results.append(send(db, make()))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.message.id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * (THREADS - 1)
    assert count(db, Message) == 1


def test_a_send_that_loses_the_insert_race_replays_the_winner(sandboxes, monkeypatch):
    """What PostgreSQL can do: another transaction commits the key between our read and our insert. Simulated by
    hiding the record from the locked read; the insert then hits the primary key and the send must replay."""
    db = sandboxes
    winner = send(db, make(content={"n": 1}))
    real_record = idempotency._record
    monkeypatch.setattr(idempotency, "_record",
                        lambda session, sandbox_id, key, *, lock=False:
                        None if lock else real_record(session, sandbox_id, key, lock=lock))
    loser = send(db, make(content={"n": 1}))
    assert loser.replayed and loser.message.id == winner.message.id
    with pytest.raises(Conflict) as err:
        send(db, make(content={"n": 2}))
    assert err.value.code == "idempotency_key_reused"
    chosen = send(db, make(content={"n": 3}, message_id="chosen"), key="k2")  # its record is hidden too
    assert not chosen.replayed
    assert send(db, make(content={"n": 3}, message_id="chosen"), key="k2").message.id == "chosen"
    assert count(db, Message) == 2 and count(db, IdempotencyKey) == 2


def test_idempotency_window_setting():
    assert Settings.from_env({}).idempotency_window == 86400
    assert Settings.from_env({"IDEMPOTENCY_WINDOW": "60"}).idempotency_window == 60


def test_expired_keys_are_purged_by_a_maintenance_beat_task():
    from app.broker import make_celery

    celery = make_celery(Settings.from_env({}))
    entries = [e for e in celery.conf.beat_schedule.values()
               if e["task"] == "workers.maintenance.purge_idempotency_keys"]
    assert len(entries) == 1 and 0 < entries[0]["schedule"] <= 15 * 60
    route = celery.amqp.router.route({}, "workers.maintenance.purge_idempotency_keys", (), {})
    assert route["queue"].name == "maintenance"


# --------------------------------------------------------------------------------------------- API bookkeeping


class Recorder:
    """Stands in for the delivery queue and the notifier: remembers every call."""

    def __init__(self):
        self.calls: list = []

    def enqueue(self, message_id: str, priority: int, expires_at: float | None = None) -> None:
        self.calls.append(("enqueue", message_id))

    def publish(self, notification: dict) -> None:
        event = notification["event"]
        self.calls.append(("publish", event["event"], event["data"].get("message_id")))


@pytest.fixture
def app(tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "MESSAGE_BACKEND": "memory"})
    upgrade(settings)
    recorder = Recorder()
    app = create_app(settings, start_listener=False, delivery=recorder, notifier=recorder)
    authenticate_test_app(app)
    app.testing = False
    ctx = app.extensions["bus"]
    http = app.test_client()
    for sandbox_id in ("a", "b"):
        assert http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id}).status_code == 201
    ctx.delivery.calls.clear()
    yield app
    ctx.db.dispose()


@pytest.mark.parametrize("path, body", [
    ("/api/v1/messages", {"from_sandbox": "a", "to_sandbox": "b", "from_agent": "p", "message_type": "request",
                          "content": {"q": 1}}),
    ("/api/v1/broadcast", {"from_sandbox": "a", "from_agent": "p", "content": {"q": 1}}),
])
def test_a_replay_is_neither_enqueued_nor_announced(app, path, body):
    http, calls = app.test_client(), app.extensions["bus"].delivery.calls
    first = http.post(path, json=body, headers={KEY_HEADER: "k"})
    assert first.status_code == 202 and REPLAYED_HEADER not in first.headers
    message_id = first.get_json()["message_id"]
    assert calls == [("publish", "message.accepted", message_id), ("enqueue", message_id)]
    again = http.post(path, json=body, headers={KEY_HEADER: "k"})
    assert again.status_code == 202 and again.headers[REPLAYED_HEADER] == "true"
    assert again.get_json() == first.get_json()
    conflict = http.post(path, json={**body, "content": {"q": 2}}, headers={KEY_HEADER: "k"})
    assert conflict.status_code == 409 and conflict.get_json()["error"]["code"] == "idempotency_key_reused"
    assert calls == [("publish", "message.accepted", message_id), ("enqueue", message_id)]


# --------------------------------------------------------------------------------------------- the real bus


def register(client, *sandbox_ids: str) -> None:
    for sandbox_id in sandbox_ids:
        response = client.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id})
        assert response.status_code in (200, 201), response.text


def direct(sender: str, recipient: str, **extra) -> dict:
    return {"from_sandbox": sender, "to_sandbox": recipient, "from_agent": "planner", "message_type": "request",
            "content": {"task": "review"}, **extra}


def delivered(client, message_id: str) -> dict:
    return wait_for(lambda: (r := client.get(f"/api/v1/messages/{message_id}").json())["status"] == "delivered" and r,
                    20, f"delivery of {message_id}")


def mailbox(client, sandbox_id: str) -> list[dict]:
    response = client.get(f"/api/v1/sandboxes/{sandbox_id}/messages?since=0&limit=1000")
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def mailbox_ids(client, sandbox_id: str) -> list[str]:
    return [entry["message"]["message_id"] for entry in mailbox(client, sandbox_id)]


def test_same_key_twice_is_one_message(client, unique):
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    key = unique("retry")
    first = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert first.status_code == 202, first.text
    assert REPLAYED_HEADER not in first.headers
    again = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert again.status_code == 202, again.text
    assert again.headers[REPLAYED_HEADER] == "true"
    message_id = first.json()["message_id"]
    assert again.json()["message_id"] == message_id
    assert again.json()["timestamp"] == first.json()["timestamp"]
    report = delivered(client, message_id)
    assert [d["sandbox_id"] for d in report["deliveries"]] == [recipient]
    assert mailbox_ids(client, recipient) == [message_id]
    late = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert late.json() == {"message_id": message_id, "status": "delivered", "timestamp": first.json()["timestamp"]}
    assert late.headers[REPLAYED_HEADER] == "true"
    assert mailbox_ids(client, recipient) == [message_id]


def test_same_key_on_broadcast_is_one_message(client, unique):
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    key = unique("retry")
    body = {"from_sandbox": sender, "from_agent": "planner", "content": {"status": "started"}}
    answers = [client.post("/api/v1/broadcast", json=body, headers={KEY_HEADER: key}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202] * 3
    assert [a.headers.get(REPLAYED_HEADER) for a in answers] == [None, "true", "true"]
    assert len({a.json()["message_id"] for a in answers}) == 1
    message_id = answers[0].json()["message_id"]
    delivered(client, message_id)
    assert mailbox_ids(client, recipient).count(message_id) == 1


def test_same_key_from_two_sandboxes_is_two_messages(client, unique):
    a, c, recipient = unique("a"), unique("c"), unique("recipient")
    register(client, a, c, recipient)
    key = unique("shared")
    from_a = client.post("/api/v1/messages", json=direct(a, recipient), headers={KEY_HEADER: key})
    from_c = client.post("/api/v1/messages", json=direct(c, recipient), headers={KEY_HEADER: key})
    assert (from_a.status_code, from_c.status_code) == (202, 202)
    assert REPLAYED_HEADER not in from_a.headers and REPLAYED_HEADER not in from_c.headers
    ids = [from_a.json()["message_id"], from_c.json()["message_id"]]
    assert ids[0] != ids[1]
    for message_id in ids:
        delivered(client, message_id)
    assert sorted(mailbox_ids(client, recipient)) == sorted(ids)


def test_same_key_with_another_body_is_409(client, unique):
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    key = unique("retry")
    first = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert first.status_code == 202
    other = client.post("/api/v1/messages", json=direct(sender, recipient, content={"task": "something else"}),
                        headers={KEY_HEADER: key})
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["details"] == {"idempotency_key": key, "message_id": first.json()["message_id"]}
    delivered(client, first.json()["message_id"])
    assert mailbox_ids(client, recipient) == [first.json()["message_id"]]


def test_concurrent_sends_with_one_key_are_one_message(bus, client, unique):
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    key = unique("storm")
    barrier = threading.Barrier(THREADS)
    answers, errors = [], []

    def go():
        with bus_client(bus.url, timeout=30) as http:
            barrier.wait()
            try:
                answers.append(http.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key}))
            except httpx.HTTPError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [a.status_code for a in answers] == [202] * THREADS, [a.text for a in answers]
    assert len({a.json()["message_id"] for a in answers}) == 1
    assert sorted(a.headers.get(REPLAYED_HEADER, "") for a in answers) == [""] + ["true"] * (THREADS - 1)
    message_id = answers[0].json()["message_id"]
    delivered(client, message_id)
    assert mailbox_ids(client, recipient) == [message_id]


BAD_KEYS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"k" * 256, id="256-chars"),
    pytest.param(b"has space", id="space"),
    pytest.param("cl\u00e9".encode(), id="non-ascii-utf8"),
    pytest.param(b"tab\there", id="tab"),
]


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/broadcast"])
@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_key_is_400_validation_error(client, unique, path, key):
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    body = direct(sender, recipient) if path.endswith("messages") else {"from_sandbox": sender, "from_agent": "p",
                                                                          "content": {}}
    response = client.post(path, json=body, headers={KEY_HEADER: key})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == [KEY_HEADER] and error["details"][KEY_HEADER]
    assert mailbox(client, recipient) == []


def test_longest_and_oddest_valid_keys_are_accepted(client, unique):
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    for key in ("k" * 255, "!~\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", "x"):
        response = client.post("/api/v1/messages", json=direct(sender, recipient, content={"key": key}),
                               headers={KEY_HEADER: key})
        assert response.status_code == 202, (key, response.text)
        assert REPLAYED_HEADER not in response.headers


def test_a_failed_first_send_does_not_burn_the_key(client, unique):
    sender, recipient = unique("sender"), unique("late-recipient")
    register(client, sender)
    key = unique("retry")
    refused = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_sandbox"
    too_big = client.post("/api/v1/messages", json=direct(sender, recipient, content={"blob": "x" * LIMIT}),
                          headers={KEY_HEADER: key})
    assert too_big.status_code == 413
    register(client, recipient)
    accepted = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert accepted.status_code == 202, accepted.text
    assert REPLAYED_HEADER not in accepted.headers
    delivered(client, accepted.json()["message_id"])
    assert mailbox_ids(client, recipient) == [accepted.json()["message_id"]]


def test_a_key_past_the_window_makes_a_new_message(bus, client, unique):
    """The bus runs with the default window (a day): the key's record is moved back in the bus's database."""
    sender, recipient = unique("sender"), unique("recipient")
    register(client, sender, recipient)
    key = unique("daily")
    first = client.post("/api/v1/messages", json=direct(sender, recipient), headers={KEY_HEADER: key})
    assert first.status_code == 202
    database = Database(bus.database_url)
    try:
        age(database, key, 86400 - 60)
        assert client.post("/api/v1/messages", json=direct(sender, recipient),
                           headers={KEY_HEADER: key}).headers.get(REPLAYED_HEADER) == "true"
        age(database, key, 86400 + 1)
    finally:
        database.dispose()
    second = client.post("/api/v1/messages", json=direct(sender, recipient, content={"task": "tomorrow's"}),
                         headers={KEY_HEADER: key})
    assert second.status_code == 202, second.text
    assert REPLAYED_HEADER not in second.headers
    ids = [first.json()["message_id"], second.json()["message_id"]]
    assert ids[0] != ids[1]
    for message_id in ids:
        delivered(client, message_id)
    assert sorted(mailbox_ids(client, recipient)) == sorted(ids)
