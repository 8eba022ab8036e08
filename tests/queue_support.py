"""Helpers for the offline queue's unit tests: members, accepted messages and a scripted recipient that
stands in for the router (``delivery.router.attempt``) where a test is about the policy, not the transports."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from members.models import Member
from members.services import member_create
from offline_queue.models import Message
from offline_queue.outcome import Outcome, message_record_outcome
from offline_queue.policy import expiry_for


def member(member_id: str = "lingflow") -> Member:
    return member_create(member_id=member_id, name=member_id, backend_id=member_id).member


def accept(recipient: Member, *, sender_id: str = "lingyi", n: int = 1, **extra) -> list[Message]:
    """Messages accepted for ``recipient`` while it is offline: stored, first attempt failed (as
    ``delivery.services.message_send`` leaves them), or queued behind an earlier undelivered one."""
    made = []
    for _ in range(n):
        behind = Message.objects.filter(
            sender_id=sender_id, recipient=recipient, status__in=Message.UNDELIVERED
        ).exists()
        now = timezone.now()
        message = Message.objects.create(
            sender_id=sender_id,
            recipient=recipient,
            content=f"#{len(made)}",
            expires_at=expiry_for(now),
            next_retry_at=now,
            **extra,
        )
        if not behind:
            message_record_outcome(message, Outcome("transient", error="recipient offline"))
        made.append(message)
    return made


@dataclass
class Recipient:
    """What the router would report: ``online`` decides between ``delivered`` (or ``sent``, waiting for an
    ack, with ``over_bridge``) and ``transient``; ``failing`` message ids fail transiently even when online."""

    online: bool = False
    over_bridge: bool = False
    failing: set[str] = field(default_factory=set)
    permanent: set[str] = field(default_factory=set)
    attempts: list[str] = field(default_factory=list)  # message_id of every attempt, in order
    received: list[str] = field(default_factory=list)  # what reached the recipient, in order

    def attempt(self, message: Message) -> Outcome:
        self.attempts.append(message.message_id)
        if message.message_id in self.permanent:
            return Outcome("permanent", channel="lingmessage", error="410 Gone")
        if not self.online or message.message_id in self.failing:
            return Outcome("transient", error="recipient offline")
        self.received.append(message.message_id)
        if self.over_bridge:
            return Outcome("sent", channel="socket")
        return Outcome("delivered", channel="lingmessage")


def ids(messages: list[Message]) -> list[str]:
    return [m.message_id for m in messages]
