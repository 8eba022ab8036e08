"""Files only the hub's own user may read: the data directory (0700) and what is written into it (0600 from
the moment it exists, never created readable and narrowed afterwards).

The data directory holds the database (sessions, notify secrets, endpoint keys, messages), the secret key, the
address and credentials of the running hub's Redis (``runhub.json``), the embedded Valkey's socket and
configuration and the metrics files. ``manage.py`` and ``runhub`` also set the umask to ``PRIVATE_UMASK``, so
what libraries create there (SQLite, prometheus-client, Valkey) is 0600 as well.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

# New files 0600 and directories 0700, whoever creates them.
PRIVATE_UMASK = 0o077


def private_directory(path: Path) -> Path:
    """``path`` created (with its parents) if missing, and readable by this user only: an existing one is narrowed
    to 0700 when this user owns it, unless it is a shared directory by nature (sticky, as ``/tmp``) or the home
    directory. Returns ``path``."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid() and not _shared(path):
        path.chmod(0o700)
    return path


def _shared(directory: Path) -> bool:
    """Whether ``directory`` is shared by nature (sticky, as ``/tmp``, or the home directory): left as it is."""
    if directory.stat().st_mode & stat.S_ISVTX:
        return True
    try:
        return directory.resolve() == Path.home().resolve()
    except (RuntimeError, KeyError):  # no home directory known
        return False


def narrow_files(directory: Path) -> None:
    """Take group and other access away from the regular files directly in ``directory`` that this user owns
    (what an older version left readable to everyone); nothing in a directory shared by nature."""
    if _shared(directory):
        return
    for entry in os.scandir(directory):
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and info.st_mode & 0o077 and info.st_uid == os.getuid():
                os.chmod(entry.path, info.st_mode & 0o700)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (readers see the old or the new file): written into a temporary file
    created 0600 beside it, then renamed over it."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def create_private_once(path: Path, text: str) -> str:
    """The content of ``path``, which is created 0600 with ``text`` if it does not exist yet. Processes starting
    at once agree: the first file linked into place wins, and every process reads that one."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink()
    return path.read_text(encoding="utf-8")
