"""Writes the dashboards make: operator actions on queued messages and the presence samples."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hub import metrics
from hub.dashboard.models import PresenceSample
from hub.dashboard.selectors import DISCARDED_PREFIX, UNDELIVERED
from members.models import Member
from offline_queue.models import Message

SAMPLE_RETENTION = timedelta(days=1)


class QueueActionError(Exception):
    """An operator action that does not apply to the message in its current state."""


def message_retry_now(*, message_id: str, user: str) -> Message:
    """Put an undelivered message back in the queue, due at once.

    A queued message keeps its retry count and expiry. An expired or failed message gets a fresh expiry
    (otherwise the scheduler would expire it again at once) and keeps its retry count, so it gets one more
    attempt before the retry limit fails it again. Conditional update: a message delivered meanwhile is
    left alone.
    """
    now = timezone.now()
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(message_id=message_id).first()
        if message is None:
            raise QueueActionError(f"unknown message {message_id!r}")
        if message.status not in UNDELIVERED:
            raise QueueActionError(f"message {message_id} is {message.status}; only undelivered messages can retry")
        fields = ["status", "next_retry_at", "lease_owner", "lease_expires_at", "last_error"]
        if message.status in (Message.Status.EXPIRED, Message.Status.FAILED):
            message.expires_at = now + timedelta(seconds=settings.HUB_MESSAGE_TTL)
            message.max_retries = max(message.max_retries, message.retry_count + 1)
            fields += ["expires_at", "max_retries"]
            message.last_error = f"requeued by {user} (was {message.status}: {message.last_error})"[:2000]
        message.status = Message.Status.QUEUED
        message.next_retry_at = now
        message.lease_owner = ""
        message.lease_expires_at = None
        message.save(update_fields=fields)
    metrics.QUEUE_OPERATOR_ACTIONS.labels(action="retry").inc()
    return message


def message_discard(*, message_id: str, user: str) -> Message:
    """Stop delivering a message: it becomes failed with ``last_error`` "discarded by <user>"."""
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(message_id=message_id).first()
        if message is None:
            raise QueueActionError(f"unknown message {message_id!r}")
        if message.status not in UNDELIVERED:
            raise QueueActionError(f"message {message_id} is {message.status}; it cannot be discarded")
        if message.status == Message.Status.FAILED and message.last_error.startswith(DISCARDED_PREFIX):
            raise QueueActionError(f"message {message_id} is already discarded")
        message.status = Message.Status.FAILED
        message.next_retry_at = None
        message.lease_owner = ""
        message.lease_expires_at = None
        message.last_error = f"{DISCARDED_PREFIX}{user}"
        message.save(update_fields=["status", "next_retry_at", "lease_owner", "lease_expires_at", "last_error"])
    metrics.QUEUE_OPERATOR_ACTIONS.labels(action="discard").inc()
    return message


def presence_sample(*, now: datetime | None = None) -> int:
    """Record whether each member is online this minute, and forget samples older than a day.
    A second call within the same minute changes nothing. Returns how many members were sampled."""
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    samples = []
    for member in Member.objects.prefetch_related("channels"):
        live = sorted({c.kind for c in member.channels.all() if c.enabled and c.is_live(now)})
        samples.append(
            PresenceSample(member=member, minute=minute, online=member.enabled and bool(live), channels=",".join(live))
        )
    PresenceSample.objects.bulk_create(samples, ignore_conflicts=True)
    PresenceSample.objects.filter(minute__lt=minute - SAMPLE_RETENTION).delete()
    return len(samples)
