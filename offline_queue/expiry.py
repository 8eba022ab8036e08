"""Expiry and clean-up of the message store."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from foundation import metrics
from offline_queue.models import Message
from offline_queue.undelivered_alerts import alert_undelivered

EXPIRED_ERROR = "not delivered before its expiry"


def messages_expire(
    *, now: datetime | None = None, ids: list[int] | None = None, error: str = EXPIRED_ERROR, force: bool = False
) -> int:
    """Close every undelivered message past its expiry as expired (with an alert); returns how many this call
    closed. ``ids`` limits it to those messages; with ``force`` they expire whatever their expiry (an operator
    removing their recipient), ``error`` saying why.

    Only the rows this call changed are counted and alerted: two workers expiring the same messages at once
    (the scheduler's pass, a walk that met an expired message, the django-q2 expiry task) alert once."""
    now = now or timezone.now()
    due = Message.objects.filter(status__in=Message.UNDELIVERED)
    if not force:
        ttl_ago = now - timedelta(seconds=settings.HUB_MESSAGE_TTL)
        due = due.filter(Q(expires_at__lte=now) | Q(expires_at__isnull=True, created_at__lte=ttl_ago))
    if ids is not None:
        due = due.filter(pk__in=ids)
    candidates = list(due.select_related("recipient"))
    if not candidates:
        return 0
    changed = _expire_returning([m.pk for m in candidates], error=error)
    expired = [m for m in candidates if m.pk in changed]
    if not expired:
        return 0
    per_member = Tally(m.recipient.member_id for m in expired)
    for member, n in per_member.items():
        metrics.EXPIRED.labels(member=member).inc(n)
    for m in expired:
        m.status, m.next_retry_at, m.last_error = Message.Status.EXPIRED, None, error
    alert_undelivered(messages=expired, reason="expired")
    return len(expired)


def _expire_returning(ids: list[int], *, error: str) -> set[int]:
    """Mark the still undelivered messages among ``ids`` expired, in one conditional UPDATE … RETURNING
    (SQLite 3.35+ and PostgreSQL); returns the pks of the rows it changed."""
    qn = connection.ops.quote_name
    meta = Message._meta
    column = {name: qn(meta.get_field(name).column) for name in ("status", "next_retry_at", "last_error")}
    pk = qn(meta.pk.column)
    changed: set[int] = set()
    for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        sql = (
            f"UPDATE {qn(meta.db_table)} SET {column['status']} = %s, {column['next_retry_at']} = NULL, "
            f"{column['last_error']} = %s "
            f"WHERE {pk} IN ({', '.join(['%s'] * len(chunk))}) AND {column['status']} IN (%s, %s) RETURNING {pk}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [Message.Status.EXPIRED, error, *chunk, *Message.UNDELIVERED])
            changed.update(row[0] for row in cursor.fetchall())
    return changed


def messages_cleanup(*, now: datetime | None = None) -> int:
    """Delete delivered, expired and failed messages older than the retention period (with their attempts)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HUB_MESSAGE_RETENTION_DAYS)
    _, per_model = Message.objects.filter(status__in=Message.TERMINAL, created_at__lt=cutoff).delete()
    return per_model.get(Message._meta.label, 0)
