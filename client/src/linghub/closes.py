"""How a bridge connection ended, and what the member's connection loop does about it.

4001 (refused) raises ``AuthError`` with the hub's reason; 4002 (another connection holds the backend) raises
``ConflictError`` unless ``on_conflict="retry"``; every other close (1000, 1001, 1006, 1011, 1012, …), a refused
or dropped TCP connection and a handshake the hub answered with 5xx reconnect after a capped exponential
back-off with jitter. client/README.md has the table.

A close code alone stops nothing: anything between the member and the hub (a proxy, a forged frame on an
unencrypted connection) can send 4001 or 4002. The loop stops for good only when the hub said why in the
``error`` frame it sends before closing, and the reason is one of the hub's own: the token or the backend
refused or revoked (4001), the backend held by another connection (4002). Any other 4001 or 4002 is retried
after the back-off (a 4002 after ``reconnect.maximum``, as with ``on_conflict="retry"``).
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

# What the hub's ``error`` frame says before it closes with 4001 (hub/bridge/socket_auth.py ``backend_refusal``, the
# consumer's refusal of a token, layer_events.py's revocation) and with 4002 (hub/bridge/takeover.py, the
# consumer's ``replaced``): the words that make a close final. tests/client/test_client_closes.py checks them against
# the hub's own texts.
REFUSED = (
    "the member token is not valid",
    "access revoked",
    "is disabled",
    "belongs to another member",
    "wrong secret",
    "unknown backend",
    "needs its member token",
    "from loopback addresses only",
    "needs a member token",
)
HELD = ("held by another connection", "registered by a newer connection", "registered by another connection")


@dataclass(frozen=True)
class Close:
    """How a bridge connection ended: ``code`` (None when it never opened), the close frame's ``reason``,
    the hub's last ``error`` frame before it (``hub_error``), and whether it had registered."""

    code: int | None
    reason: str = ""
    hub_error: str = ""
    registered: bool = False

    @property
    def refused(self) -> bool:
        """A 4001 the hub explained: the token or the backend was refused or revoked (retrying cannot help)."""
        return self.code == CLOSE_UNAUTHORIZED and any(words in self.hub_error for words in REFUSED)

    @property
    def held_elsewhere(self) -> bool:
        """A 4002 the hub explained: another connection holds the backend."""
        return self.code == CLOSE_REPLACED and any(words in self.hub_error for words in HELD)

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
    if close.refused:
        raise AuthError(close.hub_error, code=CLOSE_UNAUTHORIZED)
    if close.code == CLOSE_UNAUTHORIZED:
        logger.warning("bridge %s: %s, not a refusal the hub explained; trying again", label, close.describe())
        return reconnect.delay(attempt)
    if close.code == CLOSE_REPLACED:
        if not close.held_elsewhere:
            logger.warning("bridge %s: %s, not a takeover the hub explained; trying again", label, close.describe())
            return reconnect.maximum
        if on_conflict == "stop":
            raise ConflictError(close.hub_error, backend_id=backend_id)
        logger.warning("bridge %s: taken over by another connection (%s); taking it back", label, close.hub_error)
        return reconnect.maximum
    return reconnect.delay(attempt)
