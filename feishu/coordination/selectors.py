"""Reads of collision coordination: the collaboration memory, and the collision log as the dashboard shows it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from feishu.coordination.models import Claim, CollisionLog

MEMORY_LIMIT = 20


def collaboration_memory(*, chat_id: str, limit: int = MEMORY_LIMIT) -> list[dict]:
    """The chat's recent deferrals, collisions and repairs, newest first, each as
    ``{"kind", "bots", "message_id", "repair_text", "at", "text"}`` where ``text`` reads like
    "lingyi deferred to lingzhi on om_1"."""
    rows = CollisionLog.objects.filter(chat_id=chat_id).order_by("-created_at", "-id")[:limit]
    return [
        {
            "kind": row.kind,
            "bots": list(row.bots),
            "message_id": row.message_id,
            "repair_text": row.repair_text,
            "at": row.created_at.isoformat(),
            "text": row.describe(),
        }
        for row in rows
    ]


def memory_frame(*, chat_id: str, limit: int = MEMORY_LIMIT) -> dict:
    """The ``coord_memory_result`` frame (and the body of ``GET /api/coord/memory/<chat_id>``)."""
    return {
        "type": "coord_memory_result",
        "chat_id": chat_id,
        "entries": collaboration_memory(chat_id=chat_id, limit=limit),
    }


def chats_with_memory() -> QuerySet:
    """One row per chat with counts per kind and the last entry's time (the admin's memory page)."""
    return (
        CollisionLog.objects.values("chat_id").annotate(entries=Count("id"), last=Max("created_at")).order_by("-last")
    )


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
    hours: list[datetime] = field(default_factory=list)
    per_hour: list[dict[str, int]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    rows: list[CollisionRow] = field(default_factory=list)
    floors: list[dict] = field(default_factory=list)


def collision_report(now: datetime | None = None, hours: int = 24, limit: int = 100) -> CollisionReport:
    """The collision log of the last ``hours`` (per hour by kind), its newest ``limit`` entries, and who holds
    the floor on a message right now."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    per_hour: list[Counter] = [Counter() for _ in range(hours)]
    for kind, created in CollisionLog.objects.filter(created_at__gte=start, created_at__lte=now).values_list(
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
            description=entry.describe(),
        )
        for entry in CollisionLog.objects.order_by("-created_at", "-id")[:limit]
    ]
    fresh = Claim.objects.filter(answered_at__isnull=True, released_at__isnull=True, expires_at__gt=now)
    return CollisionReport(
        hours=[start + timedelta(hours=i) for i in range(hours)],
        per_hour=[dict(c) for c in per_hour],
        totals=dict(sum(per_hour, Counter())),
        rows=rows,
        floors=list(fresh.order_by("-claimed_at").values("chat_id", "message_id", "holder", "expires_at")[:50]),
    )
