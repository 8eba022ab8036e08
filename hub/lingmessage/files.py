"""File primitives shared with LingMessage: its lock-file convention, its atomic JSON writes, its size limit.

LingMessage's processes and the members' own code read and write the mailbox directory at the same time as the
hub, so the hub takes the very same locks (``<file>.lock`` beside the file, ``flock`` on it, stale after 60 s) and
replaces files the same way (a temporary file in the same directory, then ``os.replace``), so that a reader never
sees half a file and a LingMessage writer and a hub writer never update ``index.json`` at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

LOCK_TIMEOUT = 10.0  # seconds LingMessage waits for a lock before giving up
STALE_LOCK_AGE = 60.0  # a lock file older than this is left over from a crash (LingMessage removes it too)
LOCK_POLL = 0.01  # LingMessage retries a busy lock every 10 ms
MAX_JSON_SIZE = 10 * 1024 * 1024  # LingMessage refuses to read larger files
FILE_MODE = 0o600  # every mailbox file LingMessage writes
DIR_MODE = 0o700  # the mailbox root


class LockTimeout(TimeoutError):
    """The lock stayed taken for the whole timeout."""


class FileLock:
    """An exclusive lock on ``path`` that LingMessage's own ``_FileLock`` respects (and vice versa).

    The lock is ``flock`` on ``<path>.lock``. Two things are stricter than LingMessage, without changing the
    convention: after taking the lock it checks that the lock file is still the one at the path (a holder unlinks
    it on release, so a lock on an unlinked file would exclude nobody), and it unlinks the file *before*
    unlocking, so a waiter of ours never ends up holding a lock on a file that is gone.
    """

    def __init__(self, path: Path, *, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_path = path.with_name(f"{path.name}.lock")
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self._remove_stale()
        deadline = time.monotonic() + self.timeout
        while True:
            fd = self._try_lock()
            if fd is not None:
                self._fd = fd
                return self
            if time.monotonic() >= deadline:
                raise LockTimeout(f"could not lock {self.path} within {self.timeout:g}s")
            time.sleep(LOCK_POLL)

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _remove_stale(self) -> None:
        with contextlib.suppress(OSError):
            if time.time() - self.lock_path.stat().st_mtime > STALE_LOCK_AGE:
                self.lock_path.unlink(missing_ok=True)

    def _try_lock(self) -> int | None:
        """The locked descriptor, or None when the lock is busy (or changed hands while we took it)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            current = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        # A fresh mtime, as LingMessage's touch() gives it: nobody may take this lock for a stale one.
        os.utime(fd)
        return fd


def dumps(data: Any) -> str:
    """``data`` as LingMessage writes it: UTF-8 text (not ASCII escapes), two-space indent, no trailing newline."""
    return json.dumps(data, ensure_ascii=False, indent=2)


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file in the same directory, fsync, rename), mode 0600."""
    _write(path, data, exclusive=False)


def create_json(path: Path, data: Any) -> bool:
    """Create ``path`` with ``data`` atomically unless it exists. Returns False (and leaves it alone) if it did.

    The complete file is linked into place, so of two writers racing for the same name exactly one succeeds and
    no reader sees a partial file.
    """
    return _write(path, data, exclusive=True)


def _write(path: Path, data: Any, *, exclusive: bool) -> bool:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dumps(data))
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), FILE_MODE)
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_json(path: Path) -> Any:
    """The parsed content of ``path``. Raises OSError when unreadable, ValueError when too large, nested too
    deep to decode, or not JSON."""
    size = path.stat().st_size
    if size > MAX_JSON_SIZE:
        raise ValueError(f"{path} is larger than {MAX_JSON_SIZE} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{path} is nested too deep to decode") from None


def ensure_root(root: Path) -> None:
    """Create the mailbox root if missing; it gets mode 0700, as LingMessage sets it on every index write."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(root, DIR_MODE)
