"""LingYi's discussion store: the other format in the same mailbox directory.

LingYi's web app (``GET /api/lingmessage/<discussion_id>``) and lingzhi (through LingYi's ``read_discussion``)
look a notified ``discussion_id`` up here, not in LingMessage's ``threads/``; LingYi and lingzhi also post here.
Under the mailbox root::

    discussions/<discussion_id>.json   {"id", "topic", "initiator", "initiator_name", "created_at", "updated_at",
                                        "participants": [display names], "status": "open", "summary": "",
                                        "messages": [<message>, ...]}
    index.json                          shared with LingMessage; LingYi's entries are {"id", "topic", "initiator",
                                        "participants", "message_count", "status", "created_at", "updated_at",
                                        "summary"}

A message is ``{"id", "from_id", "from_name", "topic", "content", "timestamp", "reply_to", "tags",
"source_type"}``. LingYi stamps local time without a zone (``2026-11-03T16:15:30``) and names its ids ``disc_`` /
``msg_`` plus that stamp's digits; any file name works as an id. LingYi writes these files in place and without
locks; the hub writes them whole (temporary file, rename) under ``<file>.lock``, so its own writers never lose
each other's messages and readers never see half a file written by the hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.lingmessage.files import FileLock, UnsafeFile, ensure_root, read_json, real_directory, write_json
from hub.lingmessage.ids import parse_timestamp
from hub.lingmessage.index import find_entry, update_index
from hub.lingmessage.scan import DEFAULT_OVERLAP, Cursor

logger = logging.getLogger(__name__)

# LingYi's PROJECTS table: the names it shows and stores as ``from_name`` and in ``participants``.
DISPLAY_NAMES = {
    "lingflow": "灵通",
    "lingclaude": "灵克",
    "lingzhi": "灵知",
    "lingyi": "灵依",
    "lingtongask": "灵通问道",
    "lingterm": "灵犀",
    "lingminopt": "灵极优",
    "lingresearch": "灵妍",
    "zhibridge": "智桥",
    "lingyang": "灵扬",
    "guangda": "广大老师",
}


def display_name(member_id: str) -> str:
    """The name LingYi shows for ``member_id`` (the id itself when LingYi does not know it)."""
    return DISPLAY_NAMES.get(member_id, member_id)


def local_timestamp(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as LingYi stamps it: local time, seconds, no zone."""
    return (moment or datetime.now()).astimezone().strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class DiscussionMessage:
    """One entry of a discussion's ``messages`` list."""

    id: str
    from_id: str
    topic: str
    content: str
    timestamp: str = field(default_factory=local_timestamp)
    from_name: str = ""
    reply_to: str | None = None
    tags: tuple[str, ...] = ()
    source_type: str = "real"

    def to_dict(self) -> dict[str, Any]:
        """The entry's JSON object in LingYi's field order (``from_name`` defaults to LingYi's display name)."""
        return {
            "id": self.id,
            "from_id": self.from_id,
            "from_name": self.from_name or display_name(self.from_id),
            "topic": self.topic,
            "content": self.content,
            "timestamp": self.timestamp,
            "reply_to": self.reply_to,
            "tags": list(self.tags),
            "source_type": self.source_type,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiscussionMessage:
        """The entry in a JSON object; fields LingYi's code always writes may be missing in others' files."""
        return cls(
            id=str(data.get("id", "")),
            from_id=str(data.get("from_id", "")),
            topic=str(data.get("topic", "")),
            content=data.get("content") if isinstance(data.get("content"), str) else str(data.get("content", "")),
            timestamp=str(data.get("timestamp", "")),
            from_name=str(data.get("from_name", "")),
            reply_to=data.get("reply_to") if isinstance(data.get("reply_to"), str) else None,
            tags=tuple(str(t) for t in data.get("tags") or ()),
            source_type=str(data.get("source_type", "")),
        )


@dataclass(frozen=True)
class PostedMessage:
    """A message found by a scan, with the discussion it belongs to."""

    discussion_id: str
    discussion_topic: str
    message: DiscussionMessage


@dataclass(frozen=True)
class DiscussionScan:
    """What ``Discussions.new_messages`` found (oldest first), the cursor to store, and unreadable files."""

    messages: tuple[PostedMessage, ...]
    cursor: Cursor
    unreadable: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Discussions:
    """LingYi's ``discussions/`` store under a mailbox root."""

    root: Path

    @property
    def directory(self) -> Path:
        return self.root / "discussions"

    def path(self, discussion_id: str) -> Path:
        """The discussion's file. Raises ValueError for an id that is not a plain file name."""
        if not discussion_id or "/" in discussion_id or "\0" in discussion_id or discussion_id.startswith("."):
            raise ValueError(f"not a discussion id: {discussion_id!r}")
        return self.directory / f"{discussion_id}.json"

    def read(self, discussion_id: str) -> dict[str, Any] | None:
        """The discussion's JSON object, or None when there is no readable file (LingYi then answers 404)."""
        try:
            data = read_json(self.path(discussion_id))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def append(self, *, discussion_id: str, topic: str, message: DiscussionMessage) -> bool:
        """Add ``message`` to the discussion, creating it (status "open", started by the sender) if needed, and
        list it in the shared index so LingYi's senders append replies on the same topic to it.

        Returns True when the message was added, False when one with the same id was already there.
        """
        ensure_root(self.root)
        with contextlib.suppress(FileExistsError):
            self.directory.mkdir()
        real_directory(self.directory)  # never written through a link out of the mailbox
        path = self.path(discussion_id)
        entry = message.to_dict()
        with FileLock(path):
            discussion = self.read(discussion_id)
            if discussion is None:
                discussion = {
                    "id": discussion_id,
                    "topic": topic,
                    "initiator": message.from_id,
                    "initiator_name": entry["from_name"],
                    "created_at": message.timestamp,
                    "updated_at": message.timestamp,
                    "participants": [],
                    "status": "open",
                    "summary": "",
                    "messages": [],
                }
            messages = discussion.setdefault("messages", [])
            if any(isinstance(m, dict) and m.get("id") == message.id for m in messages):
                return False
            messages.append(entry)
            discussion["updated_at"] = local_timestamp()
            participants = discussion.setdefault("participants", [])
            if entry["from_name"] not in participants:
                participants.append(entry["from_name"])
            write_json(path, discussion)
        update_index(self.root, lambda threads: _list(threads, discussion))
        return True

    def new_messages(
        self, cursor: Cursor, *, overlap: float = DEFAULT_OVERLAP, now: float | None = None
    ) -> DiscussionScan:
        """The messages added to any discussion since ``cursor`` (all of them for a fresh cursor), oldest first.

        A discussion file is rewritten whole for every message, so new messages are told apart by their position
        and their timestamps (LingYi stamps them as it appends): a message stamped more than ``overlap`` seconds
        before the previous scan is taken as already seen. The hub's own appends are reported too.
        """
        started = time.time() if now is None else now
        since = cursor.scanned_at - overlap if cursor.scanned_at else None
        keep_after = started - overlap
        found: list[tuple[float, PostedMessage]] = []
        unreadable: list[Path] = []
        seen: set[str] = set()
        try:
            files = [e for e in os.scandir(self.directory) if e.name.endswith(".json") and not e.name.startswith(".")]
        except FileNotFoundError:
            files = []
        for file in files:
            with contextlib.suppress(OSError):
                if since is not None and file.stat(follow_symlinks=False).st_mtime < since:
                    continue
            discussion_id = file.name[: -len(".json")]
            try:
                discussion = read_json(Path(file.path))
            except UnsafeFile as exc:  # a link, FIFO, device or oversized file: never read, not tried again
                logger.warning("mailbox: skipped %s", exc)
                continue
            except (OSError, ValueError):
                discussion = None
            if not isinstance(discussion, dict) or not isinstance(discussion.get("messages"), list):
                unreadable.append(Path(file.path))
                continue
            for position, raw in enumerate(discussion["messages"]):
                if not isinstance(raw, dict):
                    continue
                stamp = parse_timestamp(str(raw.get("timestamp", "")))
                at = stamp.timestamp() if stamp else 0.0
                if since is not None and at < since:
                    continue
                key = f"{discussion_id}/{position}"
                if key not in cursor.seen:
                    posted = PostedMessage(
                        discussion_id, str(discussion.get("topic", "")), DiscussionMessage.from_dict(raw)
                    )
                    found.append((at, posted))
                if at >= keep_after:
                    seen.add(key)
        found.sort(key=lambda pair: (pair[0], pair[1].discussion_id, pair[1].message.id))
        return DiscussionScan(
            messages=tuple(posted for _, posted in found),
            cursor=Cursor(scanned_at=started, seen=frozenset(seen)),
            unreadable=tuple(unreadable),
        )


def _list(threads: list[dict[str, Any]], discussion: dict[str, Any]) -> None:
    """Put ``discussion``'s entry in the index thread list as LingYi does, without breaking LingMessage's entry
    when the same id is also a LingMessage thread (the hub gives both the same id)."""
    discussion_id = discussion["id"]
    entry = {
        "id": discussion_id,
        "topic": discussion.get("topic", ""),
        "initiator": discussion.get("initiator", ""),
        "participants": discussion.get("participants", []),
        "message_count": len(discussion.get("messages", [])),
        "status": discussion.get("status", "open"),
        "created_at": discussion.get("created_at", ""),
        "updated_at": discussion.get("updated_at", ""),
        "summary": discussion.get("summary", ""),
    }
    found = find_entry(threads, discussion_id)
    if found is None:
        threads.append(entry)
    elif found.get("thread_id") == discussion_id:
        # LingMessage's header stays; LingYi finds it by ``id`` and threads replies only onto "open" entries
        # (LingMessage reads "open" as "active").
        found["id"] = discussion_id
        if found.get("status") == "active":
            found["status"] = "open"
    else:
        channel = found.get("channel")
        found.clear()
        found.update(entry)
        if channel:
            found["channel"] = channel
