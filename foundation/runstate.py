"""What a running ``runhub`` tells the other commands run on its data directory: that it runs, and where its
channel layer is.

One ``runhub`` per data directory: it holds an exclusive lock on ``<HUB_DATA_DIR>/runhub.lock`` (``flock``) for its
whole life, and a second one finds it taken and refuses to start before it touches anything (``RunhubLock``). The
kernel drops the lock with the process, however it ends.

``runhub`` starts an embedded Redis with a generated password and gives its address and credentials only to its
own children (in their environment). A command run in another terminal beside it (``manage.py member disable …``)
must still reach the hub's sockets (to close those of a disabled member), so ``runhub`` writes them into
``<HUB_DATA_DIR>/runhub.json`` (created 0600, with its pid) while it runs and removes it when it stops;
``runhub_redis()`` reads it, ignoring a file left by a ``runhub`` that is no longer running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from django.conf import settings

from foundation.private_files import write_private

STATE_FILE = "runhub.json"
LOCK_FILE = "runhub.lock"


class RunhubRunning(Exception):
    """Another ``runhub`` holds the data directory's lock (``pid``: its pid, when it wrote it)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


class RunhubLock:
    """The data directory's ``runhub`` lock: ``acquire()`` takes it or raises ``RunhubRunning``; it is held until
    ``release()`` or the process's end. The file holds the holder's pid, for the refusal's message. A process
    forked from the holder closes its copy of the descriptor at once: the lock stays the holder's alone, and a
    child that outlives it does not keep the data directory locked."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None
        os.register_at_fork(after_in_child=self._forget)

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise RunhubRunning(int(holder) if holder.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops the lock
            self._fd = None

    def handed_over(self) -> int:
        """The lock's descriptor, kept open across ``exec`` of this process (``runhub``'s first step hands the lock
        to its second, the same process, with ``adopt``)."""
        assert self._fd is not None, "not held"
        os.set_inheritable(self._fd, True)
        return self._fd

    @classmethod
    def adopt(cls, data_dir: Path, fd: int) -> RunhubLock:
        """The lock this process held before it executed itself again (``handed_over``'s descriptor ``fd``)."""
        lock = cls(data_dir)
        if not os.path.samestat(os.fstat(fd), os.stat(lock.path)):
            raise RuntimeError(f"descriptor {fd} is not the lock {lock.path}")
        os.set_inheritable(fd, False)
        lock._fd = fd
        return lock

    def _forget(self) -> None:
        """In a forked child: close the inherited descriptor (not ``LOCK_UN``, which would unlock the holder's)."""
        self.release()


def state_path() -> Path:
    return Path(settings.DATA_DIR) / STATE_FILE


def runhub_state_write(*, redis_url: str, redis_prefix: str) -> Path:
    """Say where this ``runhub``'s channel layer is (``redis_url`` with its credentials); returns the file written
    (0600 from its creation)."""
    path = state_path()
    write_private(path, json.dumps({"pid": os.getpid(), "redis_url": redis_url, "redis_prefix": redis_prefix}))
    return path


def runhub_state_clear() -> None:
    """This ``runhub`` stops: remove its file (not one written since by another ``runhub``)."""
    state = _read()
    if state is not None and state.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            state_path().unlink()


def runhub_redis() -> tuple[str, str] | None:
    """(Redis URL, key prefix) of the ``runhub`` running on this data directory, or None when none runs."""
    state = _read()
    if not state or not isinstance(state.get("redis_url"), str) or not _alive(state.get("pid")):
        return None
    return state["redis_url"], str(state.get("redis_prefix") or settings.REDIS_PREFIX)


def _read() -> dict | None:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
