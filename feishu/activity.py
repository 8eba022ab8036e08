"""Which Feishu groups are active: a group is polled while it has recent activity (a member's report, an event
callback, a message seen by the poller) or is always on, and until the hub's bot turns out not to be in it."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from feishu.models import ActiveGroup

logger = logging.getLogger("feishu")

# Feishu's ids (oc_…, om_…, ou_…, hex event ids) are short runs of these characters; anything else is refused
# before it is stored or put into a URL.
FEISHU_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

# How far back the first poll of a new (or re-activated) group reads.
FIRST_POLL_LOOKBACK_SECONDS = 30


def first_cursor_ms(now: datetime) -> int:
    """Where the first poll of a group starts reading (create_time in ms): a little before ``now``."""
    return int(now.timestamp() * 1000) - FIRST_POLL_LOOKBACK_SECONDS * 1000


def group_mark_active(*, chat_id: str, name: str = "", now: datetime | None = None) -> ActiveGroup:
    """Start (or keep) polling ``chat_id``: activity now, expiry a TTL from now, deactivation cleared.

    A group that had gone quiet resumes from a little before now rather than from its old cursor, so bot
    messages from the quiet period are not relayed late."""
    now = now or timezone.now()
    fresh_cursor = first_cursor_ms(now)
    group, created = ActiveGroup.objects.get_or_create(
        chat_id=chat_id,
        defaults={
            "name": name,
            "last_activity_at": now,
            "expires_at": ActiveGroup.expiry_from(now),
            "cursor_ms": fresh_cursor,
        },
    )
    if created:
        return group
    fields: dict[str, Any] = {
        "last_activity_at": now,
        "expires_at": ActiveGroup.expiry_from(now),
        "deactivated_at": None,
    }
    if name:
        fields["name"] = name
    if not group.is_active(now):
        ActiveGroup.objects.filter(Q(cursor_ms__isnull=True) | Q(cursor_ms__lt=fresh_cursor), pk=group.pk).update(
            cursor_ms=fresh_cursor
        )
    ActiveGroup.objects.filter(pk=group.pk).update(**fields)
    group.refresh_from_db()
    return group


def group_deactivate(*, group: ActiveGroup, reason: str, now: datetime | None = None) -> None:
    """Stop polling ``group`` until new activity (or an operator) turns it back on; the reason is kept."""
    now = now or timezone.now()
    ActiveGroup.objects.filter(pk=group.pk).update(deactivated_at=now, last_error=reason[:2000])
    logger.warning("Feishu group %s deactivated: %s", group.chat_id, reason)


def chat_id_problem(chat_id: object) -> str | None:
    """Why ``chat_id`` is not a usable Feishu chat id, or None."""
    return feishu_id_problem("chat_id", chat_id)


def feishu_id_problem(name: str, value: object) -> str | None:
    """Why ``value`` (the field ``name``) is not a Feishu id: not a string, empty, too long, other characters."""
    if not isinstance(value, str) or not value:
        return f"{name} is required"
    if len(value) > 100:
        return f"{name} is longer than 100 characters"
    if not FEISHU_ID_RE.match(value):
        return f"{name} may hold only letters, digits and '_.:-'"
    return None


def group_state(group: ActiveGroup) -> dict:
    """What a member is told after reporting activity: ``{"chat_id", "active", "expires_at"}``."""
    return {
        "chat_id": group.chat_id,
        "active": group.is_active(),
        "expires_at": group.expires_at.isoformat() if group.expires_at else None,
    }
