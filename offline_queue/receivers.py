"""Signal receivers of the offline queue."""

from __future__ import annotations

from django.dispatch import receiver

from foundation.signals import member_online, member_removing
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from offline_queue.scheduling import member_schedule_flush


@receiver(member_online, dispatch_uid="offline_queue.flush_on_member_online")
def flush_on_member_online(sender, member_id: str, channel_kind: str = "", **kwargs) -> None:
    """A member came online: flush its queue in a background task, off the caller's path (a consumer
    registering a backend, a probe)."""
    member_schedule_flush(member_id=member_id)


@receiver(member_removing, dispatch_uid="offline_queue.waiting_before_member_removal")
def waiting_before_member_removal(sender, member, force: bool = False, **kwargs) -> str:
    """Messages still waiting for a member stand in the way of its removal; with ``force`` they expire (with an
    alert, like any message that could not be delivered) and the removal goes on."""
    waiting = list(
        Message.objects.filter(recipient=member, status__in=Message.UNDELIVERED).values_list("pk", flat=True)
    )
    if not waiting:
        return ""
    if not force:
        return f"{len(waiting)} undelivered message(s) wait for it"
    expired = messages_expire(
        ids=waiting, force=True, error=f"its recipient {member.member_id!r} was removed by an operator"
    )
    return f"{expired} undelivered message(s) expired with an alert"
