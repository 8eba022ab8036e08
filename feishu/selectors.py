"""Reads for Feishu: which groups are due for a poll, who a bot is, who receives relayed bot messages."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import F, Q, QuerySet

from feishu.models import ActiveGroup
from members.models import Channel, Member


def groups_active(now: datetime) -> QuerySet[ActiveGroup]:
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
