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
DEAD_LETTER_REPLAYED = "dead_letter.replayed"
REQUEST_UNANSWERED = "request.unanswered"


def event_notification(name: str, **data) -> dict:
    """A notification that carries one system event to the /ws/events sockets of every API process."""
    return {"kind": "event", "event": {"event": name, "data": data, "timestamp": time.time()}}


def entries_notification(message: dict, recipients: list[tuple[str, int]]) -> dict:
    """A notification that `message` now sits in each recipient's mailbox at the given seq."""
    return {"kind": "entries", "message": message, "recipients": [[sandbox, seq] for sandbox, seq in recipients]}
