"""Pair leases: one worker at a time delivers a sender→recipient pair (``DeliveryLease``, ``foundation.leases.take``).

A worker holds the lease while it walks the pair (``PairLease``) and renews it every third of its lifetime,
checked before every message: a renewal that fails means another worker took the pair over (this one was
stalled past the lease), and the walk stops before it sends another message of the pair.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from foundation.leases import take
from offline_queue.models import DeliveryLease

logger = logging.getLogger("offline_queue")


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
    """Extend the lease ``owner`` holds; False when it was lost (taken over by another worker once it had
    expired). A lease that ran out but that nobody took is still the owner's: a claim changes the owner, so
    an unchanged owner means no other worker went near the pair."""
    now = timezone.now()
    return bool(
        DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id, owner=owner).update(
            expires_at=_lease_until(now)
        )
    )


def pair_lease_release(*, sender_id: str, recipient_id: int, owner: str) -> None:
    DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id, owner=owner).update(
        owner="", expires_at=None
    )


class PairLease:
    """The lease on one pair while a worker walks it: ``claim()`` once, ``keep()`` before every message (a
    clock check; one UPDATE every third of the lease), ``release()`` at the end. Once ``keep()`` said False
    the lease is lost for good and the walk must stop."""

    def __init__(
        self, *, sender_id: str, recipient_id: int, owner: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sender_id, self.recipient_id, self.owner = sender_id, recipient_id, owner
        self.clock = clock
        self.renew_every = settings.HUB_QUEUE_LEASE_SECONDS / 3
        self.renewed_at = 0.0
        self.held = False
        self.lost = False

    def claim(self) -> bool:
        """Take the pair; True when this worker now holds it."""
        self.held = pair_lease_claim(sender_id=self.sender_id, recipient_id=self.recipient_id, owner=self.owner)
        self.renewed_at = self.clock()
        return self.held

    def keep(self) -> bool:
        """True while the lease is this worker's: renewed when a third of its lifetime has passed since the
        last renewal (until then nobody can have taken it). False once another worker took it over."""
        if self.lost or not self.held:
            return False
        if self.clock() - self.renewed_at < self.renew_every:
            return True
        if pair_lease_renew(sender_id=self.sender_id, recipient_id=self.recipient_id, owner=self.owner):
            self.renewed_at = self.clock()
            return True
        self.lost, self.held = True, False
        logger.warning("lost the lease on %s→%s; another worker goes on", self.sender_id, self.recipient_id)
        return False

    def release(self) -> None:
        if self.held:
            pair_lease_release(sender_id=self.sender_id, recipient_id=self.recipient_id, owner=self.owner)
            self.held = False
