"""The typed shapes of what the hub sends and answers. Each keeps the frame or body it came from in ``raw``
so that fields a newer hub adds are never out of reach."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

MessageType = Literal["discussion", "chat", "notification"]


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp from the hub as a datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _str(data: dict, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _opt_str(data: dict, name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Chat:
    """A user's chat for this backend (``{"type":"chat",…}``). ``sender`` is the user's connection id (the
    frame's ``from``); ``message_id`` is set when the chat waited in the hub's offline queue."""

    request_id: str
    text: str
    sender: str = ""
    audio: str | None = None
    timestamp: datetime | None = None
    message_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict) -> Chat:
        return cls(
            request_id=_str(frame, "request_id"),
            text=_str(frame, "text"),
            sender=_str(frame, "from"),
            audio=_opt_str(frame, "audio"),
            timestamp=parse_time(frame.get("timestamp")),
            message_id=_opt_str(frame, "message_id"),
            raw=frame,
        )


@dataclass(frozen=True)
class Reply:
    """What an ``on_chat`` handler may return instead of a plain string: the text and, optionally, audio
    (whatever encoding the member's users expect, e.g. base64)."""

    text: str = ""
    audio: str | None = None


@dataclass(frozen=True)
class Message:
    """A hub delivery (``{"type":"message",…}``): a LingMessage discussion, a message sent through the API, a
    bot message relayed from a Feishu group. The library acknowledges it once the ``on_message`` handler
    returns."""

    message_id: str
    sender_id: str
    content: str
    topic: str = ""
    message_type: str = ""
    thread_id: str = ""
    reply_to: str = ""
    timestamp: datetime | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict) -> Message:
        metadata = frame.get("metadata")
        return cls(
            message_id=_str(frame, "message_id"),
            sender_id=_str(frame, "sender_id"),
            content=_str(frame, "content"),
            topic=_str(frame, "topic"),
            message_type=_str(frame, "message_type"),
            thread_id=_str(frame, "thread_id"),
            reply_to=_str(frame, "reply_to"),
            timestamp=parse_time(frame.get("timestamp")),
            source=_str(frame, "source"),
            metadata=metadata if isinstance(metadata, dict) else {},
            raw=frame,
        )


@dataclass(frozen=True)
class Push:
    """A backend's push to its users (``{"type":"push",…}``), received by a user connection."""

    backend: str
    text: str
    category: str = ""
    audio: str | None = None
    timestamp: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict) -> Push:
        return cls(
            backend=_str(frame, "backend"),
            text=_str(frame, "text"),
            category=_str(frame, "category"),
            audio=_opt_str(frame, "audio"),
            timestamp=parse_time(frame.get("timestamp")),
            raw=frame,
        )


@dataclass(frozen=True)
class Collision:
    """The hub saw this member and ``other`` answer the same group message (``{"type":"collision",…}``)."""

    chat_id: str
    message_id: str
    other: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict) -> Collision:
        return cls(
            chat_id=_str(frame, "chat_id"),
            message_id=_str(frame, "message_id"),
            other=_str(frame, "other"),
            raw=frame,
        )


@dataclass(frozen=True)
class SendResult:
    """The hub's answer to an accepted message (``POST /api/unified/send``).

    ``success`` is True when a channel took the message now (``channel`` names it; ``status`` is
    ``delivered``, or ``delivering`` while a bridge socket's ack is awaited). ``queued`` is True when it
    waits in the hub's offline queue (HTTP 202: nobody reachable, or behind an earlier message) and ``error``
    says why. ``refused`` is True when the recipient refused it for good (HTTP 502). ``idempotency_key`` is
    the key every attempt carried; ``attempts`` how many requests it took.
    """

    success: bool
    message_id: str
    channel: str
    http_status: int
    idempotency_key: str
    status: str | None = None
    error: str | None = None
    response_time_ms: float = 0.0
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def queued(self) -> bool:
        return self.channel == "queue"

    @property
    def refused(self) -> bool:
        return self.http_status == 502

    @classmethod
    def from_body(cls, body: dict, *, http_status: int, idempotency_key: str, attempts: int) -> SendResult:
        time_ms = body.get("response_time_ms")
        return cls(
            success=body.get("success") is True,
            message_id=_str(body, "message_id"),
            channel=_str(body, "channel"),
            http_status=http_status,
            idempotency_key=idempotency_key,
            status=_opt_str(body, "status"),
            error=_opt_str(body, "error"),
            response_time_ms=float(time_ms) if isinstance(time_ms, (int, float)) else 0.0,
            attempts=attempts,
            raw=body,
        )


@dataclass(frozen=True)
class OnlineStatus:
    """One member in ``GET /api/unified/online``: ``channel`` is where it is reachable (``lingmessage``,
    ``bridge``, ``feishu``), ``"none"`` when offline."""

    member_id: str
    online: bool
    last_seen: datetime | None
    channel: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_body(cls, member_id: str, body: dict) -> OnlineStatus:
        return cls(
            member_id=member_id,
            online=body.get("online") is True,
            last_seen=parse_time(body.get("last_seen")),
            channel=_str(body, "channel") or "none",
            raw=body,
        )


@dataclass(frozen=True)
class QueuedMessage:
    """A message still ``queued`` or ``delivering`` (sent, waiting for its ack) in the hub's offline queue."""

    message_id: str
    sender_id: str
    content: str
    status: str
    topic: str = ""
    message_type: str = ""
    thread_id: str = ""
    reply_to: str = ""
    timestamp: datetime | None = None
    retry_count: int = 0
    next_retry_at: datetime | None = None
    last_error: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_body(cls, body: dict) -> QueuedMessage:
        retries = body.get("retry_count")
        return cls(
            message_id=_str(body, "message_id"),
            sender_id=_str(body, "sender_id"),
            content=_str(body, "content"),
            status=_str(body, "status"),
            topic=_str(body, "topic"),
            message_type=_str(body, "message_type"),
            thread_id=_str(body, "thread_id"),
            reply_to=_str(body, "reply_to"),
            timestamp=parse_time(body.get("timestamp")),
            retry_count=retries if isinstance(retries, int) else 0,
            next_retry_at=parse_time(body.get("next_retry_at")),
            last_error=_str(body, "last_error"),
            raw=body,
        )


@dataclass(frozen=True)
class Queue:
    """``GET /api/unified/queue/<recipient_id>``: how many messages wait (``queued_messages``) and the
    first of them, oldest first. The recipient sees all; another member only those it sent."""

    recipient_id: str
    queued_messages: int
    messages: list[QueuedMessage]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_body(cls, body: dict) -> Queue:
        count = body.get("queued_messages")
        items = body.get("messages")
        return cls(
            recipient_id=_str(body, "recipient_id"),
            queued_messages=count if isinstance(count, int) else 0,
            messages=[QueuedMessage.from_body(m) for m in items if isinstance(m, dict)]
            if isinstance(items, list)
            else [],
            raw=body,
        )


@dataclass(frozen=True)
class ClaimResult:
    """The hub's answer to a floor claim (``claim_result``): ``granted`` or not, who ``holder`` is (a member id,
    or a Feishu app_id for a bot that is not on the hub), how long the claim still runs (``expires_in``, s),
    and ``answered`` when the message is closed because someone already answered it."""

    chat_id: str
    message_id: str
    granted: bool
    holder: str | None
    expires_in: float
    answered: bool
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_body(cls, body: dict) -> ClaimResult:
        expires = body.get("expires_in")
        return cls(
            chat_id=_str(body, "chat_id"),
            message_id=_str(body, "message_id"),
            granted=body.get("granted") is True,
            holder=_opt_str(body, "holder"),
            expires_in=float(expires) if isinstance(expires, (int, float)) else 0.0,
            answered=body.get("answered") is True,
            raw=body,
        )


@dataclass(frozen=True)
class MemoryEntry:
    """One entry of a chat's collaboration memory: ``kind`` is ``deferred`` (bots = [who deferred, holder]),
    ``collided`` ([first, second]) or ``repaired``; ``text`` is a ready-to-read sentence."""

    kind: str
    bots: list[str]
    message_id: str
    text: str
    at: datetime | None = None
    repair_text: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_body(cls, body: dict) -> MemoryEntry:
        bots = body.get("bots")
        return cls(
            kind=_str(body, "kind"),
            bots=[b for b in bots if isinstance(b, str)] if isinstance(bots, list) else [],
            message_id=_str(body, "message_id"),
            text=_str(body, "text"),
            at=parse_time(body.get("at")),
            repair_text=_str(body, "repair_text"),
            raw=body,
        )
