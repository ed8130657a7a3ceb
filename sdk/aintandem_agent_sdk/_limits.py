"""The sizes a send must keep (private): the bus's welcome says them (`max_content_bytes`, `max_frame_bytes`).

Content over the limit is refused here, at once, as the bus would refuse it (413 ``payload_too_large``); a frame
over the socket's limit would make the bus close the mailbox socket (1009), so such a send goes over REST instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aintandem_agent_sdk.errors import BusRejected

DEFAULT_MAX_CONTENT_BYTES = 256 * 1024  # the bus's MAX_CONTENT_BYTES unless configured
DEFAULT_MAX_FRAME_BYTES = DEFAULT_MAX_CONTENT_BYTES + 64 * 1024  # the bus's MAX_WS_FRAME_BYTES unless configured


def content_size(content: Any) -> int:
    """The size in bytes of `content` as compact UTF-8 JSON: what the bus's content limit measures."""
    return len(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode())


def encode_frame(frame: dict[str, Any]) -> str:
    """A socket frame as it travels: compact JSON, sent as a (UTF-8) text frame."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


@dataclass
class SendLimits:
    """What the bus accepts: `max_content_bytes` (None until a welcome said it: then only the bus checks) and
    `max_frame_bytes`, the largest frame the mailbox socket takes (an older bus does not say: its default)."""

    max_content_bytes: int | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES

    def learn(self, welcome: dict[str, Any]) -> None:
        """Take the limits a `welcome` frame states (those it leaves out stay as they are)."""
        for name in ("max_content_bytes", "max_frame_bytes"):
            value = welcome.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                setattr(self, name, value)

    def check_content(self, content: Any) -> None:
        """Raise BusRejected (413 ``payload_too_large``, the limit in bytes) for content the bus would refuse."""
        limit = self.max_content_bytes
        if limit is None:
            return
        size = content_size(content)
        if size > limit:
            raise BusRejected(413, "payload_too_large", f"content is {size} bytes; the limit is {limit} bytes",
                              {"content_bytes": size, "limit_bytes": limit, "limit": limit})

    def fits_frame(self, encoded: str) -> bool:
        """Whether the socket takes this frame (`encode_frame`'s text); a larger one the bus closes it for (1009)."""
        return len(encoded.encode()) <= self.max_frame_bytes
