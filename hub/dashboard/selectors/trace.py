"""The trace page: one message's whole path (``offline_queue.trace``), and the latest attempts the deliveries page
lists with a link to each message's trace."""

from __future__ import annotations

from offline_queue.models import DeliveryAttempt
from offline_queue.trace import MessageTrace, message_trace

RECENT_ATTEMPTS = 50


def trace(message_id: str) -> MessageTrace | None:
    """The message's trace, or None when there is no such message."""
    return message_trace(message_id.strip())


def recent_attempts(limit: int = RECENT_ATTEMPTS) -> list[DeliveryAttempt]:
    """The latest delivery attempts, newest first, with their messages (for the links to their traces)."""
    rows = DeliveryAttempt.objects.select_related("message", "message__recipient").order_by("-started_at", "-pk")
    return list(rows[:limit])
