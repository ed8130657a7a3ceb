"""A mailbox socket's request frames, each answered on the socket with the frame's `ref`: runs of `send` frames (a
message each, as POST /api/v1/messages; `on_send_run`), `publish` (a topic message, as POST
/api/v1/topics/{topic}/messages) and `subscribe` / `unsubscribe` (a topic pattern, as
/api/v1/sandboxes/{id}/subscriptions), and `ack_seq`, which reads an `ack` frame.
A refusal is an `error` frame with the HTTP status the REST call would have had."""

from __future__ import annotations

from app.auth import current_actor, require
from app.context import BusContext
from app.errors import BusError
from app.models import BROADCAST
from app.schemas import SEQ_MAX, AckFrameSchema, AgentMessageSchema, load_or_raise
from app.schemas.sending import SendFrameSchema, frame_ref
from app.schemas.topics import PublishFrameSchema, PublishSchema, SubscriptionFrameSchema
from app.services import topics
from app.services.sending import Sender
from app.ws.connections import Connection

SUBSCRIPTION_FRAMES = ("subscribe", "unsubscribe")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_PUBLISH_FRAME_SCHEMA = PublishFrameSchema()
_PUBLISH_SCHEMA = PublishSchema()
_SEND_FRAME_SCHEMA = SendFrameSchema()
_AGENT_MESSAGE_SCHEMA = AgentMessageSchema()
_SUBSCRIPTION_FRAME_SCHEMA = SubscriptionFrameSchema()
_ACK_FRAME_SCHEMA = AckFrameSchema()  # words the refusal of a malformed ack frame (`ack_seq`)
ACK_FRAME_FIELDS = {"type", "seq"}


def on_publish(ctx: BusContext, conn: Connection, frame: dict) -> None:
    """Accept the frame's topic message like `POST /api/v1/topics/{topic}/messages`; answer `accepted` with its id."""
    ref = frame_ref(frame.get("ref"))
    try:
        principal = require("messages.send")
        send = load_or_raise(_PUBLISH_FRAME_SCHEMA, frame, what="publish frame")
        data = {**load_or_raise(_PUBLISH_SCHEMA, send["message"], what="publish frame's message"),
                "to_sandbox": BROADCAST, "topic": send["topic"]}
        message = ctx.sending.send(data, Sender.of(principal, current_actor()), send["idempotency_key"]).message
    except BusError as exc:
        _refuse(conn, ref, exc)
        return
    conn.send_json({"type": "accepted", "ref": ref, "message_id": message.id, "timestamp": message.timestamp})


def on_send_run(ctx: BusContext, conn: Connection, run: list[dict]) -> None:
    """Accept the messages of a run of `send` frames received together (one frame is a run of one) like `POST
    /api/v1/messages` would one by one, in one go (app.services.sending.SendService.send_run: shared transactions,
    their order kept); answer each in order by its ref."""
    answers: list[dict | BusError | None] = [None] * len(run)
    sends: list[tuple[int, dict, str | None]] = []
    try:
        principal = require("messages.send")
    except BusError as exc:
        answers = [exc] * len(run)
    else:
        for index, frame in enumerate(run):
            try:
                send = load_or_raise(_SEND_FRAME_SCHEMA, frame, what="send frame")
                data = load_or_raise(_AGENT_MESSAGE_SCHEMA, send["message"], what="send frame's message")
                sends.append((index, data, send["idempotency_key"]))
            except BusError as exc:
                answers[index] = exc
        outcomes = ctx.sending.send_run([(data, key) for _, data, key in sends], Sender.of(principal, current_actor()))
        for (index, _, _), outcome in zip(sends, outcomes, strict=True):
            answers[index] = outcome if isinstance(outcome, BusError) else {
                "message_id": outcome.message.id, "timestamp": outcome.message.timestamp}
    for frame, answer in zip(run, answers, strict=True):
        ref = frame_ref(frame.get("ref"))
        if isinstance(answer, BusError):
            _refuse(conn, ref, answer)
        else:
            conn.send_json({"type": "accepted", "ref": ref, **answer})


def ack_seq(frame: dict) -> int:
    """The seq of an `ack` frame (`{"type": "ack", "seq": n}`, n an integer from 1 to SEQ_MAX); else InvalidRequest
    `validation_error` exactly as AckFrameSchema words it. The well-formed frame, the one every ACK sends, is
    recognised with a plain check; any other frame goes through the schema, which accepts or refuses it."""
    if type(frame) is dict and frame.keys() == ACK_FRAME_FIELDS and frame["type"] == "ack":
        seq = frame["seq"]
        if type(seq) is int and 1 <= seq <= SEQ_MAX:  # not a bool, a float or a string
            return seq
    return load_or_raise(_ACK_FRAME_SCHEMA, frame, what="ack frame")["seq"]


def on_subscription(ctx: BusContext, conn: Connection, sandbox_id: str, frame: dict) -> None:
    """Subscribe or unsubscribe this socket's sandbox (durably, audited, as the REST calls do); answer
    `subscribed` / `unsubscribed` with the pattern."""
    ref = frame_ref(frame.get("ref"))
    try:
        require("mailbox.settle", sandbox_id=sandbox_id)
        pattern = load_or_raise(_SUBSCRIPTION_FRAME_SCHEMA, frame, what=f"{frame['type']} frame")["pattern"]
        if frame["type"] == "subscribe":
            topics.subscribe(ctx.db, sandbox_id, pattern, current_actor())
        else:
            topics.unsubscribe(ctx.db, sandbox_id, pattern, current_actor())
    except BusError as exc:
        _refuse(conn, ref, exc)
        return
    conn.send_json({"type": f"{frame['type']}d", "ref": ref, "pattern": pattern})


def _refuse(conn: Connection, ref, exc: BusError) -> None:
    conn.send_json({"type": "error", "ref": ref, "status": exc.status, **exc.to_dict()["error"]})
