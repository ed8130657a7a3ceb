"""Cross-sandbox messaging policies: list, create, show and delete rules, and a dry-run check of a send."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.helpers import json_body
from app.auth import current_actor, require
from app.context import bus
from app.schemas import PolicyCheckSchema, PolicySchema, load_or_raise
from app.services import policies

bp = Blueprint("policies", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_POLICY_SCHEMA = PolicySchema()
_POLICY_CHECK_SCHEMA = PolicyCheckSchema()


@bp.get("/policies")
def list_policies():
    """Every rule, in id order (the order in which deny and allow rules are reported)."""
    require("policies.read")
    rules = policies.list_rules(bus().db)
    return jsonify({"policies": rules, "count": len(rules)})


@bp.post("/policies")
def create_policy():
    """Add a rule (audited): 201 with the rule, its id, created_by and created_at."""
    require("policies.manage")
    data = load_or_raise(_POLICY_SCHEMA, json_body())
    return jsonify(policies.create_rule(bus().db, data, current_actor())), 201


@bp.get("/policies/<int:rule_id>")
def get_policy(rule_id: int):
    """One rule; 404 `unknown_policy` when there is none."""
    require("policies.read")
    return jsonify(policies.get_rule(bus().db, rule_id))


@bp.delete("/policies/<int:rule_id>")
def delete_policy(rule_id: int):
    """Remove a rule (audited): 200 with the removed rule; 404 `unknown_policy` when there is none."""
    require("policies.manage")
    return jsonify(policies.delete_rule(bus().db, rule_id, current_actor()))


@bp.post("/policies/check")
def check_policy():
    """Would this send be allowed? `{"allowed", "rule", "reason"}`, decided exactly as the send path decides."""
    require("policies.read")
    data = load_or_raise(_POLICY_CHECK_SCHEMA, json_body())
    decision = policies.evaluate(bus().directory, from_sandbox=data["from_sandbox"], to_sandbox=data["to_sandbox"],
                                 message_type=data["message_type"], privileged=data["privileged"])
    return jsonify(decision.to_dict())
