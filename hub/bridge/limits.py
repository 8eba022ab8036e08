"""What one bridge socket may ask of the hub (docs/bridge.md "Limits"): checked before anything is stored or
forwarded, refused with an ``error`` frame carrying a ``reason``.

- Chats count against the sender's send rate: a member's against its per-minute ``send_rate``, the same counter
  as ``POST /api/unified/send`` (``delivery.rate``); a token-less user's against
  ``HUB_BRIDGE_ANON_RATE_PER_MINUTE`` per client address.
- Chats waiting for their reply: at most ``HUB_BRIDGE_MAX_PENDING_CHATS`` per socket.
- Acks received and not yet stored: at most ``HUB_BRIDGE_MAX_PENDING_ACKS`` per socket.

What a socket may have written to it and not read is bounded by ``hub.bridge.outflow``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings

from delivery.rate import address_take_chat_slot, member_take_chat_slot
from foundation import metrics
from foundation.hot_settings import HOT
from foundation.sockets import FrameError
from hub.bridge.registry import AWAITING, PENDING

logger = logging.getLogger(__name__)

RATE_LIMITED = "rate_limited"
TOO_MANY_PENDING_CHATS = "too_many_pending_chats"
TOO_MANY_PENDING_ACKS = "too_many_pending_acks"
QUEUE_FULL = "queue_full"
REASONS = (RATE_LIMITED, TOO_MANY_PENDING_CHATS, TOO_MANY_PENDING_ACKS, QUEUE_FULL)


class Refused(FrameError):
    """A frame refused by a limit: an ``error`` frame with ``reason`` (and ``retry_after`` seconds, when known)."""

    def __init__(self, message: str, reason: str, retry_after: int | None = None) -> None:
        metrics.BRIDGE_REFUSALS.labels(reason).inc()
        fields: dict = {"reason": reason}
        if retry_after is not None:
            fields["retry_after"] = retry_after
        super().__init__(message, **fields)


@dataclass
class SocketLimits:
    """One socket's count of what it has outstanding."""

    # request_ids of this socket's chats forwarded to a live backend, until they leave PENDING/AWAITING.
    asked: set[str] = field(default_factory=set)

    def waiting_chats(self) -> int:
        """How many of this socket's chats still wait for their reply (forgets the ones answered or expired)."""
        self.asked = {request_id for request_id in self.asked if request_id in PENDING or request_id in AWAITING}
        return len(self.asked)


def chat_admitted(consumer) -> None:
    """Count one chat of ``consumer`` against its rate and its waiting chats; raises ``Refused`` when over."""
    limit = HOT.HUB_BRIDGE_MAX_PENDING_CHATS
    limits: SocketLimits = consumer.limits
    if len(limits.asked) >= limit and limits.waiting_chats() >= limit:
        raise Refused(
            f"chat: {limit} chats of this connection are waiting for their reply; wait for a reply before sending more",
            TOO_MANY_PENDING_CHATS,
        )
    member = consumer.member
    if member is not None:
        rate = member.send_rate
        retry_after = member_take_chat_slot(member=member, limit=rate)
        who = f"member {member.member_id!r}"
    else:
        rate = settings.HUB_BRIDGE_ANON_RATE_PER_MINUTE
        retry_after = address_take_chat_slot(address=consumer.address, limit=rate)
        who = "a connection without a member token (per address)"
    if retry_after:
        raise Refused(
            f"chat: send rate of {rate} messages per minute exceeded for {who}; nothing was sent, try again in "
            f"{retry_after} s",
            RATE_LIMITED,
            retry_after,
        )


def chat_forwarded(consumer, request_id: str | None) -> None:
    """The chat ``request_id`` went to a live backend: it counts as waiting until its reply (or expiry)."""
    if request_id:
        consumer.limits.asked.add(request_id)


def acks_admitted(consumer, count: int) -> None:
    """May ``count`` more acks wait to be stored on ``consumer``? Raises ``Refused`` when not."""
    limit = settings.HUB_BRIDGE_MAX_PENDING_ACKS
    waiting = len(consumer.pending_acks)
    if waiting + count > limit:
        raise Refused(
            f"ack: {waiting} acks of this connection are still being stored (at most {limit}); these {count} were "
            "not taken: send them again once earlier acks are stored (unacknowledged messages are delivered again)",
            TOO_MANY_PENDING_ACKS,
        )
