"""Writes the dashboards make: operator actions on queued messages and the presence samples."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from hub import metrics
from hub.dashboard.models import PresenceSample
from hub.dashboard.selectors import DISCARDED_PREFIX
from members.models import Member
from offline_queue.actions import messages_discard, messages_requeue, messages_retry_now
from offline_queue.models import Message

logger = logging.getLogger(__name__)

SAMPLE_RETENTION = timedelta(days=1)


class QueueActionError(Exception):
    """An operator action that does not apply to the message in its current state."""


CLOSED = (Message.Status.EXPIRED, Message.Status.FAILED)


def _message(message_id: str) -> Message:
    message = Message.objects.filter(message_id=message_id).first()
    if message is None:
        raise QueueActionError(f"unknown message {message_id!r}")
    return message


def message_retry_now(*, message_id: str, user: str) -> Message:
    """Retry an undelivered message at once: a waiting one becomes due now; an expired or failed one goes
    back in the queue with a fresh retry budget and expiry (the offline queue's operator actions)."""
    message = _message(message_id)
    rows = Message.objects.filter(pk=message.pk)
    if message.status in Message.UNDELIVERED:
        changed = messages_retry_now(messages=rows)
    elif message.status in CLOSED:
        changed = messages_requeue(messages=rows)
    else:
        raise QueueActionError(f"message {message_id} is {message.status}; only undelivered messages can retry")
    if not changed:
        raise QueueActionError(f"message {message_id} changed meanwhile; look again")
    logger.info("message %s retried by %s (was %s)", message_id, user, message.status)
    metrics.QUEUE_OPERATOR_ACTIONS.labels(action="retry").inc()
    message.refresh_from_db()
    return message


def message_discard(*, message_id: str, user: str) -> Message:
    """Stop delivering a message: a waiting one becomes failed with ``last_error`` "discarded by <user>";
    an expired or failed one is marked the same way (keeping why it ended), so the list shows it was
    looked at. Conditional updates: a message delivered meanwhile is left alone."""
    message = _message(message_id)
    rows = Message.objects.filter(pk=message.pk)
    if message.status in Message.UNDELIVERED:
        changed = messages_discard(messages=rows, by=user)
    elif message.status in CLOSED:
        if message.last_error.startswith(DISCARDED_PREFIX):
            raise QueueActionError(f"message {message_id} is already discarded")
        reason = f"{DISCARDED_PREFIX}{user} ({message.status}: {message.last_error or 'no error recorded'})"
        changed = rows.filter(status=message.status).update(status=Message.Status.FAILED, last_error=reason[:4000])
    else:
        raise QueueActionError(f"message {message_id} is {message.status}; it cannot be discarded")
    if not changed:
        raise QueueActionError(f"message {message_id} changed meanwhile; look again")
    logger.info("message %s discarded by %s (was %s)", message_id, user, message.status)
    metrics.QUEUE_OPERATOR_ACTIONS.labels(action="discard").inc()
    message.refresh_from_db()
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
