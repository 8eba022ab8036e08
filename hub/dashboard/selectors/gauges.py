"""The figures ``/metrics`` reads from the database at scrape time (``hub.dashboard.metrics`` exports them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from delivery.models import RouteRule
from hub.dashboard.selectors.online import presence
from hub.dashboard.selectors.queues import queue_by_recipient
from hub.dashboard.selectors.timeline import online_ratios
from members.models import Channel, Member
from offline_queue.models import Message


@dataclass
class Gauges:
    online: dict[str, bool]
    channel_live: dict[tuple[str, str], bool]
    queue_length: dict[str, int]
    queue_oldest_age: dict[str, float]
    messages_by_status: dict[str, int]
    online_ratio: dict[str, float]


def metrics_gauges(now: datetime | None = None) -> Gauges:
    """Online per member and channel, queue length and oldest age per member, messages by status, the online
    rate over the last hour."""
    now = now or timezone.now()
    states = presence(now)
    queues = {q.member_id: q for q in queue_by_recipient(now)}
    by_status = dict(Message.objects.values_list("status").annotate(n=Count("id")).order_by())
    channel_live: dict[tuple[str, str], bool] = {}
    for s in states:
        for c in s.channels:
            if c.state != "disabled":
                key = (s.member_id, c.kind)
                channel_live[key] = channel_live.get(key, False) or c.state == "live"
    return Gauges(
        online={s.member_id: s.state == "online" for s in states},
        channel_live=channel_live,
        queue_length={s.member_id: s.pending for s in states},
        queue_oldest_age={
            s.member_id: queues[s.member_id].oldest_age_seconds if s.member_id in queues else 0.0 for s in states
        },
        messages_by_status={status: by_status.get(status, 0) for status in Message.Status.values},
        online_ratio=online_ratios(now),
    )


@dataclass
class KnownLabels:
    """The label values ``/metrics`` gives zero samples before anything happened to them."""

    members: list[str]
    member_channels: list[tuple[str, str]]  # (member_id, channel kind)
    route_rules: list[str]


def known_labels() -> KnownLabels:
    """Every member, each member's channel kinds, every route rule."""
    return KnownLabels(
        members=list(Member.objects.values_list("member_id", flat=True)),
        member_channels=list(Channel.objects.values_list("member__member_id", "kind").distinct()),
        route_rules=[str(pk) for pk in RouteRule.objects.values_list("pk", flat=True)],
    )
