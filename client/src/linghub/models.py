"""The typed shapes of what the hub sends and answers. Each keeps the frame or body it came from in ``raw``
so that fields a newer hub adds are never out of reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, TypeAlias, TypeVar, get_type_hints

MessageType = Literal["discussion", "chat", "notification", "alert", "report"]
Json: TypeAlias = dict[str, Any]  # a decoded JSON object: a frame or a response body


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp from the hub as a datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _str(data: Json, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# How a field of each annotated type is read from the hub's JSON: anything of another type (a newer or
# broken hub) becomes the empty value rather than an exception in the middle of a connection.
_READERS: dict[object, Callable[[object], object]] = {
    str: lambda v: v if isinstance(v, str) else "",
    str | None: lambda v: v if isinstance(v, str) else None,
    bool: lambda v: v is True,
    int: lambda v: v if isinstance(v, int) and not isinstance(v, bool) else 0,
    float: lambda v: float(v) if _number(v) else 0.0,  # type: ignore[arg-type]
    datetime | None: parse_time,
    dict[str, Any]: lambda v: v if isinstance(v, dict) else {},
    list[str]: lambda v: [x for x in v if isinstance(x, str)] if isinstance(v, list) else [],
}
T = TypeVar("T")


def build(cls: type[T], data: Json, **given: Any) -> T:
    """An instance of the dataclass ``cls`` from a JSON object: each field read from the key of its name by
    its annotated type, ``raw`` set to ``data``, and the fields in ``given`` taken as they are."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name in given:
            values[item.name] = given[item.name]
        elif item.name == "raw":
            values["raw"] = data
        else:
            values[item.name] = _READERS[hints[item.name]](data.get(item.name))
    return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


class FromJson:
    """``from_json(data)``: the shape from a frame or a response body (see ``build``)."""

    @classmethod
    def from_json(cls: type[T], data: Json) -> T:
        return build(cls, data)


@dataclass(frozen=True)
class Chat(FromJson):
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
    def from_json(cls, data: Json) -> Chat:
        return build(cls, data, sender=_str(data, "from"))


@dataclass(frozen=True)
class Reply:
    """What an ``on_chat`` handler may return instead of a plain string: the text and, optionally, audio
    (whatever encoding the member's users expect, e.g. base64)."""

    text: str = ""
    audio: str | None = None


@dataclass(frozen=True)
class Envelope(FromJson):
    """What every view of a message to its recipient carries (the hub's message envelope)."""

    message_id: str
    sender_id: str
    content: str
    topic: str = ""
    message_type: str = ""
    thread_id: str = ""
    reply_to: str = ""
    timestamp: datetime | None = None
    format: str = ""  # text, post, card, card_action ("" from a hub older than formats)
    priority: int = 0  # 1 (low) to 5 (urgent); 0 from a hub older than priorities


@dataclass(frozen=True)
class Message(Envelope):
    """A hub delivery (``{"type":"message",…}``): a LingMessage discussion, a message sent through the API, a
    bot message relayed from a Feishu group, a click on a card this member sent (``format`` ``card_action``).
    The library acknowledges it once the ``on_message`` handler returns."""

    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def body(self) -> dict[str, Any] | None:
        """The structured body of a ``post``, ``card`` or ``card_action`` message (the frame carries it under
        the format's name); None for text."""
        body = self.raw.get(self.format) if self.format and self.format != "text" else None
        return body if isinstance(body, dict) else None


@dataclass(frozen=True)
class Push(FromJson):
    """A backend's push to its users (``{"type":"push",…}``), received by a user connection."""

    backend: str
    text: str
    category: str = ""
    audio: str | None = None
    timestamp: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Collision(FromJson):
    """The hub saw this member and ``other`` answer the same group message (``{"type":"collision",…}``)."""

    chat_id: str
    message_id: str
    other: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


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
    def from_body(cls, body: Json, *, http_status: int, idempotency_key: str, attempts: int) -> SendResult:
        return build(cls, body, http_status=http_status, idempotency_key=idempotency_key, attempts=attempts)


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
    def from_body(cls, member_id: str, body: Json) -> OnlineStatus:
        return build(cls, body, member_id=member_id, channel=_str(body, "channel") or "none")


@dataclass(frozen=True)
class QueuedMessage(Envelope):
    """A message still ``queued`` or ``delivering`` (sent, waiting for its ack) in the hub's offline queue."""

    status: str = ""
    retry_count: int = 0
    next_retry_at: datetime | None = None
    last_error: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Queue(FromJson):
    """``GET /api/unified/queue/<recipient_id>``: how many messages wait (``queued_messages``) and the
    first of them, oldest first. The recipient sees all; another member only those it sent."""

    recipient_id: str
    queued_messages: int
    messages: list[QueuedMessage]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Queue:
        items = data.get("messages")
        messages = [QueuedMessage.from_json(m) for m in items if isinstance(m, dict)] if isinstance(items, list) else []
        return build(cls, data, messages=messages)


@dataclass(frozen=True)
class InboxMessage(Message):
    """A message taken from this member's pull inbox (``Client.inbox``): acknowledge it (``Client.ack_inbox``) once
    handled, or it is taken again after ``visible_again_at``. ``retry_count``: how often it was taken before
    without an ack; ``sequence``: the sender's sequence number."""

    sequence: int = 0
    retry_count: int = 0
    visible_again_at: datetime | None = None


@dataclass(frozen=True)
class Inbox(FromJson):
    """``GET /api/unified/inbox``: the messages this read took (maybe none), each sender's in order."""

    member_id: str
    messages: list[InboxMessage]
    visibility_seconds: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Json) -> Inbox:
        items = data.get("messages")
        messages = [InboxMessage.from_json(m) for m in items if isinstance(m, dict)] if isinstance(items, list) else []
        return build(cls, data, messages=messages)


@dataclass(frozen=True)
class AckResult(FromJson):
    """``POST /api/unified/inbox/ack``: the ids acknowledged now, those acknowledged before (a repeat is harmless)
    and those that are not messages to this member."""

    acknowledged: list[str]
    already: list[str]
    unknown: list[str]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class MessageState(FromJson):
    """``GET /api/unified/messages/<id>``: where a message this member sent or received stands — ``status``
    (queued, delivering, delivered, expired, failed), the ``channel`` it went over, retries, the last error; the
    delivery attempts are in ``raw["attempts"]``."""

    message_id: str
    sender_id: str
    recipient_id: str
    status: str
    channel: str = ""
    topic: str = ""
    retry_count: int = 0
    last_error: str = ""
    timestamp: datetime | None = None
    delivered_at: datetime | None = None
    next_retry_at: datetime | None = None
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ClaimResult(FromJson):
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


@dataclass(frozen=True)
class MemoryEntry(FromJson):
    """One entry of a chat's collaboration memory: ``kind`` is ``deferred`` (bots = [who deferred, holder]),
    ``collided`` ([first, second]) or ``repaired``; ``text`` is a ready-to-read sentence."""

    kind: str
    bots: list[str]
    message_id: str
    text: str
    at: datetime | None = None
    repair_text: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
