"""Writes for the bridge: presence of backend sockets, chats queued for offline backends."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from hub import metrics
from members.models import Channel, Member
from offline_queue.models import Message
from offline_queue.outcome import Outcome, message_record_outcome
from offline_queue.policy import expiry_for


@transaction.atomic
def backend_go_online(*, channel: Channel, connection: str, now: datetime | None = None) -> str:
    """Mark ``channel`` live on the socket ``connection``; returns the channel name of the socket that held
    it before (to be told to close), or ``""``."""
    now = now or timezone.now()
    previous = (
        Channel.objects.select_for_update().filter(pk=channel.pk).values_list("live_connection", flat=True).first()
    )
    Channel.objects.filter(pk=channel.pk).update(live_connection=connection, last_seen=now)
    Member.objects.filter(pk=channel.member_id).update(last_online=now)
    return previous if previous and previous != connection else ""


def backend_go_offline(*, channel_pk: int, member_pk: int, connection: str, now: datetime | None = None) -> bool:
    """Mark the channel offline if ``connection`` still holds it (a newer socket may have taken over).
    Returns True when it did."""
    now = now or timezone.now()
    changed = Channel.objects.filter(pk=channel_pk, live_connection=connection).update(
        live_connection="", last_seen=now
    )
    if changed:
        Member.objects.filter(pk=member_pk).update(last_online=now)
    return bool(changed)


def backends_touch(*, connections: list[str], now: datetime | None = None) -> int:
    """Refresh ``last_seen`` of the bridge channels held by ``connections`` (this process's live sockets)."""
    if not connections:
        return 0
    now = now or timezone.now()
    return Channel.objects.filter(kind=Channel.Kind.BRIDGE, live_connection__in=connections).update(last_seen=now)


def bridge_chat_enqueue(
    *,
    channel: Channel,
    sender_id: str,
    request_id: str,
    from_connection: str,
    reply_channel: str,
    text: str,
    audio: str | None,
    now: datetime | None = None,
) -> Message:
    """Keep a chat for the offline backend of ``channel``; the offline queue delivers it when the backend
    registers (``hub.bridge.outbound.delivery_event``) and its reply goes to ``reply_channel``."""
    now = now or timezone.now()
    message = Message.objects.create(
        sender_id=sender_id,
        recipient=channel.member,
        content=text,
        message_type=Message.Type.CHAT,
        source=Message.Source.BRIDGE,
        status=Message.Status.QUEUED,
        next_retry_at=now,
        expires_at=expiry_for(now),
        metadata={
            "bridge_chat": {
                "backend_id": channel.address,
                "request_id": request_id,
                "from": from_connection,
                "reply_channel": reply_channel,
                "audio": audio,
            }
        },
    )
    metrics.MESSAGES_ACCEPTED.labels(Message.Type.CHAT, Message.Source.BRIDGE).inc()
    return message


def bridge_chat_replied(*, message_id: str) -> bool:
    """The backend replied to a queued chat: that reply is its acknowledgement. Returns True when the
    message was not yet delivered."""
    message = Message.objects.filter(message_id=message_id).first()
    if message is None or message.status == Message.Status.DELIVERED:
        return False
    message_record_outcome(message, Outcome("delivered", channel=Channel.Kind.BRIDGE))
    return True
