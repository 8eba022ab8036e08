"""``Retry-After`` from a busy endpoint (RFC 9110 §10.2.3): seconds, or an HTTP date."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """How long the endpoint asked to be left alone: the header's delay in seconds, or the time until its
    date (0 for a date in the past). None when the header is missing or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(tz=UTC))).total_seconds())
