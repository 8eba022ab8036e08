"""django-q2 tasks: thin wrappers around the services, run by ``qcluster`` (inline in unit tests).

The database rows are the source of truth: a task that is lost (a worker killed mid-run) leaves its
messages queued or waiting for an ack, and the retry sweep takes them up again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from importlib import import_module

from offline_queue import services

logger = logging.getLogger("offline_queue")


def deliver_pair(sender_id: str, recipient_id: int) -> dict:
    """Deliver what waits from one sender to one recipient (not waiting for retry times)."""
    owner = services.new_worker_id()
    return asdict(services.pair_deliver(sender_id=sender_id, recipient_id=recipient_id, owner=owner, due_only=False))


def flush_member(member_id: str, online_at: str | None = None) -> dict:
    """A member came online (at ``online_at``, ISO 8601): deliver its whole queue now."""
    when = datetime.fromisoformat(online_at) if online_at else None
    return asdict(services.member_flush(member_id=member_id, online_at=when))


def sweep() -> dict:
    """The scheduled retry sweep (``retry_queue`` does the same continuously)."""
    return asdict(services.queue_sweep(owner=services.new_worker_id()))


def expire() -> int:
    return services.messages_expire()


def cleanup() -> int:
    return services.messages_cleanup()


def probe_endpoints() -> object:
    """Probe every LingMessage endpoint (``hub.delivery.presence.probe_all_endpoints``) when this build has it."""
    try:
        probe_all = import_module("hub.delivery.presence").probe_all_endpoints
    except (ImportError, AttributeError):
        logger.debug("hub.delivery.presence.probe_all_endpoints is not available; no endpoint probes")
        return None
    return probe_all()


def announce_alert(text: str) -> list[str]:
    return services.alert_announce(text=text)
