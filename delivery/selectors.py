"""Reads for routing and the /api/unified views."""

from __future__ import annotations

from django.db import models
from django.db.models import QuerySet

from delivery import online
from members.models import Member
from members.selectors import members_with_channels
from offline_queue.models import Message


def online_status() -> dict[str, dict]:
    """``{member_id: {"online", "last_seen", "channel"}}`` for every member; stale endpoints are probed."""
    return online.online_statuses(list(members_with_channels()))


def queued_messages(recipient: Member, *, sender_id: str | None = None) -> QuerySet[Message]:
    """Messages waiting for ``recipient`` (queued, or sent and waiting for an ack), oldest first;
    only those from ``sender_id`` when given."""
    queryset = Message.objects.filter(recipient=recipient, status__in=Message.UNDELIVERED).order_by("id")
    if sender_id is not None:
        queryset = queryset.filter(sender_id=sender_id)
    return queryset


def message_summary(message: Message) -> dict:
    return {
        **message.envelope(),
        "status": message.status,
        "timestamp": message.created_at.isoformat(),
        "retry_count": message.retry_count,
        "next_retry_at": message.next_retry_at.isoformat() if message.next_retry_at else None,
        "last_error": message.last_error,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def message_state(*, message_id: str, member: Member) -> dict | None:
    """Where the message ``message_id`` stands, for its sender or its recipient (None for anyone else, and for an
    unknown id): status, the channel it went over, retries, the last error, and its delivery attempts (newest first,
    at most 20)."""
    message = (
        Message.objects.select_related("recipient")
        .filter(message_id=message_id)
        .filter(models.Q(sender_id=member.member_id) | models.Q(recipient=member))
        .first()
    )
    if message is None:
        return None
    attempts = message.attempts.order_by("-started_at", "-pk")[:20]
    return {
        "message_id": message.message_id,
        "sender_id": message.sender_id,
        "recipient_id": message.recipient.member_id,
        "topic": message.topic,
        "message_type": message.message_type,
        "status": message.status,
        "channel": message.delivered_via,
        "timestamp": _iso(message.created_at),
        "delivered_at": _iso(message.delivered_at),
        "expires_at": _iso(message.expires_at),
        "retry_count": message.retry_count,
        "next_retry_at": _iso(message.next_retry_at),
        "last_error": message.last_error,
        "attempts": [
            {
                "channel": a.channel,
                "outcome": a.outcome,
                "at": _iso(a.started_at),
                "latency_ms": round(a.latency_ms, 1),
                "error": a.error,
            }
            for a in attempts
        ],
    }
