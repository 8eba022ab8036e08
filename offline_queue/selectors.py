"""Reads from the message store for the API, the dashboards, /metrics and the admin."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum

from members.models import Member
from offline_queue.models import Message


@dataclass(frozen=True)
class RetryStats:
    """Delivery figures for one recipient over one channel (``channel`` is ``""`` for messages that never
    reached any channel)."""

    member_id: str
    channel: str
    delivered: int
    retried: int  # messages that needed at least one retry
    retries: int  # retries made in all
    expired: int
    failed: int
    waiting: int  # still queued or waiting for an ack
    mean_time_to_delivery: float | None  # seconds from acceptance to delivery, delivered messages only


def retry_stats(*, since: datetime | None = None, member_id: str | None = None) -> list[RetryStats]:
    """Per member and channel: delivered, retried, expired, failed, waiting and mean time to delivery of the
    messages accepted since ``since`` (all when None), ordered by member and channel."""
    messages = Message.objects.all()
    if since is not None:
        messages = messages.filter(created_at__gte=since)
    if member_id is not None:
        messages = messages.filter(recipient__member_id=member_id)
    delivered = Q(status=Message.Status.DELIVERED)
    rows = (
        messages.values("recipient__member_id", "delivered_via")
        .annotate(
            delivered=Count("pk", filter=delivered),
            retried=Count("pk", filter=Q(retry_count__gt=0)),
            retries=Sum("retry_count"),
            expired=Count("pk", filter=Q(status=Message.Status.EXPIRED)),
            failed=Count("pk", filter=Q(status=Message.Status.FAILED)),
            waiting=Count("pk", filter=Q(status__in=Message.UNDELIVERED)),
            mean_ttd=Avg(
                ExpressionWrapper(F("delivered_at") - F("created_at"), output_field=DurationField()), filter=delivered
            ),
        )
        .order_by("recipient__member_id", "delivered_via")
    )
    return [
        RetryStats(
            member_id=row["recipient__member_id"],
            channel=row["delivered_via"],
            delivered=row["delivered"],
            retried=row["retried"],
            retries=row["retries"] or 0,
            expired=row["expired"],
            failed=row["failed"],
            waiting=row["waiting"],
            mean_time_to_delivery=row["mean_ttd"].total_seconds() if row["mean_ttd"] is not None else None,
        )
        for row in rows
    ]


def queue_depth_by_member() -> dict[str, int]:
    """Undelivered messages (queued or waiting for an ack) per member_id, every member included."""
    depth = dict.fromkeys(Member.objects.order_by("member_id").values_list("member_id", flat=True), 0)
    rows = (
        Message.objects.filter(status__in=Message.UNDELIVERED)
        .values("recipient__member_id")
        .annotate(n=Count("pk"))
        .values_list("recipient__member_id", "n")
    )
    depth.update(rows)
    return depth


def queue_totals() -> dict[str, int]:
    """Messages per status, every status included."""
    totals = dict.fromkeys(Message.Status.values, 0)
    totals.update(Message.objects.values("status").annotate(n=Count("pk")).values_list("status", "n"))
    return totals


def member_queue(member_id: str) -> QuerySet[Message]:
    """What waits for ``member_id``, in delivery order (oldest first)."""
    return Message.objects.filter(recipient__member_id=member_id, status__in=Message.UNDELIVERED).order_by("pk")


def sender_has_undelivered(*, sender_id: str, recipient_pk: int) -> bool:
    """Whether an earlier message of ``sender_id`` to the recipient is still undelivered (a new one queues behind
    it, keeping the order). The order check of every send: one fixed statement (0.02 ms), where the ORM's
    ``exists()`` built and compiled the same query on every call (0.3 ms)."""
    with connection.cursor() as cursor:
        cursor.execute(_undelivered_sql(), [sender_id, recipient_pk, *Message.UNDELIVERED])
        return cursor.fetchone() is not None


@functools.cache
def _undelivered_sql() -> str:
    """``SELECT 1 … LIMIT 1``: a message of the sender (``%s``) to the recipient (``%s``) in one of the
    undelivered statuses (``%s``, …); the composite index on these columns answers it."""
    qn = connection.ops.quote_name
    meta = Message._meta
    table = qn(meta.db_table)
    sender, recipient, status = (qn(meta.get_field(name).column) for name in ("sender_id", "recipient", "status"))
    statuses = ", ".join(["%s"] * len(Message.UNDELIVERED))
    return f"SELECT 1 FROM {table} WHERE {sender} = %s AND {recipient} = %s AND {status} IN ({statuses}) LIMIT 1"
