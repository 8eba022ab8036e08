"""Pair leases: one worker at a time delivers a sender→recipient pair (``DeliveryLease``, ``hub.leases.take``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from hub.leases import take
from offline_queue.models import DeliveryLease


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HUB_QUEUE_LEASE_SECONDS)


def pair_lease_claim(*, sender_id: str, recipient_id: int, owner: str, now: datetime | None = None) -> bool:
    """Take the pair's lease with a conditional UPDATE (or create it); True when ``owner`` now holds it."""
    now = now or timezone.now()
    until = _lease_until(now)
    return take(
        DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id),
        free=Q(owner="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now),
        values={"owner": owner, "expires_at": until},
        create={"sender_id": sender_id, "recipient_id": recipient_id, "owner": owner, "expires_at": until},
    )


def pair_lease_renew(*, sender_id: str, recipient_id: int, owner: str) -> bool:
    """Extend the lease ``owner`` holds; False when it was lost (expired and taken over)."""
    now = timezone.now()
    return bool(
        DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id, owner=owner)
        .filter(expires_at__gte=now)
        .update(expires_at=_lease_until(now))
    )


def pair_lease_release(*, sender_id: str, recipient_id: int, owner: str) -> None:
    DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id, owner=owner).update(
        owner="", expires_at=None
    )
