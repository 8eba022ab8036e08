"""Reads for routing and the /api/unified views."""

from __future__ import annotations

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
