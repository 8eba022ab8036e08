"""The two records of LingMessage's format: a message file (``msg_<id>.json``) and a thread header
(``thread.json``, and in the same shape an entry of ``index.json``). ``to_dict`` gives LingMessage's exact field set
and order; ``from_dict`` reads others' files the way LingMessage does, keeping values as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.lingmessage.ids import (
    CHANNELS,
    DELIVERY_STATUSES,
    IDENTITIES,
    LEGACY_TYPES,
    MESSAGE_TYPES,
    is_mailbox_id,
    now_iso,
    parse_timestamp,
)


@dataclass(frozen=True)
class MailboxMessage:
    """One ``msg_<message_id>.json``. ``to_dict`` gives LingMessage's exact field set and order."""

    message_id: str
    thread_id: str
    sender: str
    recipient: str
    subject: str
    body: str
    message_type: str = "reply"
    channel: str = "ecosystem"
    timestamp: str = field(default_factory=now_iso)
    reply_to: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    source_type: str = "inferred"
    source_trace: str = ""
    delivery_status: str = "sent"
    delivered_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object: the ten fields LingMessage always writes, then the optional ones it writes only
        when they differ from their defaults."""
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "thread_id": self.thread_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "message_type": self.message_type,
            "channel": self.channel,
            "subject": self.subject,
            "body": self.body,
            "timestamp": self.timestamp,
            "source_type": self.source_type,
        }
        optional = (
            ("reply_to", self.reply_to, bool(self.reply_to)),
            ("metadata", dict(self.metadata), bool(self.metadata)),
            ("source_trace", self.source_trace, bool(self.source_trace)),
            ("delivery_status", self.delivery_status, self.delivery_status != "sent"),
            ("delivered_at", self.delivered_at, bool(self.delivered_at)),
        )
        data.update((name, value) for name, value, written in optional if written)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MailboxMessage:
        """The message in a file's JSON, values as stored (an unknown sender stays what it is, it does not become
        "all" as in LingMessage). Older files' ``recipients``/``type`` and a missing ``channel`` are read the way
        LingMessage reads them. Raises KeyError or TypeError when a required field is missing or not text."""
        recipient = data.get("recipient")
        if recipient is None:
            known = [r for r in data.get("recipients") or [] if r in IDENTITIES]
            recipient = known[0] if known else "all"
        message_type = data.get("message_type")
        if message_type is None:
            legacy = data.get("type", "open")
            message_type = LEGACY_TYPES.get(legacy, legacy)
        raw_metadata = data.get("metadata")
        metadata = (
            {k: v for k, v in raw_metadata.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(raw_metadata, Mapping)
            else {}
        )
        message = cls(
            message_id=data["message_id"],
            thread_id=data["thread_id"],
            sender=data["sender"],
            recipient=recipient,
            subject=data["subject"],
            body=data["body"],
            message_type=message_type,
            channel=data.get("channel") or "knowledge",
            timestamp=data["timestamp"],
            reply_to=data.get("reply_to") or "",
            metadata=metadata,
            source_type=data.get("source_type") or "inferred",
            source_trace=data.get("source_trace") or "",
            delivery_status=data.get("delivery_status") or "sent",
            delivered_at=data.get("delivered_at") or "",
        )
        for name in ("message_id", "thread_id", "sender", "recipient", "subject", "body", "timestamp"):
            if not isinstance(getattr(message, name), str):
                raise TypeError(f"{name} is not text")
        return message

    @property
    def time(self) -> datetime | None:
        """The timestamp as an aware UTC datetime (None when it is not ISO 8601)."""
        return parse_timestamp(self.timestamp)

    def check(self) -> None:
        """Raise ValueError unless LingMessage's own code could have written this message."""
        for name in ("message_id", "thread_id"):
            if not is_mailbox_id(getattr(self, name)):
                raise ValueError(f"{name} must be 32 lowercase hex digits, got {getattr(self, name)!r}")
        for name, allowed in (
            ("message_type", MESSAGE_TYPES),
            ("channel", CHANNELS),
            ("delivery_status", DELIVERY_STATUSES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.source_type not in ("inferred", "generated"):
            # "verified" messages carry an HMAC under a member's secret key, which the hub does not hold.
            raise ValueError(f"source_type must be 'inferred' or 'generated', got {self.source_type!r}")
        if parse_timestamp(self.timestamp) is None:
            raise ValueError(f"timestamp is not ISO 8601: {self.timestamp!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise ValueError("metadata keys and values must be text")


@dataclass(frozen=True)
class ThreadHeader:
    """One ``thread.json`` (and, in the same shape, one entry of ``index.json``)."""

    thread_id: str
    topic: str
    channel: str = "ecosystem"
    status: str = "active"
    participants: tuple[str, ...] = ()
    created_at: str = ""
    updated_at: str = ""
    message_count: int = 0
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object, in LingMessage's field order (``summary`` only when there is one)."""
        data: dict[str, Any] = {
            "thread_id": self.thread_id,
            "topic": self.topic,
            "channel": self.channel,
            "status": self.status,
            "participants": list(self.participants),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "message_count": self.message_count,
        }
        if self.summary:
            data["summary"] = self.summary
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThreadHeader:
        """The header in a JSON object, accepting the ``id``/``title`` names LingYi's index entries use."""
        return cls(
            thread_id=str(data.get("thread_id") or data.get("id") or ""),
            topic=str(data.get("topic", data.get("title", ""))),
            channel=str(data.get("channel") or "ecosystem"),
            status=str(data.get("status") or "open"),
            participants=tuple(str(p) for p in data.get("participants") or ()),
            created_at=str(data.get("created_at", "")),
            updated_at=str(data.get("updated_at", "")),
            message_count=int(data.get("message_count") or 0),
            summary=str(data.get("summary", "")),
        )

    @property
    def active(self) -> bool:
        """True for an open discussion (LingMessage reads the status "open" as "active")."""
        return self.status in ("open", "active")
