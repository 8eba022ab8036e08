"""Acknowledgements: a client confirms deliveries written to its socket (the bridge's ``ack`` frame)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from hub import metrics
from offline_queue.models import Message
from offline_queue.scheduling import pair_schedule_delivery


@dataclass
class AckResult:
    acknowledged: list[str] = field(default_factory=list)  # newly marked delivered
    already: list[str] = field(default_factory=list)  # delivered before (a repeated ack)
    unknown: list[str] = field(default_factory=list)  # no such message for this member


def messages_acknowledge(*, member_id: str, message_ids: list[str]) -> AckResult:
    """Mark the member's messages ``message_ids`` delivered (the client's ``ack``). Idempotent; ids that are
    not messages to ``member_id`` come back in ``unknown``. A pair whose in-flight messages are now all
    acknowledged and that has more waiting behind them is scheduled for delivery at once."""
    result = AckResult()
    wanted = list(dict.fromkeys(i for i in message_ids if isinstance(i, str) and i))
    rows = {
        row["message_id"]: row
        for row in Message.objects.filter(message_id__in=wanted, recipient__member_id=member_id).values(
            "pk", "message_id", "status", "created_at", "sender_id", "recipient_id"
        )
    }
    result.unknown = [i for i in wanted if i not in rows]
    result.already = [i for i in wanted if i in rows and rows[i]["status"] == Message.Status.DELIVERED]
    todo = [row for row in rows.values() if row["status"] != Message.Status.DELIVERED]
    if not todo:
        return result
    now = timezone.now()
    Message.objects.filter(pk__in=[row["pk"] for row in todo]).exclude(status=Message.Status.DELIVERED).update(
        status=Message.Status.DELIVERED, delivered_at=now, next_retry_at=None, last_error=""
    )
    result.acknowledged = [row["message_id"] for row in todo]
    for row in todo:
        metrics.TIME_TO_DELIVERY.observe(max(0.0, (now - row["created_at"]).total_seconds()))
    for sender_id, recipient_id in {(row["sender_id"], row["recipient_id"]) for row in todo}:
        pair_continue(sender_id=sender_id, recipient_id=recipient_id)
    return result


def pair_continue(*, sender_id: str, recipient_id: int) -> None:
    """A message of the pair was just acknowledged: when none of the pair is in flight any more and more waits
    behind, deliver the pair at once (in a background task) rather than at its next retry time."""
    pair = Message.objects.filter(sender_id=sender_id, recipient_id=recipient_id)
    # Usually more of the pair is still in flight (one cheap index probe says so) and nothing is due.
    in_flight = pair.filter(status=Message.Status.DELIVERING).exists()
    if not in_flight and pair.filter(status=Message.Status.QUEUED).exists():
        pair_schedule_delivery(sender_id=sender_id, recipient_id=recipient_id)
