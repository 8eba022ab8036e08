"""What can go wrong, as exceptions a caller can tell apart.

Every exception of the library derives from ``LingHubError``. The bridge's close codes map onto them:
4001 → ``AuthError``, 4002 → ``ConflictError``; an HTTP answer the hub gave for good (4xx) →
``ApiError``; a hub that cannot be reached or keeps failing after the retries → ``HubUnavailable``.
"""

from __future__ import annotations

from linghub.models import Json


class LingHubError(Exception):
    """The base of every error this library raises."""


class AuthError(LingHubError):
    """The hub refused the member's token or backend: HTTP 401, or bridge close code 4001.

    ``reason`` is the hub's own explanation (the ``error`` frame sent before the close, or the HTTP body);
    ``code`` is 401 or 4001. Reconnecting cannot help, so the connection loop stops.
    """

    def __init__(self, reason: str, *, code: int) -> None:
        super().__init__(f"{reason} (hub answered {code})")
        self.reason = reason
        self.code = code


class ConflictError(LingHubError):
    """The backend is held by another connection (bridge close code 4002), usually a second copy of the same
    agent. ``reason`` is the hub's explanation. With ``on_conflict="stop"`` (the default) the connection
    loop stops and raises this instead of taking the backend back and forth with the other copy."""

    def __init__(self, reason: str, *, backend_id: str | None) -> None:
        super().__init__(
            f"{reason} (close code 4002): another connection holds backend {backend_id!r}, most likely a second "
            "copy of this agent; not reconnecting (on_conflict='retry' would take it back)"
        )
        self.reason = reason
        self.backend_id = backend_id


class HandshakeError(LingHubError):
    """The WebSocket handshake was refused with an HTTP status that retrying does not fix (400, 401, 403,
    404, …): a wrong URL, a foreign Origin, a host name the hub does not serve."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(f"the hub refused the WebSocket handshake with HTTP {status}{': ' + detail if detail else ''}")
        self.status = status


class ApiError(LingHubError):
    """An HTTP API answer that is final: bad input (400), not allowed (403), unknown recipient (404), an
    idempotency key reused for another message (409), … ``status`` is the HTTP status, ``reason`` the hub's
    ``error`` text, ``body`` the decoded JSON body (or None)."""

    def __init__(self, status: int, reason: str, body: Json | None = None) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class HubUnavailable(LingHubError):
    """The hub could not be reached, or kept answering 5xx / 429, through every retry.

    ``attempts`` is how many requests were made; ``status`` the last HTTP status (None after connection
    errors); ``retry_after`` the hub's last ``Retry-After`` in seconds, if any. A send that ends here may or
    may not have been accepted: send again with the same ``idempotency_key`` (this exception's, set by
    ``send``) and the hub answers with the first result instead of sending twice."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        status: int | None = None,
        retry_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.retry_after = retry_after
        self.idempotency_key = idempotency_key


class NotConnected(LingHubError):
    """A frame (a push, a reply) needs the bridge socket and there is none right now."""
