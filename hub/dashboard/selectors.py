"""Reads behind the dashboards and the database gauges of ``/metrics``.

Everything is computed from database rows when read, so any daphne process answers the same.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Max, Min, Model, Q
from django.utils import timezone

from hub.dashboard.models import PresenceSample
from members.models import Channel, Member
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.selectors import queue_depth_by_member

PENDING = Message.UNDELIVERED  # waiting: queued or delivering
DISCARDED_PREFIX = "discarded by "


# --- presence -------------------------------------------------------------------------------------------


@dataclass
class ChannelState:
    id: int
    kind: str
    kind_label: str
    address: str
    state: str  # live | down | disabled
    last_seen: datetime | None
    last_ok: datetime | None
    last_error: str
    last_error_at: datetime | None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "last_seen": _iso(self.last_seen),
            "last_error_at": _iso(self.last_error_at),
        }


@dataclass
class MemberState:
    member_id: str
    name: str
    kind: str
    state: str  # online | offline | disabled
    last_seen: datetime | None
    pending: int
    channels: list[ChannelState] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "member_id": self.member_id,
            "state": self.state,
            "last_seen": _iso(self.last_seen),
            "pending": self.pending,
            "channels": [c.as_json() for c in self.channels],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def channel_state(channel: Channel, now: datetime) -> ChannelState:
    state = "disabled" if not channel.enabled else "live" if channel.is_live(now) else "down"
    return ChannelState(
        id=channel.pk,
        kind=channel.kind,
        kind_label=channel.get_kind_display(),
        address=channel.address,
        state=state,
        last_seen=channel.last_seen or channel.last_ok,
        last_ok=channel.last_ok,
        last_error=channel.last_error,
        last_error_at=channel.last_error_at,
    )


def member_state(member: Member, now: datetime, pending: int = 0) -> MemberState:
    state = "disabled" if not member.enabled else "online" if member.is_online(now) else "offline"
    channels = [channel_state(c, now) for c in member.channels.all()]
    # Last seen on any channel: a bridge heartbeat, or an HTTP endpoint that answered.
    seen = [t for t in (member.last_seen(), *(c.last_seen for c in channels)) if t]
    return MemberState(
        member_id=member.member_id,
        name=member.name,
        kind=member.kind,
        state=state,
        last_seen=max(seen) if seen else None,
        pending=pending,
        channels=channels,
    )


def presence(now: datetime | None = None) -> list[MemberState]:
    """Every member with its channels, their states and how many messages wait for it."""
    now = now or timezone.now()
    pending = queue_depth_by_member()
    members = Member.objects.prefetch_related("channels").order_by("member_id")
    return [member_state(m, now, pending.get(m.member_id, 0)) for m in members]


def presence_counts(states: list[MemberState]) -> dict[str, int]:
    counts = Counter(s.state for s in states)
    return {"online": counts["online"], "offline": counts["offline"], "disabled": counts["disabled"]}


# --- member detail --------------------------------------------------------------------------------------


@dataclass
class MemberDetail:
    member: Member
    state: MemberState
    pending: list[Message]
    undelivered: list[Message]
    attempts: list[DeliveryAttempt]
    sent: list[Message]

    @property
    def pending_rows(self) -> list[tuple[Message, bool]]:
        return [(m, False) for m in self.pending]

    @property
    def undelivered_rows(self) -> list[tuple[Message, bool]]:
        return [(m, is_discarded(m)) for m in self.undelivered]


def member_detail(member_id: str, now: datetime | None = None, limit: int = 50) -> MemberDetail | None:
    """A member, its channels (with their last errors), what waits for it, and its recent deliveries."""
    now = now or timezone.now()
    member = Member.objects.filter(member_id=member_id).prefetch_related("channels").first()
    if member is None:
        return None
    inbox = Message.objects.filter(recipient=member).select_related("recipient")
    pending = list(inbox.filter(status__in=PENDING).order_by("id")[:limit])
    undelivered = list(inbox.filter(status__in=(Message.Status.EXPIRED, Message.Status.FAILED)).order_by("-id")[:limit])
    attempts = list(
        DeliveryAttempt.objects.filter(message__recipient=member)
        .select_related("message")
        .order_by("-started_at", "-id")[:limit]
    )
    sent = list(Message.objects.filter(sender_id=member.member_id).select_related("recipient").order_by("-id")[:20])
    pending_count = inbox.filter(status__in=PENDING).count()
    return MemberDetail(
        member=member,
        state=member_state(member, now, pending_count),
        pending=pending,
        undelivered=undelivered,
        attempts=attempts,
        sent=sent,
    )


# --- queue ----------------------------------------------------------------------------------------------


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
        Message.objects.filter(status__in=PENDING)
        .values("recipient__member_id", "recipient__name")
        .annotate(
            queued=Count("id", filter=Q(status=Message.Status.QUEUED)),
            delivering=Count("id", filter=Q(status=Message.Status.DELIVERING)),
            oldest=Min("created_at"),
            max_retries=Max("retry_count"),
            next_retry_at=Min("next_retry_at"),
        )
        .order_by("oldest")
    )
    return [
        RecipientQueue(
            member_id=r["recipient__member_id"],
            name=r["recipient__name"],
            queued=r["queued"],
            delivering=r["delivering"],
            oldest=r["oldest"],
            oldest_age_seconds=max(0.0, (now - r["oldest"]).total_seconds()) if r["oldest"] else 0.0,
            max_retries=r["max_retries"] or 0,
            next_retry_at=r["next_retry_at"],
        )
        for r in rows
    ]


def pending_messages(limit: int = 100) -> list[Message]:
    return list(Message.objects.filter(status__in=PENDING).select_related("recipient").order_by("id")[:limit])


def undelivered_messages(limit: int = 100) -> list[Message]:
    """Expired and failed messages, newest first."""
    return list(
        Message.objects.filter(status__in=(Message.Status.EXPIRED, Message.Status.FAILED))
        .select_related("recipient")
        .order_by("-id")[:limit]
    )


def is_discarded(message: Message) -> bool:
    return message.status == Message.Status.FAILED and message.last_error.startswith(DISCARDED_PREFIX)


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
            Q(status__in=PENDING)
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


# --- deliveries -----------------------------------------------------------------------------------------


@dataclass
class ChannelDeliveries:
    channel: str
    per_minute: list[dict[str, int]]  # one {outcome: count} per minute, oldest first
    total: int
    ok: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.total if self.total else None


@dataclass
class DeliveryReport:
    start: datetime
    minutes: list[datetime]
    channels: list[ChannelDeliveries]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def deliveries(now: datetime | None = None, minutes: int = 60) -> DeliveryReport:
    """Delivery attempts of the last ``minutes`` per channel: per-minute counts by outcome and latency
    percentiles. ``sent`` (written to a socket, waiting for the ack) counts as a success."""
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = DeliveryAttempt.objects.filter(started_at__gte=start, started_at__lte=now).values_list(
        "channel", "started_at", "outcome", "latency_ms"
    )
    buckets: dict[str, list[Counter]] = defaultdict(lambda: [Counter() for _ in range(minutes)])
    latencies: dict[str, list[float]] = defaultdict(list)
    for channel, started, outcome, latency in rows:
        index = min(minutes - 1, int((started - start).total_seconds() // 60))
        buckets[channel][index][outcome] += 1
        latencies[channel].append(latency)
    ok_outcomes = {DeliveryAttempt.Outcome.DELIVERED, DeliveryAttempt.Outcome.SENT}
    report = []
    for channel in sorted(buckets):
        per_minute = buckets[channel]
        totals: Counter = sum(per_minute, Counter())
        values = sorted(latencies[channel])
        report.append(
            ChannelDeliveries(
                channel=channel,
                per_minute=[dict(c) for c in per_minute],
                total=sum(totals.values()),
                ok=sum(n for outcome, n in totals.items() if outcome in ok_outcomes),
                failed=sum(n for outcome, n in totals.items() if outcome not in ok_outcomes),
                p50_ms=percentile(values, 50),
                p95_ms=percentile(values, 95),
                p99_ms=percentile(values, 99),
                max_ms=values[-1] if values else None,
            )
        )
    return DeliveryReport(start=start, minutes=[start + timedelta(minutes=i) for i in range(minutes)], channels=report)


# --- online timeline ------------------------------------------------------------------------------------


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


# --- Feishu and collisions (apps that may not have their models yet) ------------------------------------


def optional_model(app_label: str, model_name: str) -> type[Model] | None:
    """The model if an installed app with this label defines it; None otherwise (the dashboards then say
    that part of the hub is not recording)."""
    try:
        return apps.get_app_config(app_label).get_model(model_name)
    except LookupError:
        return None


@dataclass
class CollisionRow:
    created_at: datetime
    chat_id: str
    message_id: str
    kind: str
    bots: list[str]
    repair_text: str
    description: str


@dataclass
class CollisionReport:
    available: bool
    hours: list[datetime] = field(default_factory=list)
    per_hour: list[dict[str, int]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    rows: list[CollisionRow] = field(default_factory=list)
    floors: list[dict] = field(default_factory=list)


def collisions(now: datetime | None = None, hours: int = 24, limit: int = 100) -> CollisionReport:
    """The collision log of the last ``hours`` (per hour by kind), its newest entries, and who holds the
    floor on a message right now. Unavailable while the coordination app has no ``CollisionLog``."""
    log = optional_model("coordination", "CollisionLog")
    if log is None:
        return CollisionReport(available=False)
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    slots = [start + timedelta(hours=i) for i in range(hours)]
    per_hour: list[Counter] = [Counter() for _ in range(hours)]
    for kind, created in log.objects.filter(created_at__gte=start, created_at__lte=now).values_list(
        "kind", "created_at"
    ):
        per_hour[min(hours - 1, int((created - start).total_seconds() // 3600))][kind] += 1
    rows = [
        CollisionRow(
            created_at=entry.created_at,
            chat_id=entry.chat_id,
            message_id=entry.message_id,
            kind=entry.kind,
            bots=[str(b) for b in (entry.bots or [])],
            repair_text=entry.repair_text,
            description=entry.describe() if hasattr(entry, "describe") else "",
        )
        for entry in log.objects.order_by("-created_at", "-id")[:limit]
    ]
    floors = []
    claim = optional_model("coordination", "Claim")
    if claim is not None:
        fresh = claim.objects.filter(answered_at__isnull=True, released_at__isnull=True, expires_at__gt=now)
        floors = list(fresh.order_by("-claimed_at").values("chat_id", "message_id", "holder", "expires_at")[:50])
    return CollisionReport(
        available=True,
        hours=slots,
        per_hour=[dict(c) for c in per_hour],
        totals=dict(sum(per_hour, Counter())),
        rows=rows,
        floors=floors,
    )


@dataclass
class GroupRow:
    chat_id: str
    name: str
    active: bool
    always_on: bool
    last_activity_at: datetime | None
    expires_at: datetime | None
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    bots: list[str]
    relayed: int
    last_error: str
    deactivated_at: datetime | None


@dataclass
class FeishuGroups:
    available: bool
    rows: list[GroupRow] = field(default_factory=list)

    @property
    def active(self) -> int:
        return sum(1 for r in self.rows if r.active)


def feishu_groups(now: datetime | None = None) -> FeishuGroups:
    """Every group chat the poller knows, active ones first, with its bots and how many bot messages it
    relayed. Unavailable while the Feishu app has no ``ActiveGroup``."""
    group_model = optional_model("feishu", "ActiveGroup")
    if group_model is None:
        return FeishuGroups(available=False)
    now = now or timezone.now()
    relayed: dict[str, int] = {}
    seen_model = optional_model("feishu", "SeenMessage")
    if seen_model is not None:
        relayed = dict(
            seen_model.objects.filter(relayed_to__gt=0).values_list("chat_id").annotate(n=Count("id")).order_by()
        )
    rows = []
    for group in group_model.objects.all():
        bots = group.known_bots or {}
        names = sorted(
            (info.get("name") if isinstance(info, dict) else None) or str(bot_id) for bot_id, info in bots.items()
        )
        rows.append(
            GroupRow(
                chat_id=group.chat_id,
                name=group.name,
                active=group.is_active(now),
                always_on=group.always_on,
                last_activity_at=group.last_activity_at,
                expires_at=group.expires_at,
                last_polled_at=group.last_polled_at,
                next_poll_at=group.next_poll_at,
                bots=names,
                relayed=relayed.get(group.chat_id, 0),
                last_error=group.last_error,
                deactivated_at=group.deactivated_at,
            )
        )
    rows.sort(key=lambda r: (not r.active, -(r.last_activity_at.timestamp() if r.last_activity_at else 0)))
    return FeishuGroups(available=True, rows=rows)


def feishu_configured() -> bool:
    return bool(settings.FEISHU_APP_ID and settings.FEISHU_APP_SECRET)


# --- /metrics gauges ------------------------------------------------------------------------------------


@dataclass
class Gauges:
    online: dict[str, bool]
    channel_live: dict[tuple[str, str], bool]
    queue_length: dict[str, int]
    queue_oldest_age: dict[str, float]
    messages_by_status: dict[str, int]
    online_ratio: dict[str, float]
    feishu_active_groups: int | None


def metrics_gauges(now: datetime | None = None) -> Gauges:
    """The figures ``/metrics`` reads from the database at scrape time."""
    now = now or timezone.now()
    states = presence(now)
    queues = {q.member_id: q for q in queue_by_recipient(now)}
    by_status = dict(Message.objects.values_list("status").annotate(n=Count("id")).order_by())
    active_group = optional_model("feishu", "ActiveGroup")
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
        feishu_active_groups=_active_groups(active_group, now) if active_group is not None else None,
    )


def _active_groups(model: type[Model], now: datetime) -> int:
    """Groups the poller reads now: not deactivated, and always on or not yet expired."""
    return model.objects.filter(Q(deactivated_at__isnull=True) & (Q(always_on=True) | Q(expires_at__gt=now))).count()
