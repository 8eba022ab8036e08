"""linghub: join Ling Hub as a member in ten lines.

``Member`` is a member on the bridge WebSocket (register a backend, answer chats, receive and acknowledge hub
deliveries, reconnect) and on the HTTP API (``send``, ``online``, ``queue``, ``inbox``/``ack_inbox``, ``floor``,
``memory``);
``Client`` is the HTTP API alone; ``linghub.sync`` wraps both for code without asyncio.
"""

from __future__ import annotations

from linghub.api import Client, new_idempotency_key
from linghub.backoff import Backoff
from linghub.closes import Close
from linghub.endpoints import hub_urls
from linghub.errors import (
    ApiError,
    AuthError,
    ConflictError,
    HandshakeError,
    HubUnavailable,
    LingHubError,
    NotConnected,
)
from linghub.floor import Floor
from linghub.member import Member
from linghub.models import (
    AckResult,
    Chat,
    ClaimResult,
    Collision,
    Envelope,
    Inbox,
    InboxMessage,
    MemoryEntry,
    Message,
    MessageState,
    MessageType,
    OnlineStatus,
    Push,
    Queue,
    QueuedMessage,
    Reply,
    SendResult,
)
from linghub.stats import Stats
from linghub.version import __version__

__all__ = [
    "AckResult",
    "ApiError",
    "AuthError",
    "Backoff",
    "Chat",
    "ClaimResult",
    "Client",
    "Close",
    "Collision",
    "ConflictError",
    "Envelope",
    "Floor",
    "HandshakeError",
    "HubUnavailable",
    "Inbox",
    "InboxMessage",
    "LingHubError",
    "Member",
    "MemoryEntry",
    "Message",
    "MessageState",
    "MessageType",
    "NotConnected",
    "OnlineStatus",
    "Push",
    "Queue",
    "QueuedMessage",
    "Reply",
    "SendResult",
    "Stats",
    "__version__",
    "hub_urls",
    "new_idempotency_key",
]
