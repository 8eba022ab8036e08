"""The queue page: what waits per recipient, the waiting and the undelivered messages, the depth over time."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone

from offline_queue.models import Message


@dataclass
class RecipientQueue:
    member_id: str
    name: str
    queued: int
    delivering: int
    oldest: datetime | None
    oldest_age_seconds: float
    max_retries: int
    next_retry_at: datetime | None


def queue_by_recipient(now: datetime | None = None) -> list[RecipientQueue]:
    """Per recipient with pending messages: counts, the oldest message's age, the most retries, the next retry.
    Oldest first, since the oldest queue is the one to look at."""
    now = now or timezone.now()
    rows = (
        Message.objects.filter(status__in=Message.UNDELIVERED)
        .values(member_id=F("recipient__member_id"), name=F("recipient__name"))
        .annotate(
            queued=Count("id", filter=Q(status=Message.Status.QUEUED)),
            delivering=Count("id", filter=Q(status=Message.Status.DELIVERING)),
            oldest=Min("created_at"),
            max_retries=Max("retry_count"),
            next_retry_at=Min("next_retry_at"),
        )
        .order_by("oldest")
    )
    return [RecipientQueue(**row, oldest_age_seconds=max(0.0, (now - row["oldest"]).total_seconds())) for row in rows]


def pending_messages(limit: int = 100) -> list[Message]:
    """The oldest ``limit`` messages still waiting (queued or delivering)."""
    return list(
        Message.objects.filter(status__in=Message.UNDELIVERED).select_related("recipient").order_by("id")[:limit]
    )


def undelivered_messages(limit: int = 100) -> list[Message]:
    """Expired and failed messages, newest first."""
    return list(Message.objects.filter(status__in=Message.CLOSED).select_related("recipient").order_by("-id")[:limit])


def queue_depth_series(now: datetime | None = None, minutes: int = 60) -> list[tuple[datetime, int]]:
    """Messages waiting at the end of each minute of the last ``minutes`` (the last point is now): accepted
    by then and not yet delivered, expired or failed. A delivered message stops waiting at ``delivered_at``,
    an expired one at ``expires_at``, a failed one at its last attempt."""
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    points = [start + timedelta(minutes=i + 1) for i in range(minutes)]
    points[-1] = min(points[-1], now)
    rows = (
        Message.objects.filter(created_at__lte=now)
        .filter(
            Q(status__in=Message.UNDELIVERED)
            | Q(status=Message.Status.DELIVERED, delivered_at__gt=start)
            | Q(status=Message.Status.EXPIRED, expires_at__gt=start)
            | Q(status=Message.Status.FAILED, last_attempt_at__gt=start)
            | Q(status=Message.Status.FAILED, last_attempt_at__isnull=True, created_at__gt=start)
        )
        .values_list("status", "created_at", "delivered_at", "expires_at", "last_attempt_at")
    )
    # Each message waits over a run of points: +1 where the run starts, -1 after it ends (a sweep, so the
    # cost grows with the messages, not with messages x minutes).
    change = [0] * (minutes + 1)
    for status, created, delivered, expires, last_attempt in rows:
        if status == Message.Status.DELIVERED:
            done = delivered
        elif status == Message.Status.EXPIRED:
            done = expires
        elif status == Message.Status.FAILED:
            done = last_attempt or created
        else:
            done = None
        first = bisect_left(points, created)
        last = minutes if done is None else bisect_left(points, done)
        if first < last:
            change[first] += 1
            change[last] -= 1
    series, waiting = [], 0
    for i in range(minutes):
        waiting += change[i]
        series.append((start + timedelta(minutes=i), waiting))
    return series
