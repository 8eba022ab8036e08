"""django-q2 tasks of the delivery core (scheduled in ``offline_queue.periodic_tasks``)."""

from __future__ import annotations

from delivery.online import probe_all_endpoints


def probe_endpoints() -> dict[str, int]:
    """Probe every LingMessage endpoint whose state is stale (``presence.probe_all_endpoints``)."""
    return probe_all_endpoints()
