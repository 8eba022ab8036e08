"""LingMessage's on-disk mailbox, written and read the way LingMessage's own ``Mailbox`` does it.

Layout under the mailbox root (LingMessage's default is ``~/.lingmessage``)::

    index.json                                  {"threads": [<thread header>, ...], "last_updated": <iso>}
    index.json.backup                           a copy of index.json taken before each rewrite
    audit.log                                   one JSON object a line, chained by an HMAC
    threads/<thread_id>/thread.json             the thread header, written once when the thread opens
    threads/<thread_id>/msg_<message_id>.json   one message a file

Files are mode 0600 and the root 0700, so the hub must run as the same OS user as the members that share it.
Only the standard library is used: the channel that builds on this passes plain values in and out. The pieces:
``ids`` (ids, enumerations, timestamps), ``records`` (the message and header records), ``index`` (the shared
index and the audit log), ``scan`` (finding new messages with a durable cursor); their names are re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hub.lingmessage.files import UnsafeFile, create_json, ensure_root, read_json, real_directory
from hub.lingmessage.ids import (  # noqa: F401  (re-exported)
    CHANNELS,
    DELIVERY_STATUSES,
    IDENTITIES,
    MESSAGE_TYPES,
    SOURCE_TYPES,
    THREAD_STATUSES,
    is_mailbox_id,
    mailbox_id,
    new_id,
    now_iso,
    parse_timestamp,
    safe_name,
)
from hub.lingmessage.index import AUDIT_CHAIN_KEY, audit_append, find_entry, load_index, update_index  # noqa: F401
from hub.lingmessage.records import MailboxMessage, ThreadHeader
from hub.lingmessage.scan import DEFAULT_OVERLAP, Cursor, Scan, changed_message_files, order

logger = logging.getLogger(__name__)


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

    def thread_path(self, thread_id: str) -> Path:
        """The thread's directory. Raises ValueError for a name that is not a plain file name."""
        if not safe_name(thread_id):
            raise ValueError(f"not a thread id: {thread_id!r}")
        return self.threads_dir / thread_id

    def message_path(self, thread_id: str, message_id: str) -> Path:
        """The message's file. Raises ValueError for names that are not plain file names."""
        if not safe_name(message_id):
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
            audit_append(self.root, "open_thread", first, f"topic={topic}, channel={first.channel}")
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
        """The thread's directory, made if missing. Raises ``UnsafeFile`` when it or ``threads/`` is a symbolic
        link (or not a directory): nothing is written through a link out of the mailbox."""
        ensure_root(self.root)
        directory = self.thread_path(thread_id)
        with contextlib.suppress(FileExistsError):
            self.threads_dir.mkdir()
        real_directory(self.threads_dir)
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        return real_directory(directory)

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
        audit_append(self.root, "post_message", message, f"source_type={message.source_type}, signed=False")
        return True

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
        return sorted(messages, key=order)

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
        for path, mtime in changed_message_files(self.threads_dir, since):
            thread_id, message_id = path.parent.name, path.name[len("msg_") : -len(".json")]
            key = f"{thread_id}/{message_id}"
            if key not in cursor.seen:
                try:
                    message = MailboxMessage.from_dict(read_json(path))
                except UnsafeFile as exc:  # a link, FIFO, device or oversized file: never read, not tried again
                    logger.warning("mailbox: skipped %s", exc)
                    message = None
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    unreadable.append(path)
                    continue
                if message is not None and (message.thread_id, message.message_id) != (thread_id, message_id):
                    # Its ids name where receivers look it up: they must be the ones its place in the mailbox says.
                    logger.warning(
                        "mailbox: skipped %s: it names thread %r and message %r", path, message.thread_id,
                        message.message_id,
                    )  # fmt: skip
                    message = None
                if message is not None:
                    found.append(message)
            if mtime >= keep_after:
                seen.add(key)
        cursor = Cursor(scanned_at=started, seen=frozenset(seen))
        return Scan(messages=tuple(sorted(found, key=order)), cursor=cursor, unreadable=tuple(unreadable))

    def cursor_at_end(self, *, now: float | None = None) -> Cursor:
        """A cursor after every message present now: start here to pick up only what members post from now on."""
        return self.new_messages(Cursor(), now=now).cursor
