"""Cross-sandbox messaging policies: allow/deny rules, and the one evaluation that decides whether a send may go.

A rule has an `effect` (allow or deny), four selectors (`from_workspace`, `from_sandbox`, `to_workspace`,
`to_sandbox`; each an id or "*" for any) and `message_types` (empty means every type). It matches a send
when every selector matches and the type is one of its types. A send is decided, in this order:

1. a matching deny rule refuses (the one with the lowest id is reported);
2. else a matching allow rule allows;
3. else a privileged caller (an admin or operator API key) is allowed;
4. else the default: within one workspace a send is allowed, except a `command`, which needs a grant
   (an allow rule matching `command`); across workspaces, or from a sender that is not a registered
   sandbox (it has no workspace), it is refused.

Workspaces come from the registry. Broadcasts are not decided here: delivery limits them to the sender's
workspace and skips recipients a deny rule matches (`denying_rule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from app.db import Database
from app.errors import Forbidden, InvalidRequest, NotFound, UnknownSandbox
from app.models import BROADCAST, Policy, isoformat, utcnow
from app.services import audit, topics
from app.services.directory import Directory, mark_changed

ANY = "*"  # a selector matching every workspace or sandbox
ALLOW = "allow"
DENY = "deny"
EFFECTS = (ALLOW, DENY)
COMMAND = "command"
MAX_DESCRIPTION = 500
MAX_RULE_ID = 2**31 - 1  # the largest id the (INTEGER) column holds; larger ids name no rule

POLICY_DENIED = "policy_denied"
SELECTORS = ("from_workspace", "from_sandbox", "to_workspace", "to_sandbox")

# Reasons a decision gives (`Decision.reason`).
DENIED_BY_RULE = "denied by a rule"
ALLOWED_BY_RULE = "allowed by a rule"
PRIVILEGED = "privileged caller"
SAME_WORKSPACE = "same workspace"
COMMAND_NEEDS_GRANT = "commands need a grant"
DIFFERENT_WORKSPACES = "different workspaces"
UNKNOWN_SENDER = "sender has no workspace"
UNKNOWN_RECIPIENT = "recipient has no workspace"
BROADCAST_AT_DELIVERY = "broadcasts are scoped at delivery"


def rule_to_dict(rule: Policy) -> dict:
    """The public representation of a rule."""
    return {"id": rule.id, "effect": rule.effect, "from_workspace": rule.from_workspace,
            "from_sandbox": rule.from_sandbox, "to_workspace": rule.to_workspace, "to_sandbox": rule.to_sandbox,
            "message_types": list(rule.message_types or []), "topics": list(rule.topics or []),
            "description": rule.description or "",
            "created_by": rule.created_by, "created_at": isoformat(rule.created_at)}


def describe(rule: dict) -> str:
    """A rule in a few words, e.g. ``deny sb-a → * for command`` or ``allow workspace ws1 → sb-b for all types``."""
    def side(workspace: str, sandbox: str) -> str:
        if sandbox != ANY:
            return sandbox if workspace == ANY else f"{sandbox} (workspace {workspace})"
        return ANY if workspace == ANY else f"workspace {workspace}"

    types = ", ".join(rule["message_types"]) or "all types"
    on_topics = f" on topics {', '.join(rule['topics'])}" if rule.get("topics") else ""
    return (f"{rule['effect']} {side(rule['from_workspace'], rule['from_sandbox'])} → "
            f"{side(rule['to_workspace'], rule['to_sandbox'])} for {types}{on_topics}")


@dataclass(frozen=True)
class Endpoint:
    """One end of a send: a sandbox id and its workspace (None when it is not a registered sandbox)."""

    sandbox: str
    workspace: str | None


@dataclass(frozen=True)
class Decision:
    """The outcome of evaluating a send: allowed or not, the deciding rule (a dict, or None for the default or a
    privileged caller), a short `reason`, and a sentence for people (`message`)."""

    allowed: bool
    rule: dict | None
    reason: str
    message: str

    def to_dict(self) -> dict:
        """``{"allowed", "rule", "reason"}``: the answer of a dry run."""
        return {"allowed": self.allowed, "rule": self.rule, "reason": self.reason}


def matches(rule: dict, sender: Endpoint, recipient: Endpoint, message_type: str, topic: str | None = None) -> bool:
    """Whether `rule` applies to a `message_type` send (on `topic`, for a topic message) from `sender` to
    `recipient`.

    Every selector must be "*" or equal to the endpoint's value (a specific workspace never matches an endpoint
    without one), the type must be one of the rule's types, or the rule must list none, and a rule that names
    topic patterns applies only to topic messages whose topic one of them matches.
    """
    values = {"from_workspace": sender.workspace, "from_sandbox": sender.sandbox,
              "to_workspace": recipient.workspace, "to_sandbox": recipient.sandbox}
    if any(rule[name] != ANY and rule[name] != values[name] for name in SELECTORS):
        return False
    if rule.get("topics") and (topic is None or not any(topics.matches(p, topic) for p in rule["topics"])):
        return False
    return not rule["message_types"] or message_type in rule["message_types"]


def load_rules(session) -> list[dict]:
    """Every rule, as dicts in id order (the order in which rules are reported)."""
    return [rule_to_dict(rule) for rule in session.scalars(select(Policy).order_by(Policy.id))]


def denying_rule(rules: Sequence[dict], sender: Endpoint, recipient: Endpoint, message_type: str,
                 topic: str | None = None) -> dict | None:
    """The lowest-id deny rule among `rules` (in id order) matching the send, or None."""
    return next((r for r in rules if r["effect"] == DENY and matches(r, sender, recipient, message_type, topic)),
                None)


def decide(rules: Sequence[dict], sender: Endpoint, recipient: Endpoint, message_type: str,
           privileged: bool) -> Decision:
    """Decide a direct send by `rules` (in id order): deny rule, then allow rule, then privilege, then the default.

    This is the one evaluation behind `check_send` and `evaluate`; it reads nothing and changes nothing.
    """
    deny = denying_rule(rules, sender, recipient, message_type)
    if deny is not None:
        return Decision(False, deny, DENIED_BY_RULE, f"refused by policy {deny['id']} ({describe(deny)})")
    allow = next((r for r in rules if r["effect"] == ALLOW and matches(r, sender, recipient, message_type)), None)
    if allow is not None:
        return Decision(True, allow, ALLOWED_BY_RULE, f"allowed by policy {allow['id']} ({describe(allow)})")
    if privileged:
        return Decision(True, None, PRIVILEGED, "allowed: the caller is privileged (an admin or operator key)")
    if sender.workspace is None:
        return Decision(False, None, UNKNOWN_SENDER,
                        f"refused by the default policy: sender {sender.sandbox!r} is not a registered sandbox, so it "
                        "has no workspace; only an allow rule or a privileged caller can send for it")
    if recipient.workspace is None:
        return Decision(False, None, UNKNOWN_RECIPIENT,
                        f"refused by the default policy: recipient {recipient.sandbox!r} is not a registered sandbox, "
                        "so it has no workspace")
    if sender.workspace != recipient.workspace:
        return Decision(False, None, DIFFERENT_WORKSPACES,
                        "refused by the default policy: sandboxes in different workspaces may not message each "
                        f"other without an allow rule ({sender.workspace!r} → {recipient.workspace!r})")
    if message_type == COMMAND:
        return Decision(False, None, COMMAND_NEEDS_GRANT,
                        "refused by the default policy: commands need a grant (an allow rule matching command), "
                        f"also within workspace {sender.workspace!r}")
    return Decision(True, None, SAME_WORKSPACE, f"allowed by the default policy: same workspace {sender.workspace!r}")


def cached_rules(directory: Directory) -> tuple[dict, ...]:
    """Every rule as `load_rules` gives them, from the process's directory cache."""
    def load() -> tuple[dict, ...]:
        with directory.db.read() as session:
            return tuple(load_rules(session))

    return directory.cached("rules", load)


def endpoint(directory: Directory, sandbox_id: str) -> Endpoint:
    """`sandbox_id` with its workspace from the registry (None when it is not a registered sandbox)."""
    sandbox = directory.sandbox(sandbox_id)
    return Endpoint(sandbox_id, sandbox.workspace if sandbox is not None and sandbox.registered else None)


def evaluate(directory: Directory, *, from_sandbox: str, to_sandbox: str, message_type: str,
             privileged: bool) -> Decision:
    """Decide a send without refusing it (a dry run of `check_send`). A broadcast is allowed here: it is scoped
    at delivery."""
    if to_sandbox == BROADCAST:
        return Decision(True, None, BROADCAST_AT_DELIVERY, "broadcasts reach only the sender's workspace and skip "
                        "recipients a deny rule matches; they are scoped at delivery")
    return decide(cached_rules(directory), endpoint(directory, from_sandbox), endpoint(directory, to_sandbox),
                  message_type, privileged)


def check_send(directory: Directory, *, from_sandbox: str, to_sandbox: str, message_type: str,
               privileged: bool) -> None:
    """Return if the send may go; raise Forbidden `policy_denied` naming the refusing rule (or the default) if not.

    `privileged` is true for an admin or operator API key. Broadcasts (`to_sandbox == "broadcast"`) always pass:
    delivery scopes them. A recipient that is not a registered sandbox is UnknownSandbox (404 before 403). The
    error's details: ``rule`` (dict or null), ``reason``, ``from_sandbox``, ``to_sandbox``, ``message_type``.
    """
    if to_sandbox == BROADCAST:
        return
    recipient = endpoint(directory, to_sandbox)
    if recipient.workspace is None:
        raise UnknownSandbox(to_sandbox)
    decision = decide(cached_rules(directory), endpoint(directory, from_sandbox), recipient, message_type,
                      privileged)
    if not decision.allowed:
        raise Forbidden(decision.message, code=POLICY_DENIED, details={
            "rule": decision.rule, "reason": decision.reason, "from_sandbox": from_sandbox,
            "to_sandbox": to_sandbox, "message_type": message_type})


# ------------------------------------------------------------------------------------------- managing rules

def create_rule(db: Database, data: dict, actor: audit.Actor) -> dict:
    """Store a rule from validated `data` (effect, selectors defaulting to "*", message_types, description) and
    audit `policy.created` in the same transaction; return the rule with its id, created_by and created_at."""
    effect = data.get("effect")
    if effect not in EFFECTS:
        raise InvalidRequest(f"effect must be one of {', '.join(EFFECTS)}", details={"effect": [f"unknown: {effect}"]})
    types = list(dict.fromkeys(data.get("message_types") or []))  # without repeats, in the given order
    patterns = list(dict.fromkeys(data.get("topics") or []))
    with db.write() as session:
        rule = Policy(effect=effect, message_types=types, topics=patterns, description=data.get("description") or "",
                      created_by=actor.id[:160], created_at=utcnow(),
                      **{name: data.get(name) or ANY for name in SELECTORS})
        session.add(rule)
        session.flush()
        created = rule_to_dict(rule)
        audit.record(session, actor, "policy.created", target=f"policy:{rule.id}", rule=created)
        mark_changed(session)
        return created


def list_rules(db: Database) -> list[dict]:
    """Every rule, in id order."""
    with db.read() as session:
        return load_rules(session)


def get_rule(db: Database, rule_id: int) -> dict:
    """The rule `rule_id`; NotFound `unknown_policy` when there is none."""
    with db.read() as session:
        return rule_to_dict(_get(session, rule_id))


def delete_rule(db: Database, rule_id: int, actor: audit.Actor) -> dict:
    """Remove the rule `rule_id` and audit `policy.deleted` in the same transaction; return the removed rule.
    NotFound `unknown_policy` when there is none."""
    with db.write() as session:
        rule = _get(session, rule_id)
        deleted = rule_to_dict(rule)
        session.delete(rule)
        audit.record(session, actor, "policy.deleted", target=f"policy:{rule_id}", rule=deleted)
        mark_changed(session)
        return deleted


def _get(session, rule_id: int) -> Policy:
    rule = session.get(Policy, rule_id) if 0 < rule_id <= MAX_RULE_ID else None
    if rule is None:
        raise NotFound(f"policy {rule_id} does not exist", code="unknown_policy", details={"id": rule_id})
    return rule
