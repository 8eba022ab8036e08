"""The member page: one member, its channels with their last errors, what waits for it, its recent deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from hub.dashboard.selectors.online import MemberState, member_state
from members.models import Member
from offline_queue.models import DeliveryAttempt, Message


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
        return [(m, m.is_discarded) for m in self.undelivered]


def member_detail(member_id: str, now: datetime | None = None, limit: int = 50) -> MemberDetail | None:
    """A member, its channels (with their last errors), what waits for it, and its recent deliveries; None
    when there is no such member."""
    now = now or timezone.now()
    member = Member.objects.filter(member_id=member_id).prefetch_related("channels").first()
    if member is None:
        return None
    inbox = Message.objects.filter(recipient=member).select_related("recipient")
    waiting = inbox.filter(status__in=Message.UNDELIVERED)
    attempts = (
        DeliveryAttempt.objects.filter(message__recipient=member)
        .select_related("message")
        .order_by("-started_at", "-id")
    )
    sent = Message.objects.filter(sender_id=member.member_id).select_related("recipient").order_by("-id")
    return MemberDetail(
        member=member,
        state=member_state(member, now, waiting.count()),
        pending=list(waiting.order_by("id")[:limit]),
        undelivered=list(inbox.filter(status__in=Message.CLOSED).order_by("-id")[:limit]),
        attempts=list(attempts[:limit]),
        sent=list(sent[:20]),
    )
