"""The retry policy (seed 001 "重试策略"): first retry 60 s after enqueue, doubling, at most 10 min apart,
at most 10 retries, expired 24 h after enqueue. Every number is a setting."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings


def retry_delay(retry_count: int) -> timedelta:
    """The wait before retry number ``retry_count + 1``: 60, 120, 240, 480, 600, 600, … seconds."""
    seconds = settings.HUB_RETRY_FIRST_DELAY * (2 ** min(retry_count, 30))
    return timedelta(seconds=min(seconds, settings.HUB_RETRY_MAX_DELAY))


def expiry_for(accepted_at: datetime) -> datetime:
    return accepted_at + timedelta(seconds=settings.HUB_MESSAGE_TTL)
