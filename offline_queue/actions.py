"""Operator actions on messages."""

from __future__ import annotations

from django.utils import timezone

from offline_queue.models import Message
from offline_queue.policy import expiry_for


def messages_retry_now(*, messages) -> int:
    """Make undelivered messages due now (the next pass of the scheduler takes them)."""
    return messages.filter(status__in=Message.UNDELIVERED).update(next_retry_at=timezone.now())


def messages_requeue(*, messages) -> int:
    """Put expired or failed messages back in the queue with a fresh retry budget and expiry."""
    now = timezone.now()
    return messages.filter(status__in=(Message.Status.EXPIRED, Message.Status.FAILED)).update(
        status=Message.Status.QUEUED,
        retry_count=0,
        next_retry_at=now,
        expires_at=expiry_for(now),
        last_error="",
        last_attempt_at=None,
    )


def messages_discard(*, messages, by: str) -> int:
    """Take undelivered messages out of the queue for good (failed, with who discarded them)."""
    return messages.filter(status__in=Message.UNDELIVERED).update(
        status=Message.Status.FAILED, next_retry_at=None, last_error=f"discarded by {by}"
    )
