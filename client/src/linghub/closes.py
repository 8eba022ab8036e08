"""How a bridge connection ended, and what the member's connection loop does about it.

4001 (refused) raises ``AuthError`` with the hub's reason; 4002 (another connection holds the backend) raises
``ConflictError`` unless ``on_conflict="retry"``; every other close (1000, 1001, 1006, 1011, 1012, …), a refused
or dropped TCP connection and a handshake the hub answered with 5xx reconnect after a capped exponential
back-off with jitter. client/README.md has the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from linghub.backoff import Backoff
from linghub.errors import AuthError, ConflictError, HandshakeError

logger = logging.getLogger("linghub")

CLOSE_UNAUTHORIZED = 4001
CLOSE_REPLACED = 4002
# Handshake answers that retrying does not fix: wrong path, refused Origin or Host, no WebSocket there.
FATAL_HANDSHAKE = frozenset({400, 401, 403, 404, 405, 410, 426})

OnConflict = Literal["stop", "retry"]


@dataclass(frozen=True)
class Close:
    """How a bridge connection ended: ``code`` (None when it never opened), the close frame's ``reason``,
    the hub's last ``error`` frame before it (``hub_error``), and whether it had registered."""

    code: int | None
    reason: str = ""
    hub_error: str = ""
    registered: bool = False

    def describe(self) -> str:
        what = f"close code {self.code}" if self.code is not None else "no connection"
        detail = self.hub_error or self.reason
        return f"{what}: {detail}" if detail else what


def refused_handshake(status: int, ws_url: str) -> Close:
    """The ``Close`` of a handshake the hub answered with HTTP ``status`` (a 5xx or 429: try again later);
    raises ``AuthError`` on 401 and ``HandshakeError`` on the answers retrying cannot fix."""
    if status == 401:
        raise AuthError("the hub refused the WebSocket handshake", code=401)
    if status in FATAL_HANDSHAKE:
        raise HandshakeError(status, ws_url)
    return Close(None, reason=f"handshake answered HTTP {status}")


def wait_after(
    close: Close, attempt: int, *, reconnect: Backoff, on_conflict: OnConflict, backend_id: str | None, label: str
) -> float:
    """The wait before the next connection after ``close`` (``attempt``: failures since the last
    registration); raises when the loop must stop (the exception is the report: ``run()`` raises it to its
    caller rather than logging it)."""
    reason = close.hub_error or close.reason
    if close.code == CLOSE_UNAUTHORIZED:
        raise AuthError(reason or "the hub refused this connection", code=CLOSE_UNAUTHORIZED)
    if close.code == CLOSE_REPLACED:
        if on_conflict == "stop":
            raise ConflictError(reason or "the backend was registered by another connection", backend_id=backend_id)
        logger.warning("bridge %s: taken over by another connection (%s); taking it back", label, reason)
        return reconnect.maximum
    return reconnect.delay(attempt)
