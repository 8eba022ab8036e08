"""Finding what was posted since the last look: the durable cursor of a scan and the files it reads.

Files are found by modification time (a new or replaced file changes its directory's mtime too), looking back an
overlap window past the previous scan, and what the cursor has already seen inside that window is skipped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hub.lingmessage.records import MailboxMessage

logger = logging.getLogger(__name__)

DEFAULT_OVERLAP = 60.0  # seconds a scan looks back past the previous one (late renames, clock steps)


@dataclass(frozen=True)
class Cursor:
    """Where a scan for new messages stopped; store ``to_json()`` durably and pass it back next time.

    ``scanned_at`` is the wall-clock time the scan began (0: never scanned). ``seen`` names the messages already
    reported (``<thread_id>/<message_id>``) whose files changed within the overlap window before it, so that
    looking back over that window reports nothing twice while the set stays small.
    """

    scanned_at: float = 0.0
    seen: frozenset[str] = frozenset()

    def to_json(self) -> str:
        """The cursor as a small JSON text."""
        return json.dumps({"scanned_at": self.scanned_at, "seen": sorted(self.seen)})

    @classmethod
    def from_json(cls, text: str | None) -> Cursor:
        """The cursor stored as ``text``; a fresh cursor for None or an empty text."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(scanned_at=float(data.get("scanned_at", 0.0)), seen=frozenset(data.get("seen", ())))


@dataclass(frozen=True)
class Scan:
    """What ``new_messages`` found: the new messages (oldest first), the cursor to store, and message files that
    could not be read this time (being written by a non-atomic writer, or corrupt); those are tried again while
    they are inside the overlap window."""

    messages: tuple[MailboxMessage, ...]
    cursor: Cursor
    unreadable: tuple[Path, ...] = ()


def changed_message_files(threads_dir: Path, since: float | None) -> list[tuple[Path, float]]:
    """Message files under ``threads_dir`` (with their mtimes) changed at or after ``since`` (all for None)."""
    if threads_dir.is_symlink():
        logger.warning("mailbox: skipped %s: a symbolic link (nothing is read through one)", threads_dir)
        return []
    try:
        directories = list(os.scandir(threads_dir))
    except FileNotFoundError:
        return []
    changed = []
    for directory in directories:
        try:
            # Not followed: a new or replaced file changes its directory's mtime, a link's own mtime is its making.
            if since is not None and directory.stat(follow_symlinks=False).st_mtime < since:
                continue  # an older directory has nothing new
            if directory.is_symlink():
                logger.warning("mailbox: skipped %s: a symbolic link (nothing is read through one)", directory.path)
                continue
            if not directory.is_dir(follow_symlinks=False):
                continue
            entries = list(os.scandir(directory.path))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith("msg_") and entry.name.endswith(".json")):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime  # a link is reported, and refused when read
            except OSError:
                continue
            if since is None or mtime >= since:
                changed.append((Path(entry.path), mtime))
    return changed


def order(message: MailboxMessage) -> tuple[datetime, str]:
    """Sort key: oldest first by parsed timestamp (unparsable ones first), then by id."""
    return (message.time or datetime.min.replace(tzinfo=UTC), message.message_id)
