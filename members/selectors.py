"""Reads from the member registry."""

from __future__ import annotations

from django.db.models import QuerySet

from members.models import Member, hash_token


def member_by_token(raw: str | None) -> Member | None:
    """The enabled member that owns ``raw``, or None."""
    if not raw:
        return None
    return Member.objects.filter(token_hash=hash_token(raw), enabled=True).first()


def member_get(member_id: str) -> Member | None:
    return Member.objects.filter(member_id=member_id).prefetch_related("channels").first()


def member_with_channels(member_id: str) -> Member | None:
    """The member ``member_id`` with its channels (``member.channels.all()`` asks the database no more), or None:
    the recipient read of every routed send."""
    return member_get(member_id)


def members_with_channels() -> QuerySet[Member]:
    return Member.objects.prefetch_related("channels").order_by("member_id")
