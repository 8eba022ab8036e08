"""The retry policy (seed 001 "重试策略"): first retry 60 s after enqueue, doubling, at most 10 min apart,
at most 10 retries, expired 24 h after enqueue. Every number is a setting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings


def retry_delay(retry_count: int) -> timedelta:
    """The wait before retry number ``retry_count + 1``: 60, 120, 240, 480, 600, 600, … seconds."""
    seconds = settings.HUB_RETRY_FIRST_DELAY * (2 ** min(retry_count, 30))
    return timedelta(seconds=min(seconds, settings.HUB_RETRY_MAX_DELAY))


def asked_delay(retry_after: float | None) -> timedelta:
    """The wait a recipient asked for (``Retry-After`` seconds), at most ``HUB_RETRY_MAX_DELAY``; zero when it
    asked for none."""
    if not retry_after or retry_after <= 0:
        return timedelta(0)
    return timedelta(seconds=min(retry_after, settings.HUB_RETRY_MAX_DELAY))


def expiry_for(accepted_at: datetime) -> datetime:
    return accepted_at + timedelta(seconds=settings.HUB_MESSAGE_TTL)


def ack_deadline(sent_at: datetime, *, within: float | None = None) -> datetime:
    """When a delivery written to a bridge socket and not acknowledged goes back to the queue: after the ack
    timeout, or ``within`` seconds when the delivery said how long its acknowledgement may take."""
    return sent_at + timedelta(seconds=settings.HUB_BRIDGE_ACK_TIMEOUT if within is None else within)


@dataclass(frozen=True)
class RetryPolicy:
    """The policy in force, as the admin and the dashboards show it."""

    first_delay: int
    max_delay: int
    max_retries: int
    ttl: int
    ack_timeout: int
    lease_seconds: int
    batch: int

    @classmethod
    def current(cls) -> RetryPolicy:
        return cls(
            first_delay=settings.HUB_RETRY_FIRST_DELAY,
            max_delay=settings.HUB_RETRY_MAX_DELAY,
            max_retries=settings.HUB_RETRY_MAX_RETRIES,
            ttl=settings.HUB_MESSAGE_TTL,
            ack_timeout=settings.HUB_BRIDGE_ACK_TIMEOUT,
            lease_seconds=settings.HUB_QUEUE_LEASE_SECONDS,
            batch=settings.HUB_QUEUE_BATCH,
        )

    def schedule(self) -> list[int]:
        """Seconds between consecutive attempts: the wait before retry 1, 2, … ``max_retries``."""
        return [int(retry_delay(n).total_seconds()) for n in range(self.max_retries)]
