"""django-q2 tasks: thin wrappers around the services, run by ``qcluster`` (inline in unit tests).

The database rows are the source of truth: a task that is lost (a worker killed mid-run) leaves its
messages queued or waiting for an ack, and the retry sweep takes them up again.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from offline_queue import expiry, scheduling, undelivered_alerts, walk


def deliver_pair(sender_id: str, recipient_id: int) -> dict:
    """Deliver what waits from one sender to one recipient (not waiting for retry times)."""
    owner = scheduling.new_worker_id()
    return asdict(walk.pair_deliver(sender_id=sender_id, recipient_id=recipient_id, owner=owner, due_only=False))


def flush_member(member_id: str, online_at: str | None = None) -> dict:
    """A member came online (at ``online_at``, ISO 8601): deliver its whole queue now."""
    when = datetime.fromisoformat(online_at) if online_at else None
    return asdict(scheduling.member_flush(member_id=member_id, online_at=when))


def sweep() -> dict:
    """The scheduled retry sweep (``retry_queue`` does the same continuously)."""
    return asdict(scheduling.queue_sweep(owner=scheduling.new_worker_id()))


def expire() -> int:
    return expiry.messages_expire()


def cleanup() -> int:
    return expiry.messages_cleanup()


def announce_alert(text: str) -> list[str]:
    return undelivered_alerts.alert_announce(text=text)
