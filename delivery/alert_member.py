"""The alert member: an operator channel that receives ``foundation.signals.alert_raised`` as a hub message."""

from __future__ import annotations

from django.conf import settings
from django.dispatch import receiver

from delivery.services import message_send
from foundation.signals import alert_raised
from offline_queue.models import Message


@receiver(alert_raised, dispatch_uid="delivery.alert_member")
def alert_member(sender, text: str, **kwargs) -> str | None:
    """Send the alert to ``HUB_ALERT_MEMBER`` as a notification from ``hub``; returns that member_id, or None
    when no alert member is configured."""
    if not settings.HUB_ALERT_MEMBER:
        return None
    message_send(
        sender_id="hub",
        recipient_id=settings.HUB_ALERT_MEMBER,
        topic="Ling Hub alert",
        content=text,
        message_type=Message.Type.NOTIFICATION,
        source=Message.Source.SYSTEM,
        metadata={"alert": True},
    )
    return settings.HUB_ALERT_MEMBER
