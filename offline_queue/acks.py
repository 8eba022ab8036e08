"""Acknowledgements: a client confirms deliveries written to its socket (the bridge's ``ack`` frame)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from foundation import metrics
from members.models import Member
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
    acknowledged and that has more waiting behind them is scheduled for delivery at once.

    One ``UPDATE … RETURNING`` marks and reads the acknowledged rows (SQLite 3.35+, PostgreSQL); only ids it did
    not change are looked up again, to tell a repeated ack from an unknown id."""
    result = AckResult()
    wanted = list(dict.fromkeys(i for i in message_ids if isinstance(i, str) and i))
    if not wanted:
        return result
    now = timezone.now()
    done = {row[0]: row for row in _mark_delivered(member_id=member_id, message_ids=wanted, now=now)}
    result.acknowledged = [i for i in wanted if i in done]
    rest = [i for i in wanted if i not in done]
    if rest:
        found = set(
            Message.objects.filter(message_id__in=rest, recipient__member_id=member_id).values_list(
                "message_id", flat=True
            )
        )
        result.already = [i for i in rest if i in found]  # not changed, so delivered already
        result.unknown = [i for i in rest if i not in found]
    for _, created_at, _, _ in done.values():
        metrics.TIME_TO_DELIVERY.observe(max(0.0, (now - _aware(created_at)).total_seconds()))
    for sender_id, recipient_id in {(row[2], row[3]) for row in done.values()}:
        pair_continue(sender_id=sender_id, recipient_id=recipient_id)
    return result


def _mark_delivered(*, member_id: str, message_ids: list[str], now: datetime) -> list[tuple]:
    """Mark the member's undelivered messages among ``message_ids`` delivered at ``now``; returns their
    ``(message_id, created_at, sender_id, recipient_id)``."""
    qn = connection.ops.quote_name
    meta, member = Message._meta, Member._meta
    column = {name: qn(meta.get_field(name).column) for name in ("message_id", "created_at", "sender_id", "recipient")}
    status, delivered_at = qn(meta.get_field("status").column), qn(meta.get_field("delivered_at").column)
    next_retry_at, last_error = qn(meta.get_field("next_retry_at").column), qn(meta.get_field("last_error").column)
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {status} = %s, {delivered_at} = %s, {next_retry_at} = NULL, {last_error} = '' "
        f"WHERE {column['message_id']} IN ({', '.join(['%s'] * len(message_ids))}) AND {status} <> %s "
        f"AND {column['recipient']} = (SELECT {qn(member.pk.column)} FROM {qn(member.db_table)} "
        f"WHERE {qn(member.get_field('member_id').column)} = %s) "
        f"RETURNING {column['message_id']}, {column['created_at']}, {column['sender_id']}, {column['recipient']}"
    )
    delivered = Message.Status.DELIVERED
    params = [delivered, connection.ops.adapt_datetimefield_value(now), *message_ids, delivered, member_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _aware(value) -> datetime:
    """A ``created_at`` as the raw cursor returns it (SQLite: text) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def pair_continue(*, sender_id: str, recipient_id: int) -> None:
    """A message of the pair was just acknowledged: when none of the pair is in flight any more and more waits
    behind, deliver the pair at once (in a background task) rather than at its next retry time."""
    pair = Message.objects.filter(sender_id=sender_id, recipient_id=recipient_id)
    # Usually more of the pair is still in flight (one cheap index probe says so) and nothing is due.
    in_flight = pair.filter(status=Message.Status.DELIVERING).exists()
    if not in_flight and pair.filter(status=Message.Status.QUEUED).exists():
        pair_schedule_delivery(sender_id=sender_id, recipient_id=recipient_id)
