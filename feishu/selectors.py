"""Reads for Feishu: which groups are due for a poll, who a bot is, who receives relayed bot messages, and the
groups as the Feishu dashboard shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from feishu.models import ActiveGroup, SeenMessage
from members.models import Channel, Member


def groups_active(now: datetime) -> QuerySet[ActiveGroup]:
    """Groups the poller reads now: not deactivated, and always on or not yet expired."""
    return ActiveGroup.objects.filter(deactivated_at__isnull=True).filter(Q(always_on=True) | Q(expires_at__gt=now))


def groups_due(now: datetime) -> QuerySet[ActiveGroup]:
    """Active groups whose next poll is due and that no poller holds, the longest-waiting first."""
    return (
        groups_active(now)
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .order_by(F("next_poll_at").asc(nulls_first=True), "id")
    )


def feishu_bot_channel(bot_id: str) -> Channel | None:
    """The enabled ``feishu_bot`` channel of the bot with this app_id or open_id (with its member)."""
    if not bot_id:
        return None
    return (
        Channel.objects.select_related("member")
        .filter(kind=Channel.Kind.FEISHU_BOT, enabled=True)
        .filter(Q(app_id=bot_id) | Q(address=bot_id))
        .first()
    )


def relay_recipients(*, exclude: Member | None) -> QuerySet[Member]:
    """Who gets a relayed bot message (``FEISHU_RELAY_TO``): every enabled agent, or only the agents with a
    Feishu bot; never ``exclude`` (the author)."""
    members = Member.objects.filter(enabled=True, kind=Member.Kind.AGENT)
    if settings.FEISHU_RELAY_TO == "feishu_bots":
        members = members.filter(channels__kind=Channel.Kind.FEISHU_BOT, channels__enabled=True).distinct()
    if exclude is not None:
        members = members.exclude(pk=exclude.pk)
    return members.order_by("member_id")


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
    rows: list[GroupRow] = field(default_factory=list)

    @property
    def active(self) -> int:
        return sum(1 for r in self.rows if r.active)


def groups_overview(now: datetime | None = None) -> FeishuGroups:
    """Every group chat the poller knows, active ones first, with its bots and how many bot messages it
    relayed (of those still remembered around each group's cursor)."""
    now = now or timezone.now()
    relayed = dict(
        SeenMessage.objects.filter(relayed_to__gt=0).values_list("chat_id").annotate(n=Count("id")).order_by()
    )
    rows = []
    for group in ActiveGroup.objects.all():
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
    return FeishuGroups(rows=rows)
