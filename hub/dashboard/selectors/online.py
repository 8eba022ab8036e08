"""The online page: every member and channel, its state and how many messages wait for it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from delivery import online as delivery_presence
from members.models import Channel, Member
from offline_queue.selectors import queue_depth_by_member


@dataclass
class ChannelState:
    id: int
    kind: str
    kind_label: str
    address: str
    state: str  # live | refusing | down | disabled
    last_seen: datetime | None
    last_ok: datetime | None
    last_error: str
    last_error_at: datetime | None
    reason: str = ""  # how a refusing endpoint refused (HTTP 401 …)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "reason": self.reason,
            "last_seen": _iso(self.last_seen),
            "last_error_at": _iso(self.last_error_at),
        }


@dataclass
class MemberState:
    member_id: str
    name: str
    kind: str
    state: str  # online | refusing | offline | disabled
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


# What the delivery core's channel states are called on the pages.
_SHOWN = {delivery_presence.UP: "live", delivery_presence.REFUSING: "refusing"}


def channel_state(channel: Channel, now: datetime) -> ChannelState:
    state = "disabled" if not channel.enabled else _SHOWN.get(delivery_presence.channel_state(channel, now), "down")
    return ChannelState(
        id=channel.pk,
        kind=channel.kind,
        kind_label=channel.get_kind_display(),
        address=channel.shown_address,
        state=state,
        last_seen=channel.last_seen or channel.last_ok,
        last_ok=channel.last_ok,
        last_error=channel.last_error,
        last_error_at=channel.last_error_at,
        reason=delivery_presence.refusal_reason(channel) if state == "refusing" else "",
    )


def member_state(member: Member, now: datetime, pending: int = 0) -> MemberState:
    """``member`` (with its channels prefetched) as the online page shows it, ``pending`` messages waiting."""
    channels = [channel_state(c, now) for c in member.channels.all()]
    state = "disabled" if not member.enabled else "online" if member.is_online(now) else "offline"
    if state == "offline" and any(c.state == "refusing" for c in channels):
        state = "refusing"  # reachable, but an endpoint refuses the hub: delivery would fail
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
    return {name: counts[name] for name in ("online", "refusing", "offline", "disabled")}
