"""Topics: publish to one (POST /topics/{topic}/messages); a sandbox's durable subscriptions
(GET/POST/DELETE /sandboxes/{id}/subscriptions)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api.helpers import accepted_response, idempotency_key, json_body
from app.auth import current_actor, require
from app.context import bus
from app.errors import InvalidRequest
from app.models import BROADCAST
from app.schemas import load_or_raise, query_args
from app.schemas.topics import PublishSchema, SubscriptionPatternSchema
from app.services import topics
from app.services.sending import Sender

bp = Blueprint("topics", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_PUBLISH_SCHEMA = PublishSchema()
_SUBSCRIPTION_PATTERN_SCHEMA = SubscriptionPatternSchema()


@bp.post("/topics/<topic>/messages")
def publish(topic: str):
    """Publish a message on `topic`: 202 with its id. Every sandbox of the sender's workspace subscribed to a
    matching pattern gets it in its mailbox (in order with its other entries), less those a deny rule matches."""
    principal = require("messages.send")
    if not topics.is_topic(topic):
        raise InvalidRequest(f"invalid topic {topic!r}", details={"topic": [f"must be {topics.TOPIC_RULE}"]})
    key = idempotency_key()
    data = load_or_raise(_PUBLISH_SCHEMA, json_body())
    return accepted_response(bus().sending.send({**data, "to_sandbox": BROADCAST, "topic": topic},
                                                Sender.of(principal, current_actor()), key))


@bp.get("/sandboxes/<sandbox_id>/subscriptions")
def list_subscriptions(sandbox_id: str):
    """A sandbox's subscriptions, oldest first."""
    require("mailbox.read", sandbox_id=sandbox_id)
    found = topics.list_for(bus().db, sandbox_id)
    return jsonify({"sandbox_id": sandbox_id, "subscriptions": found, "count": len(found)})


@bp.post("/sandboxes/<sandbox_id>/subscriptions")
def subscribe(sandbox_id: str):
    """Subscribe a sandbox to a topic pattern (audited): 201, or 200 when it already was."""
    require("mailbox.settle", sandbox_id=sandbox_id)
    data = load_or_raise(_SUBSCRIPTION_PATTERN_SCHEMA, json_body())
    subscription, created = topics.subscribe(bus().db, sandbox_id, data["pattern"], current_actor())
    return jsonify(subscription), 201 if created else 200


@bp.delete("/sandboxes/<sandbox_id>/subscriptions")
def unsubscribe(sandbox_id: str):
    """End a sandbox's subscription to `?pattern=` (audited); 404 `unknown_subscription` when there is none."""
    require("mailbox.settle", sandbox_id=sandbox_id)
    query = load_or_raise(_SUBSCRIPTION_PATTERN_SCHEMA, query_args(request.args), what="query string")
    return jsonify(topics.unsubscribe(bus().db, sandbox_id, query["pattern"], current_actor()))
