"""The shared ``index.json`` (updated under LingMessage's lock, with its backup copy) and the chained
``audit.log``, written exactly as LingMessage writes them."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.lingmessage.files import FILE_MODE, FileLock, ensure_root, open_regular, read_json, write_json
from hub.lingmessage.ids import now_iso
from hub.lingmessage.records import MailboxMessage

AUDIT_CHAIN_KEY = b"lingmessage-audit-chain-v1"


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


def audit_append(root: Path, operation: str, message: MailboxMessage, details: str) -> None:
    """Append an audit line to ``root``'s ``audit.log``, chained to the previous one exactly as LingMessage chains
    them."""
    path = root / "audit.log"
    entry = {
        "timestamp": now_iso(),
        "operation": operation,
        "thread_id": message.thread_id,
        "message_id": message.message_id,
        "sender": message.sender,
        "details": details,
    }
    with FileLock(path):
        previous = _last_chain_hash(path)
        chained = previous + json.dumps(entry, sort_keys=True, separators=(",", ":"))
        entry["_chain_hash"] = hmac.new(AUDIT_CHAIN_KEY, chained.encode("utf-8"), hashlib.sha256).hexdigest()
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # never through a link, a FIFO
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
            with contextlib.suppress(OSError):
                os.fchmod(fd, FILE_MODE)


# -- reading ---------------------------------------------------------------------------------------------


def _last_chain_hash(path: Path) -> str:
    """The ``_chain_hash`` of the log's last line ("" for an empty or missing log, or an unreadable last line)."""
    try:
        with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as log:
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
