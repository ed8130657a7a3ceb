"""System events (sandbox registered, message accepted, ...) and the notifications that carry them."""

from __future__ import annotations

import time

SANDBOX_REGISTERED = "sandbox.registered"
SANDBOX_UNREGISTERED = "sandbox.unregistered"
SANDBOX_CONNECTED = "sandbox.connected"
SANDBOX_DISCONNECTED = "sandbox.disconnected"
SANDBOX_ONLINE = "sandbox.online"
SANDBOX_OFFLINE = "sandbox.offline"
MESSAGE_ACCEPTED = "message.accepted"
MESSAGE_DELIVERED = "message.delivered"
MESSAGE_DEAD_LETTERED = "message.dead_lettered"
MESSAGE_REFUSED = "message.refused"  # a runaway guard refused a message (hop_limit, pair_rate, trace_budget)
MESSAGE_REROUTED = "message.rerouted"  # a capability-routed request left an agent that went offline before its ACK
DEAD_LETTER_REPLAYED = "dead_letter.replayed"
REQUEST_UNANSWERED = "request.unanswered"
SANDBOX_WAKING = "sandbox.waking"  # a message arrived for a stopped managed sandbox: it is being started
SANDBOX_STATE_CHANGED = "sandbox.state_changed"  # a managed sandbox's container moved (creating, running, error, ...)

MAX_RECIPIENTS_IN_EVENT = 100  # recipients listed in a message.delivered event (recipient_count has them all)
BATCH_SIZE = 100  # notifications per fanout publish (a redelivery carries its message: keep publishes moderate)


def event_notification(name: str, **data) -> dict:
    """A notification that carries one system event to the /ws/events sockets of every API process."""
    return {"kind": "event", "event": {"event": name, "data": data, "timestamp": time.time()}}


def delivered_event(message: dict, recipients: list) -> dict:
    """The message.delivered event of an entries notification: `message` now sits in the mailboxes of
    `recipients` (`[sandbox_id, seq]` pairs)."""
    return {"event": MESSAGE_DELIVERED,
            "data": {"message_id": message["message_id"], "to_sandbox": message["to_sandbox"],
                     "recipient_count": len(recipients),
                     "recipients": [r[0] for r in recipients[:MAX_RECIPIENTS_IN_EVENT]]},
            "timestamp": time.time()}


def event_of(notification: dict) -> dict | None:
    """The system event one (unbatched) notification carries for the events sockets, None when it carries none:
    an event notification's own, and an entries notification's message.delivered (made once: kept in it under
    `event`, so every API process sends the same)."""
    kind = notification.get("kind")
    if kind == "event":
        return notification["event"]
    if kind == "entries":
        if notification.get("event") is None:
            notification["event"] = delivered_event(notification["message"], notification["recipients"])
        return notification["event"]
    return None


def disconnect_notification(sandbox_id: str, reason: str) -> dict:
    """A notification that every API process closes `sandbox_id`'s mailbox sockets (an operator disconnected it)."""
    return {"kind": "disconnect", "sandbox_id": sandbox_id, "reason": reason}


def entries_notification(message: dict, recipients: list[tuple[str, int]]) -> dict:
    """A notification that `message` now sits in each recipient's mailbox at the given seq."""
    return {"kind": "entries", "message": message, "recipients": [[sandbox, seq] for sandbox, seq in recipients]}


def redelivery_notification(sandbox_id: str, seq: int, attempt: int, message: dict) -> dict:
    """A notification asking the API processes to push entry `seq` to `sandbox_id`'s sockets again."""
    return {"kind": "redeliver", "sandbox_id": sandbox_id, "seq": seq, "attempt": attempt, "message": message}


def batched(notifications: list[dict], size: int = BATCH_SIZE) -> list[dict]:
    """`notifications` packed, in order, into batch notifications of at most `size` each: one fanout publish
    carries what one transaction did. A lone notification stays as it is."""
    chunks = [notifications[i:i + size] for i in range(0, len(notifications), size)]
    return [chunk[0] if len(chunk) == 1 else {"kind": "batch", "items": chunk} for chunk in chunks]


def unbatched(notification: dict) -> list[dict]:
    """The notifications a (possibly batch) notification carries, in order."""
    if notification.get("kind") == "batch":
        return list(notification.get("items") or [])
    return [notification]
