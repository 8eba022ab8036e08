"""Expiry and clean-up of the message store."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from hub import metrics
from offline_queue.alerts import alert_undelivered
from offline_queue.models import Message


def messages_expire(*, now: datetime | None = None, ids: list[int] | None = None) -> int:
    """Close every undelivered message past its expiry as expired (with an alert); returns how many."""
    now = now or timezone.now()
    ttl_ago = now - timedelta(seconds=settings.HUB_MESSAGE_TTL)
    due = Message.objects.filter(status__in=Message.UNDELIVERED).filter(
        Q(expires_at__lte=now) | Q(expires_at__isnull=True, created_at__lte=ttl_ago)
    )
    if ids is not None:
        due = due.filter(pk__in=ids)
    expired = list(due.select_related("recipient"))
    if not expired:
        return 0
    count = Message.objects.filter(pk__in=[m.pk for m in expired], status__in=Message.UNDELIVERED).update(
        status=Message.Status.EXPIRED,
        next_retry_at=None,
        last_error="not delivered before its expiry",
    )
    per_member = Tally(m.recipient.member_id for m in expired)
    for member, n in per_member.items():
        metrics.EXPIRED.labels(member=member).inc(n)
    for m in expired:
        m.status = Message.Status.EXPIRED
    alert_undelivered(messages=expired, reason="expired")
    return count


def messages_cleanup(*, now: datetime | None = None) -> int:
    """Delete delivered, expired and failed messages older than the retention period (with their attempts)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HUB_MESSAGE_RETENTION_DAYS)
    _, per_model = Message.objects.filter(status__in=Message.TERMINAL, created_at__lt=cutoff).delete()
    return per_model.get(Message._meta.label, 0)
