"""What a running ``runhub`` tells the other commands run on its data directory: where its channel layer is.

``runhub`` starts an embedded Redis on a free port and gives its address only to its own children. A command run
in another terminal beside it (``manage.py member disable …``) must still reach the hub's sockets (to close those
of a disabled member), so ``runhub`` writes the address into ``<HUB_DATA_DIR>/runhub.json`` (mode 0600, with its
pid) while it runs and removes it when it stops; ``runhub_redis()`` reads it, ignoring a file left by a ``runhub``
that is no longer running.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from django.conf import settings

STATE_FILE = "runhub.json"


def state_path() -> Path:
    return Path(settings.DATA_DIR) / STATE_FILE


def runhub_state_write(*, redis_url: str, redis_prefix: str) -> Path:
    """Say where this ``runhub``'s channel layer is; returns the file written."""
    path = state_path()
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), "redis_url": redis_url, "redis_prefix": redis_prefix}))
    temporary.chmod(0o600)
    temporary.replace(path)
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
