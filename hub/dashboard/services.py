"""Writes the dashboards make: the presence samples (operator actions are ``offline_queue.actions``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from hub.dashboard.models import PresenceSample
from members.models import Member

SAMPLE_RETENTION = timedelta(days=1)


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
