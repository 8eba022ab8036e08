"""Signal receivers of the offline queue."""

from __future__ import annotations

from django.dispatch import receiver

from hub.signals import member_online
from offline_queue.scheduling import member_schedule_flush


@receiver(member_online, dispatch_uid="offline_queue.flush_on_member_online")
def flush_on_member_online(sender, member_id: str, channel_kind: str = "", **kwargs) -> None:
    """A member came online: flush its queue in a background task, off the caller's path (a consumer
    registering a backend, a probe)."""
    member_schedule_flush(member_id=member_id)
