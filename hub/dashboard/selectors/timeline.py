"""The online timeline (on the deliveries page) and the online rate of ``/metrics``, from the presence samples."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from hub.dashboard.models import PresenceSample
from members.models import Member


@dataclass
class Timeline:
    member_id: str
    name: str
    minutes: list[bool | None]  # one per minute, oldest first; None where no sample was taken

    @property
    def online_ratio(self) -> float | None:
        known = [m for m in self.minutes if m is not None]
        return sum(known) / len(known) if known else None


def online_timeline(now: datetime | None = None, minutes: int = 60) -> tuple[list[datetime], list[Timeline]]:
    """Per member, whether it was online at each minute of the last ``minutes`` (from the presence samples)."""
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    slots = [start + timedelta(minutes=i) for i in range(minutes)]
    index = {slot: i for i, slot in enumerate(slots)}
    samples: dict[int, list[bool | None]] = defaultdict(lambda: [None] * minutes)
    for member_pk, minute, online in PresenceSample.objects.filter(minute__gte=start, minute__lte=end).values_list(
        "member_id", "minute", "online"
    ):
        if minute in index:
            samples[member_pk][index[minute]] = online
    members = Member.objects.order_by("member_id").only("pk", "member_id", "name")
    return slots, [Timeline(m.member_id, m.name, samples[m.pk]) for m in members]


def online_ratios(now: datetime | None = None, minutes: int = 60) -> dict[str, float]:
    """The fraction of sampled minutes each member was online over the last ``minutes``."""
    now = now or timezone.now()
    rows = (
        PresenceSample.objects.filter(minute__gte=now - timedelta(minutes=minutes))
        .values("member__member_id")
        .annotate(n=Count("id"), up=Count("id", filter=Q(online=True)))
        .order_by()
    )
    return {r["member__member_id"]: r["up"] / r["n"] for r in rows if r["n"]}
