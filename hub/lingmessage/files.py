"""File primitives shared with LingMessage: its lock-file convention, its atomic JSON writes, its size limit.

LingMessage's processes and the members' own code read and write the mailbox directory at the same time as the
hub, so the hub takes the very same locks (``<file>.lock`` beside the file, ``flock`` on it, stale after 60 s) and
replaces files the same way (a temporary file in the same directory, then ``os.replace``), so that a reader never
sees half a file and a LingMessage writer and a hub writer never update ``index.json`` at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
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


# How the hub opens a file of the mailbox: never through a symbolic link (anyone who can write the mailbox could
# point one anywhere), never waiting on a FIFO or a device (O_NONBLOCK: such an open returns at once, and the file's
# type is then checked on the descriptor).
OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LockTimeout(TimeoutError):
    """The lock stayed taken for the whole timeout."""


class UnsafeFile(ValueError):
    """A mailbox file the hub does not read or write: a symbolic link, a FIFO, a device, a directory, or over
    ``MAX_JSON_SIZE``. The message says which and where."""


def open_regular(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """A descriptor of the regular file ``path`` opened with ``flags`` (plus ``OPEN_FLAGS``), never through a
    symbolic link. Raises ``UnsafeFile`` for a link or a file that is not a regular one, OSError otherwise."""
    try:
        fd = os.open(path, flags | OPEN_FLAGS, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing
            raise UnsafeFile(f"{path} is not a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeFile(f"{path} is not a regular file")
    return fd


def real_directory(path: Path) -> Path:
    """``path`` when it is a directory itself, not a symbolic link to one; raises ``UnsafeFile`` otherwise (the hub
    never writes through a link out of the mailbox)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFile(f"{path} is not a directory of the mailbox (a symbolic link?)")
    return path


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
            if time.time() - os.lstat(self.lock_path).st_mtime > STALE_LOCK_AGE:
                self.lock_path.unlink(missing_ok=True)

    def _try_lock(self) -> int | None:
        """The locked descriptor, or None when the lock is busy (or changed hands while we took it)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError:  # busy, or a symbolic link planted there (removed once stale, by its own age)
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
    """The parsed content of ``path``. Raises OSError when unreadable, ``UnsafeFile`` (a ValueError) for a
    symbolic link, a FIFO, a device or a file over ``MAX_JSON_SIZE`` (nothing of it read), ValueError when nested
    too deep to decode or not JSON."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(fd).st_size > MAX_JSON_SIZE:
            raise UnsafeFile(f"{path} is larger than {MAX_JSON_SIZE} bytes")
        data = handle.read(MAX_JSON_SIZE + 1)
    if len(data) > MAX_JSON_SIZE:  # grew while read
        raise UnsafeFile(f"{path} is larger than {MAX_JSON_SIZE} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"{path} is nested too deep to decode") from None


def ensure_root(root: Path) -> None:
    """Create the mailbox root if missing; it gets mode 0700, as LingMessage sets it on every index write."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(root, DIR_MODE)
