"""Reads from the member registry."""

from __future__ import annotations

from typing import NamedTuple

from django.db.models import QuerySet

from members.models import Channel, Member, hash_token


def member_by_token(raw: str | None) -> Member | None:
    """The enabled member that owns ``raw``, or None."""
    if not raw:
        return None
    return Member.objects.filter(token_hash=hash_token(raw), enabled=True).first()


def member_get(member_id: str) -> Member | None:
    return Member.objects.filter(member_id=member_id).prefetch_related("channels").first()


class MemberChannels(NamedTuple):
    """A member and its channels (by kind), read together."""

    member: Member
    channels: list[Channel]


def member_with_channels(member_id: str) -> MemberChannels | None:
    """The member ``member_id`` and its channels, or None: the recipient read of every routed send. One query (its
    channels joined with it, each channel's ``member`` the one instance); a member without channels costs a
    second."""
    # Sorted here: an ORDER BY (Channel's default joins the member again) costs more to compile than the sort of a
    # member's few channels.
    joined = Channel.objects.filter(member__member_id=member_id).select_related("member").order_by()
    channels = sorted(joined, key=lambda channel: (channel.kind, channel.pk))
    if not channels:
        member = Member.objects.filter(member_id=member_id).first()
        return None if member is None else MemberChannels(member, [])
    member = channels[0].member
    for channel in channels:
        channel.member = member
    return MemberChannels(member, channels)


def members_with_channels() -> QuerySet[Member]:
    return Member.objects.prefetch_related("channels").order_by("member_id")
