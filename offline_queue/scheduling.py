"""When pairs are delivered: the retry sweep (what is due), the flush of one member's queue when it comes online,
and background tasks for both."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from offline_queue.expiry import messages_expire
from offline_queue.models import DeliveryLease, Message
from offline_queue.pool import PairPool
from offline_queue.walk import PassStats, pair_deliver

logger = logging.getLogger("offline_queue")


def new_worker_id() -> str:
    """A lease owner name that is unique per process and readable in the admin."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def due_pairs(*, now: datetime | None = None, limit: int = 100) -> list[tuple[str, int]]:
    """Pairs whose oldest undelivered message may go now and that no worker holds, most overdue first."""
    now = now or timezone.now()
    heads = (
        Message.objects.filter(status__in=Message.UNDELIVERED)
        .values("sender_id", "recipient_id")
        .annotate(head=Min("pk"))
        .values("head")
    )
    ready = (
        Message.objects.filter(pk__in=heads)
        .filter(Q(last_attempt_at__isnull=True) | Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
        .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
        .order_by("next_retry_at", "pk")
        .values_list("sender_id", "recipient_id")
    )
    held = set(
        DeliveryLease.objects.exclude(owner="").filter(expires_at__gte=now).values_list("sender_id", "recipient_id")
    )
    return [pair for pair in ready[: limit + len(held)] if pair not in held][:limit]


def queue_sweep(*, owner: str, limit: int = 100, workers: int | None = None) -> PassStats:
    """One pass of the retry scheduler: expire what is past its expiry, then deliver every due pair, up to
    ``workers`` pairs at once (``HUB_QUEUE_WORKERS``; see ``offline_queue.pool``). Returns what was done once
    every pair of the pass finished."""
    stats = PassStats()
    stats.expired = messages_expire()
    pool = PairPool(owner=owner, workers=workers)
    try:
        pool.submit(due_pairs(limit=limit))
        pool.wait_all()
    finally:
        pool.shutdown()
    stats.add(pool.collect())
    return stats


def member_flush(*, member_id: str, online_at: datetime | None = None, owner: str | None = None) -> PassStats:
    """Deliver everything waiting for ``member_id`` at once (it came online at ``online_at``): every sender's
    messages in order, in batches, whatever their retry time; what was written to a socket before
    ``online_at`` and not acknowledged is sent again. Pairs another worker holds are left to it."""
    owner = owner or new_worker_id()
    online_at = online_at or timezone.now()
    started = time.perf_counter()
    heads = (
        Message.objects.filter(recipient__member_id=member_id, status__in=Message.UNDELIVERED)
        .values("sender_id", "recipient_id")
        .annotate(head=Min("pk"))
        .order_by("head")
    )
    stats = PassStats()
    for pair in list(heads):
        stats.add(
            pair_deliver(
                sender_id=pair["sender_id"],
                recipient_id=pair["recipient_id"],
                owner=owner,
                due_only=False,
                resend_sent_before=online_at,
            )
        )
    if stats.worked:
        logger.info(
            "flushed the queue of %s in %.2f s: %d delivered, %d sent, %d back in the queue",
            member_id,
            time.perf_counter() - started,
            stats.delivered,
            stats.sent,
            stats.requeued,
        )
    return stats


def pair_schedule_delivery(*, sender_id: str, recipient_id: int) -> None:
    """Deliver the pair in a background task once the current transaction commits."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("offline_queue.tasks.deliver_pair", sender_id, recipient_id, group="offline_queue")
    )


def member_schedule_flush(*, member_id: str) -> None:
    """Flush ``member_id``'s queue in a background task once the current transaction commits (no task when
    nothing waits for the member: most reconnects)."""
    from django_q.tasks import async_task

    if not Message.objects.filter(recipient__member_id=member_id, status__in=Message.UNDELIVERED).exists():
        return

    online_at = timezone.now().isoformat()
    transaction.on_commit(
        lambda: async_task("offline_queue.tasks.flush_member", member_id, online_at, group="offline_queue")
    )
