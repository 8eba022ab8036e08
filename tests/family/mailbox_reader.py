"""Open what a notify points at in the shared mailbox directory, the way the members' own code opens it.

Two formats share the directory (see hub/lingmessage): LingMessage's ``threads/<thread_id>/`` (read by LingMessage's
CLI and poller) and LingYi's ``discussions/<discussion_id>.json`` (read by LingYi's web app and by lingzhi). These
helpers read the raw JSON files, independently of the hub's own mailbox code, so a test checks what a member
would really find.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# LingMessage's Message.to_dict: always these ten fields; the optional ones only when set.
MESSAGE_FIELDS = frozenset(
    {
        "message_id",
        "thread_id",
        "sender",
        "recipient",
        "message_type",
        "channel",
        "subject",
        "body",
        "timestamp",
        "source_type",
    }
)
OPTIONAL_MESSAGE_FIELDS = frozenset({"reply_to", "metadata", "source_trace", "delivery_status", "delivered_at"})
HEADER_FIELDS = frozenset(
    {"thread_id", "topic", "channel", "status", "participants", "created_at", "updated_at", "message_count"}
)


@dataclass(frozen=True)
class Thread:
    """A LingMessage thread: its ``thread.json`` and its ``msg_*.json`` files (as stored, oldest first)."""

    header: dict[str, Any]
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class Notified:
    """What a receiver finds for a notify: the id it was given and that id in each format (None: not there)."""

    id: str
    discussion: dict[str, Any] | None
    thread: Thread | None

    @property
    def found(self) -> bool:
        """True when LingYi's lookup (``discussions/<id>.json``) finds it; LingYi answers 404 otherwise."""
        return self.discussion is not None


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".")


def read_discussion(root: Path, discussion_id: str) -> dict[str, Any] | None:
    """LingYi's ``_load_discussion``: ``<root>/discussions/<id>.json`` as JSON, None when missing or unreadable."""
    if not _plain(discussion_id):
        return None
    data = _load(root / "discussions" / f"{discussion_id}.json")
    return data if isinstance(data, dict) else None


def read_message(root: Path, thread_id: str, message_id: str) -> dict[str, Any] | None:
    """The raw JSON of ``threads/<thread_id>/msg_<message_id>.json``, None when missing or unreadable."""
    if not (_plain(thread_id) and _plain(message_id)):
        return None
    data = _load(root / "threads" / thread_id / f"msg_{message_id}.json")
    return data if isinstance(data, dict) else None


def read_thread(root: Path, thread_id: str) -> Thread | None:
    """The thread's header and messages as stored (sorted by timestamp text, as LingMessage sorts them)."""
    if not _plain(thread_id):
        return None
    header = _load(root / "threads" / thread_id / "thread.json")
    if not isinstance(header, dict):
        return None
    messages = [m for p in (root / "threads" / thread_id).glob("msg_*.json") if isinstance(m := _load(p), dict)]
    return Thread(header, sorted(messages, key=lambda m: str(m.get("timestamp", ""))))


def notified_id(payload: Mapping[str, Any]) -> str:
    """The id a receiver looks up from a notify: ``discussion_id`` (LingYi, lingzhi), else ``thread_id``."""
    return str(payload.get("discussion_id") or payload.get("thread_id") or "")


def open_notified(root: Path, payload: Mapping[str, Any]) -> Notified:
    """Look the notified id up in both formats."""
    key = notified_id(payload)
    return Notified(key, read_discussion(root, key), read_thread(root, key))
