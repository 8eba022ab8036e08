"""Reads of collision coordination: claims and the collaboration memory."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from feishu.coordination.models import Claim, CollisionLog

MEMORY_LIMIT = 20


def claim_get(*, chat_id: str, message_id: str) -> Claim | None:
    return Claim.objects.filter(chat_id=chat_id, message_id=message_id).first()


def claims_fresh(*, now: datetime | None = None) -> QuerySet[Claim]:
    now = now or timezone.now()
    return Claim.objects.filter(answered_at__isnull=True, expires_at__gt=now)


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


def collisions_count(*, chat_id: str | None = None) -> int:
    rows = CollisionLog.objects.filter(kind=CollisionLog.Kind.COLLIDED)
    if chat_id:
        rows = rows.filter(chat_id=chat_id)
    return rows.count()
