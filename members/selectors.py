"""Reads from the member registry."""

from __future__ import annotations

from django.db.models import QuerySet

from foundation.prepared import prepared
from members.models import Channel, Member, hash_token


def member_by_token(raw: str | None) -> Member | None:
    """The enabled member that owns ``raw``, or None."""
    if not raw:
        return None
    return Member.objects.filter(token_hash=hash_token(raw), enabled=True).first()


def member_get(member_id: str) -> Member | None:
    return Member.objects.filter(member_id=member_id).prefetch_related("channels").first()


def member_with_channels(member_id: str) -> Member | None:
    """The member ``member_id`` with its channels, as ``member_get`` reads it (``member.channels.all()`` asks
    the database no more), in one query: its channels joined with it. A member without channels costs a second
    query; None when there is no such member."""
    # Sorted here: an ORDER BY costs more to compile than the sort of a member's few channels.
    channels = sorted(_channels_with_member(member_id), key=lambda channel: channel.kind)
    if not channels:
        member = Member.objects.filter(member_id=member_id).first()
    else:
        member = channels[0].member
        for channel in channels:
            channel.member = member  # one instance for all, as a prefetch gives
    if member is not None:
        _set_prefetched_channels(member, channels)
    return member


@prepared(str)
def _channels_with_member(member_id: str) -> QuerySet[Channel]:
    """The member's channels joined with it: the read of every routed send, so compiled once per process."""
    return Channel.objects.filter(member__member_id=member_id).select_related("member").order_by()


def _set_prefetched_channels(member: Member, channels: list[Channel]) -> None:
    """What ``prefetch_related("channels")`` leaves on ``member``: ``member.channels.all()`` answers ``channels``."""
    manager = member.channels
    queryset = manager.get_queryset()
    queryset._result_cache = channels
    queryset._prefetch_done = True
    member._prefetched_objects_cache = {manager.field.remote_field.cache_name: queryset}


def members_with_channels() -> QuerySet[Member]:
    return Member.objects.prefetch_related("channels").order_by("member_id")
