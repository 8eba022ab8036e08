"""Writes to the message store: what follows a delivery attempt."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from hub.transports.base import Outcome
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.policy import expiry_for, retry_delay


def message_record_outcome(message: Message, outcome: Outcome) -> None:
    """Apply the retry policy to ``message`` after an attempt and save it.

    delivered → delivered; sent → delivering until the ack (retried after the ack timeout);
    transient → queued for the next retry, or failed after the last one; permanent → failed.
    """
    now = timezone.now()
    fields = ["status", "next_retry_at", "last_error", "delivered_via", "delivered_at", "retry_count"]
    message.expires_at = message.expires_at or expiry_for(message.created_at or now)
    if outcome.result == DeliveryAttempt.Outcome.DELIVERED:
        message.status = Message.Status.DELIVERED
        message.delivered_via = outcome.channel
        message.delivered_at = now
        message.next_retry_at = None
        message.last_error = ""
    elif outcome.result == DeliveryAttempt.Outcome.SENT:
        message.status = Message.Status.DELIVERING
        message.delivered_via = outcome.channel
        message.next_retry_at = now + timedelta(seconds=settings.HUB_BRIDGE_ACK_TIMEOUT)
        message.last_error = ""
    elif outcome.result == DeliveryAttempt.Outcome.PERMANENT:
        message.status = Message.Status.FAILED
        message.next_retry_at = None
        message.last_error = outcome.error
    else:
        message.last_error = outcome.error
        if message.retry_count >= message.max_retries:
            message.status = Message.Status.FAILED
            message.next_retry_at = None
        else:
            message.status = Message.Status.QUEUED
            # retry_count counts the retries already made: 60 s after the first failure, then 120, 240, …
            message.next_retry_at = min(now + retry_delay(message.retry_count), message.expires_at)
    message.save(update_fields=[*fields, "expires_at"])
