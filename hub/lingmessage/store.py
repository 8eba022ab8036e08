"""LingMessage's on-disk mailbox, written and read the way LingMessage's own ``Mailbox`` does it.

Layout under the mailbox root (LingMessage's default is ``~/.lingmessage``)::

    index.json                                  {"threads": [<thread header>, ...], "last_updated": <iso>}
    index.json.backup                           a copy of index.json taken before each rewrite
    audit.log                                   one JSON object a line, chained by an HMAC
    threads/<thread_id>/thread.json             the thread header, written once when the thread opens
    threads/<thread_id>/msg_<message_id>.json   one message a file

Ids are 32 lowercase hex digits (LingMessage refuses anything else on write); timestamps are ISO 8601 in UTC.
Files are mode 0600 and the root 0700, so the hub must run as the same OS user as the members that share it.
Only the standard library is used: the channel that builds on this passes plain values in and out.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.lingmessage.files import FILE_MODE, FileLock, create_json, ensure_root, read_json, write_json

# The values LingMessage's enums accept (lingmessage/types.py). Anything else is read back as a default there:
# an unknown sender or recipient becomes "all", an unknown channel "ecosystem", an unknown message type "open".
IDENTITIES = (
    "lingflow",
    "lingclaude",
    "lingyi",
    "lingzhi",
    "lingtongask",
    "lingxi",
    "lingminopt",
    "lingresearch",
    "lingyang",
    "zhibridge",
    "lingmessage",
    "all",
)
MESSAGE_TYPES = ("open", "reply", "summary", "decision", "question", "proposal", "vote", "closing")
CHANNELS = ("ecosystem", "integration", "shared-infra", "knowledge", "self-optimize", "identity")
THREAD_STATUSES = ("open", "active", "frozen", "decided", "closed")
SOURCE_TYPES = ("verified", "inferred", "generated")
DELIVERY_STATUSES = ("sent", "delivered", "failed")

AUDIT_CHAIN_KEY = b"lingmessage-audit-chain-v1"
DEFAULT_OVERLAP = 60.0  # seconds a scan looks back past the previous one (late renames, clock steps)

_ID = re.compile(r"[0-9a-f]{32}")
_HUB_ID = re.compile(r"msg_([0-9a-f]{32})")
_LEGACY_TYPES = {
    "assignment": "open",
    "info": "reply",
    "reminder": "reply",
    "requirement": "question",
    "task": "open",
    "urgent": "question",
}


def new_id() -> str:
    """A fresh id in LingMessage's form: a UUID4 as 32 lowercase hex digits."""
    return uuid.uuid4().hex


def now_iso() -> str:
    """The current time as LingMessage stamps it: ``datetime.now(UTC).isoformat()``."""
    return datetime.now(UTC).isoformat()


def is_mailbox_id(value: str) -> bool:
    """True when ``value`` is an id LingMessage accepts on write (32 lowercase hex digits)."""
    return bool(_ID.fullmatch(value))


def mailbox_id(value: str) -> str:
    """The mailbox id for a hub id: ``value`` itself when it already is one, the hex part of a hub ``msg_<hex>``
    id, else a stable digest of ``value``, so that writing the same hub message twice names the same file."""
    if is_mailbox_id(value):
        return value
    match = _HUB_ID.fullmatch(value)
    if match:
        return match.group(1)
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def parse_timestamp(value: str) -> datetime | None:
    """``value`` as an aware UTC datetime, read as LingMessage reads it (no zone: local time); None if not ISO."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC)


def _safe_name(value: str) -> bool:
    return bool(value) and "/" not in value and "\0" not in value and not value.startswith(".")


@dataclass(frozen=True)
class MailboxMessage:
    """One ``msg_<message_id>.json``. ``to_dict`` gives LingMessage's exact field set and order."""

    message_id: str
    thread_id: str
    sender: str
    recipient: str
    subject: str
    body: str
    message_type: str = "reply"
    channel: str = "ecosystem"
    timestamp: str = field(default_factory=now_iso)
    reply_to: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    source_type: str = "inferred"
    source_trace: str = ""
    delivery_status: str = "sent"
    delivered_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object: the ten fields LingMessage always writes, then the optional ones it writes only
        when they differ from their defaults."""
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "thread_id": self.thread_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "message_type": self.message_type,
            "channel": self.channel,
            "subject": self.subject,
            "body": self.body,
            "timestamp": self.timestamp,
            "source_type": self.source_type,
        }
        optional = (
            ("reply_to", self.reply_to, bool(self.reply_to)),
            ("metadata", dict(self.metadata), bool(self.metadata)),
            ("source_trace", self.source_trace, bool(self.source_trace)),
            ("delivery_status", self.delivery_status, self.delivery_status != "sent"),
            ("delivered_at", self.delivered_at, bool(self.delivered_at)),
        )
        data.update((name, value) for name, value, written in optional if written)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MailboxMessage:
        """The message in a file's JSON, values as stored (an unknown sender stays what it is, it does not become
        "all" as in LingMessage). Older files' ``recipients``/``type`` and a missing ``channel`` are read the way
        LingMessage reads them. Raises KeyError or TypeError when a required field is missing or not text."""
        recipient = data.get("recipient")
        if recipient is None:
            known = [r for r in data.get("recipients") or [] if r in IDENTITIES]
            recipient = known[0] if known else "all"
        message_type = data.get("message_type")
        if message_type is None:
            legacy = data.get("type", "open")
            message_type = _LEGACY_TYPES.get(legacy, legacy)
        raw_metadata = data.get("metadata")
        metadata = (
            {k: v for k, v in raw_metadata.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(raw_metadata, Mapping)
            else {}
        )
        message = cls(
            message_id=data["message_id"],
            thread_id=data["thread_id"],
            sender=data["sender"],
            recipient=recipient,
            subject=data["subject"],
            body=data["body"],
            message_type=message_type,
            channel=data.get("channel") or "knowledge",
            timestamp=data["timestamp"],
            reply_to=data.get("reply_to") or "",
            metadata=metadata,
            source_type=data.get("source_type") or "inferred",
            source_trace=data.get("source_trace") or "",
            delivery_status=data.get("delivery_status") or "sent",
            delivered_at=data.get("delivered_at") or "",
        )
        for name in ("message_id", "thread_id", "sender", "recipient", "subject", "body", "timestamp"):
            if not isinstance(getattr(message, name), str):
                raise TypeError(f"{name} is not text")
        return message

    @property
    def time(self) -> datetime | None:
        """The timestamp as an aware UTC datetime (None when it is not ISO 8601)."""
        return parse_timestamp(self.timestamp)

    def check(self) -> None:
        """Raise ValueError unless LingMessage's own code could have written this message."""
        for name in ("message_id", "thread_id"):
            if not is_mailbox_id(getattr(self, name)):
                raise ValueError(f"{name} must be 32 lowercase hex digits, got {getattr(self, name)!r}")
        for name, allowed in (
            ("message_type", MESSAGE_TYPES),
            ("channel", CHANNELS),
            ("delivery_status", DELIVERY_STATUSES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.source_type not in ("inferred", "generated"):
            # "verified" messages carry an HMAC under a member's secret key, which the hub does not hold.
            raise ValueError(f"source_type must be 'inferred' or 'generated', got {self.source_type!r}")
        if parse_timestamp(self.timestamp) is None:
            raise ValueError(f"timestamp is not ISO 8601: {self.timestamp!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise ValueError("metadata keys and values must be text")


@dataclass(frozen=True)
class ThreadHeader:
    """One ``thread.json`` (and, in the same shape, one entry of ``index.json``)."""

    thread_id: str
    topic: str
    channel: str = "ecosystem"
    status: str = "active"
    participants: tuple[str, ...] = ()
    created_at: str = ""
    updated_at: str = ""
    message_count: int = 0
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object, in LingMessage's field order (``summary`` only when there is one)."""
        data: dict[str, Any] = {
            "thread_id": self.thread_id,
            "topic": self.topic,
            "channel": self.channel,
            "status": self.status,
            "participants": list(self.participants),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "message_count": self.message_count,
        }
        if self.summary:
            data["summary"] = self.summary
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThreadHeader:
        """The header in a JSON object, accepting the ``id``/``title`` names LingYi's index entries use."""
        return cls(
            thread_id=str(data.get("thread_id") or data.get("id") or ""),
            topic=str(data.get("topic", data.get("title", ""))),
            channel=str(data.get("channel") or "ecosystem"),
            status=str(data.get("status") or "open"),
            participants=tuple(str(p) for p in data.get("participants") or ()),
            created_at=str(data.get("created_at", "")),
            updated_at=str(data.get("updated_at", "")),
            message_count=int(data.get("message_count") or 0),
            summary=str(data.get("summary", "")),
        )

    @property
    def active(self) -> bool:
        """True for an open discussion (LingMessage reads the status "open" as "active")."""
        return self.status in ("open", "active")


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


@dataclass(frozen=True)
class Mailbox:
    """A LingMessage mailbox directory. Writes are idempotent by id: writing a message whose file exists changes
    nothing, so a retried or duplicated write (two hub processes, a restart) leaves one copy."""

    root: Path

    @property
    def threads_dir(self) -> Path:
        return self.root / "threads"

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    @property
    def audit_path(self) -> Path:
        return self.root / "audit.log"

    def thread_path(self, thread_id: str) -> Path:
        """The thread's directory. Raises ValueError for a name that is not a plain file name."""
        if not _safe_name(thread_id):
            raise ValueError(f"not a thread id: {thread_id!r}")
        return self.threads_dir / thread_id

    def message_path(self, thread_id: str, message_id: str) -> Path:
        """The message's file. Raises ValueError for names that are not plain file names."""
        if not _safe_name(message_id):
            raise ValueError(f"not a message id: {message_id!r}")
        return self.thread_path(thread_id) / f"msg_{message_id}.json"

    # -- writing ---------------------------------------------------------------------------------------------

    def open_thread(
        self, message: MailboxMessage, *, topic: str, recipients: Iterable[str]
    ) -> tuple[ThreadHeader, MailboxMessage]:
        """Open ``message.thread_id`` with ``message`` as its first message, as LingMessage's ``open_thread`` does:
        the first message goes to "all" (whatever ``recipient`` says; LingMessage's own first messages are of type
        "open"), the header is "active" in the message's channel, with ``participants`` = recipients + sender,
        stamped with the message's time, ``message_count`` 1.

        Returns the header and message as stored. When the thread (or the message) already exists, the stored
        one is returned and nothing is rewritten. Raises ValueError for values LingMessage would refuse.
        """
        first = replace(message, recipient="all")
        first.check()
        header = ThreadHeader(
            thread_id=first.thread_id,
            topic=topic,
            channel=first.channel,
            status="active",
            participants=(*recipients, first.sender),
            created_at=first.timestamp,
            updated_at=first.timestamp,
            message_count=1,
        )
        directory = self._make_thread_dir(first.thread_id)
        opened = create_json(directory / "thread.json", header.to_dict())
        if not opened:
            header = self.thread_header(first.thread_id) or header
        self._post(first, header=header)
        if opened:
            self._audit("open_thread", first, f"topic={topic}, channel={first.channel}")
        return header, self.message(first.thread_id, first.message_id) or first

    def reply(self, message: MailboxMessage) -> MailboxMessage:
        """Add ``message`` to its existing thread, in the thread's channel, as LingMessage's ``reply`` does.

        Returns the message as stored (the existing one if its id was written before). Raises LookupError when the
        thread has no header, ValueError for values LingMessage would refuse.
        """
        header = self.thread_header(message.thread_id)
        if header is None:
            raise LookupError(f"thread {message.thread_id} not found")
        message = replace(message, channel=header.channel if header.channel in CHANNELS else "ecosystem")
        self.post(message)
        return self.message(message.thread_id, message.message_id) or message

    def post(self, message: MailboxMessage) -> bool:
        """Write ``message`` into its thread's directory (``reply`` first checks the thread exists), and count it in
        the index and the audit log.

        Returns True when it was written, False when a message with that id was already there (nothing changes).
        Raises ValueError for values LingMessage would refuse.
        """
        message.check()
        self._make_thread_dir(message.thread_id)
        return self._post(message, header=None)

    def _make_thread_dir(self, thread_id: str) -> Path:
        ensure_root(self.root)
        directory = self.thread_path(thread_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _post(self, message: MailboxMessage, *, header: ThreadHeader | None) -> bool:
        if not create_json(self.message_path(message.thread_id, message.message_id), message.to_dict()):
            return False

        def count(threads: list[dict[str, Any]]) -> None:
            entry = find_entry(threads, message.thread_id)
            if entry is not None:
                entry["updated_at"] = now_iso()
                entry["message_count"] = int(entry.get("message_count") or 0) + 1
                if header is not None:
                    entry.update(
                        topic=header.topic,
                        channel=header.channel,
                        status=header.status,
                        participants=list(header.participants),
                    )
                return
            known = header or self.thread_header(message.thread_id)
            if known is not None:
                # LingMessage leaves a thread missing from the index missing; listing it again costs nothing.
                count_now = len(list(self.thread_path(message.thread_id).glob("msg_*.json")))
                threads.append({**known.to_dict(), "message_count": max(known.message_count, count_now)})

        update_index(self.root, count)
        self._audit("post_message", message, f"source_type={message.source_type}, signed=False")
        return True

    def _audit(self, operation: str, message: MailboxMessage, details: str) -> None:
        """Append an audit line chained to the previous one exactly as LingMessage chains them."""
        entry = {
            "timestamp": now_iso(),
            "operation": operation,
            "thread_id": message.thread_id,
            "message_id": message.message_id,
            "sender": message.sender,
            "details": details,
        }
        with FileLock(self.audit_path):
            previous = _last_chain_hash(self.audit_path)
            chained = previous + json.dumps(entry, sort_keys=True, separators=(",", ":"))
            entry["_chain_hash"] = hmac.new(AUDIT_CHAIN_KEY, chained.encode("utf-8"), hashlib.sha256).hexdigest()
            with self.audit_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(entry, ensure_ascii=False) + "\n")
            with contextlib.suppress(OSError):
                os.chmod(self.audit_path, FILE_MODE)

    # -- reading ---------------------------------------------------------------------------------------------

    def thread_header(self, thread_id: str) -> ThreadHeader | None:
        """The thread's header, or None when it has none (or it cannot be read)."""
        try:
            return ThreadHeader.from_dict(read_json(self.thread_path(thread_id) / "thread.json"))
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def message(self, thread_id: str, message_id: str) -> MailboxMessage | None:
        """The message, or None when there is no readable file for it."""
        try:
            return MailboxMessage.from_dict(read_json(self.message_path(thread_id, message_id)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def thread_messages(self, thread_id: str) -> list[MailboxMessage]:
        """The thread's readable messages, oldest first (by parsed timestamp, then id; LingMessage's own sort by
        timestamp text misplaces stamps without microseconds)."""
        try:
            paths = list(self.thread_path(thread_id).glob("msg_*.json"))
        except ValueError:
            return []
        messages = []
        for path in paths:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                messages.append(MailboxMessage.from_dict(read_json(path)))
        return sorted(messages, key=_order)

    def list_threads(self, *, status: str | None = None) -> list[ThreadHeader]:
        """The threads the index lists (LingYi's entries included), optionally only those with ``status``;
        "active" also matches "open", as in LingMessage."""
        threads = load_index(self.root).get("threads")
        entries = threads if isinstance(threads, list) else []
        headers = [ThreadHeader.from_dict(t) for t in entries if isinstance(t, dict)]
        if status == "active":
            return [h for h in headers if h.active]
        return [h for h in headers if status is None or h.status == status]

    def new_messages(self, cursor: Cursor, *, overlap: float = DEFAULT_OVERLAP, now: float | None = None) -> Scan:
        """The messages that appeared since ``cursor`` (every message when it is fresh), oldest first.

        Files are found by modification time, not by their timestamps, so a message stamped earlier but written
        later is still found; the scan looks back ``overlap`` seconds past the previous one and skips what the
        cursor has seen. A file rewritten in place (LingMessage's ``ack_message``) after its key left the window
        is reported again: callers dedupe by message id. The hub's own writes are reported too.
        """
        started = time.time() if now is None else now
        since = cursor.scanned_at - overlap if cursor.scanned_at else None
        keep_after = started - overlap
        found: list[MailboxMessage] = []
        unreadable: list[Path] = []
        seen: set[str] = set()
        for path, mtime in self._changed_message_files(since):
            key = f"{path.parent.name}/{path.name[len('msg_') : -len('.json')]}"
            if key not in cursor.seen:
                try:
                    found.append(MailboxMessage.from_dict(read_json(path)))
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    unreadable.append(path)
                    continue
            if mtime >= keep_after:
                seen.add(key)
        cursor = Cursor(scanned_at=started, seen=frozenset(seen))
        return Scan(messages=tuple(sorted(found, key=_order)), cursor=cursor, unreadable=tuple(unreadable))

    def cursor_at_end(self, *, now: float | None = None) -> Cursor:
        """A cursor after every message present now: start here to pick up only what members post from now on."""
        return self.new_messages(Cursor(), now=now).cursor

    def _changed_message_files(self, since: float | None) -> list[tuple[Path, float]]:
        """Message files (with their mtimes) changed at or after ``since`` (all of them for None)."""
        try:
            directories = list(os.scandir(self.threads_dir))
        except FileNotFoundError:
            return []
        changed = []
        for directory in directories:
            try:
                if not directory.is_dir() or (since is not None and directory.stat().st_mtime < since):
                    # A new or replaced file changes its directory's mtime: an older directory has nothing new.
                    continue
                entries = list(os.scandir(directory.path))
            except OSError:
                continue
            for entry in entries:
                if not (entry.name.startswith("msg_") and entry.name.endswith(".json")):
                    continue
                try:
                    mtime = entry.stat().st_mtime
                except OSError:
                    continue
                if since is None or mtime >= since:
                    changed.append((Path(entry.path), mtime))
        return changed


def load_index(root: Path) -> dict[str, Any]:
    """The index of the mailbox at ``root``, falling back to its backup, then to an empty index (as LingMessage)."""
    for path in (root / "index.json", root / "index.json.backup"):
        if not path.exists():
            continue
        with contextlib.suppress(OSError, ValueError):
            data = read_json(path)
            if isinstance(data, dict):
                return data
    return {"threads": [], "last_updated": now_iso()}


def update_index(root: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    """Apply ``change`` to the thread list of ``root``'s index under LingMessage's index lock, keeping the backup
    copy LingMessage keeps, and write it back whole."""
    ensure_root(root)
    index_path = root / "index.json"
    with FileLock(index_path):
        index = load_index(root)
        threads = index.get("threads")
        if not isinstance(threads, list):
            threads = []
        change(threads)
        index["threads"] = threads
        index["last_updated"] = now_iso()
        if index_path.exists():
            with contextlib.suppress(OSError):
                shutil.copy2(index_path, root / "index.json.backup")
        write_json(index_path, index)


def find_entry(threads: list[dict[str, Any]], thread_id: str) -> dict[str, Any] | None:
    """The index entry for ``thread_id`` (matched by ``thread_id``, else LingYi's ``id``), or None."""
    for entry in threads:
        if isinstance(entry, dict) and (entry.get("thread_id") or entry.get("id", "")) == thread_id:
            return entry
    return None


def _order(message: MailboxMessage) -> tuple[datetime, str]:
    return (message.time or datetime.min.replace(tzinfo=UTC), message.message_id)


def _last_chain_hash(path: Path) -> str:
    """The ``_chain_hash`` of the log's last line ("" for an empty or missing log, or an unreadable last line)."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            chunk = 65536
            while True:
                start = max(0, size - chunk)
                log.seek(start)
                tail = log.read(size - start)
                lines = tail.rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or start == 0:
                    break
                chunk *= 4
    except FileNotFoundError:
        return ""
    try:
        return str(json.loads(lines[-1]).get("_chain_hash", ""))
    except (ValueError, AttributeError):
        return ""
