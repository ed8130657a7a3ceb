"""The resume cursor: which mailbox entries this sandbox has processed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from aintandem_agent_sdk._files import write_json_atomically
from aintandem_agent_sdk.errors import ConfigurationError

__all__ = ["Cursor"]

log = logging.getLogger("aintandem_agent_sdk")


class Cursor:
    """The last processed seq with nothing unprocessed below it (`position`), plus seqs processed above it.

    Entries may finish out of order (concurrent handlers, responses resolved at once); `position` only
    moves over a gap-free run, so resuming from it never skips an entry and `seen` prevents handling an
    entry twice. With a `path` the cursor is loaded from and saved to that JSON file (atomically, after
    every change) so a restarted container resumes too.
    """

    def __init__(self, sandbox_id: str, path: str | os.PathLike[str] | None = None):
        self.sandbox_id = sandbox_id
        self.path = Path(path) if path else None
        self.position = 0
        self._above: set[int] = set()
        if self.path and self.path.exists():
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
            position, owner = int(data["seq"]), data["sandbox_id"]
            above = {int(s) for s in data.get("processed_above", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"cursor file {self.path} is unreadable ({exc}); fix or delete it") from None
        if owner != self.sandbox_id:
            raise ConfigurationError(f"cursor file {self.path} belongs to sandbox {owner!r}, not {self.sandbox_id!r}")
        self.position, self._above = position, above
        log.info("resuming %s after seq %d (cursor file %s)", self.sandbox_id, self.position, self.path)

    def seen(self, seq: int) -> bool:
        """Whether entry `seq` was processed already."""
        return seq <= self.position or seq in self._above

    def mark(self, seq: int) -> None:
        """Record that entry `seq` is processed."""
        if self.seen(seq):
            return
        self._above.add(seq)
        self._close_gaps()

    def advance_to(self, seq: int) -> None:
        """Record that every entry up to `seq` is settled (the bus says so: acknowledged or dead)."""
        if seq <= self.position:
            return
        self.position = seq
        self._above = {s for s in self._above if s > seq}
        self._close_gaps()

    def _close_gaps(self) -> None:
        while self.position + 1 in self._above:
            self.position += 1
            self._above.discard(self.position)
        self._save()

    def reset(self, seq: int = 0) -> None:
        """Forget everything, and count every entry up to `seq` as processed (the bus's mailbox was reset, or ends
        before this cursor: resume where the bus says)."""
        self.position, self._above = seq, set()
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        write_json_atomically(self.path, {"sandbox_id": self.sandbox_id, "seq": self.position,
                                          "processed_above": sorted(self._above)})
