"""Writes for the bridge: presence of backend sockets, chats queued for offline backends."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from foundation import metrics
from hub.bridge.forms import is_bridge_chat
from hub.bridge.replies import reply_schedule
from members.models import Channel, Member
from offline_queue import capacity
from offline_queue.acks import pair_continue
from offline_queue.models import Message
from offline_queue.outcome import Outcome, message_record_outcome
from offline_queue.policy import expiry_for


@transaction.atomic
def backend_go_online(
    *, channel: Channel, connection: str, acks: bool = False, replacing: str = "", now: datetime | None = None
) -> str | None:
    """Mark ``channel`` live on the socket ``connection`` (``acks``: it acknowledges hub deliveries), unless
    another live socket holds it: the row must be free, held by ``connection`` or by ``replacing`` (a holder found
    dead), or its heartbeat stale. Returns the channel name of the socket that held it before (to be told to
    close) or ``""``; None when another socket holds it."""
    now = now or timezone.now()
    row = Channel.objects.select_for_update().filter(pk=channel.pk).values("live_connection", "last_seen").first()
    previous = row["live_connection"] if row else ""
    stale = row is None or row["last_seen"] is None or now - row["last_seen"] > heartbeat_timeout()
    if previous and previous not in (connection, replacing) and not stale:
        return None
    Channel.objects.filter(pk=channel.pk).update(live_connection=connection, last_seen=now, live_acks=acks)
    Member.objects.filter(pk=channel.member_id).update(last_online=now)
    return previous if previous and previous != connection else ""


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT)


def backend_acks(*, channel_pk: int, connection: str) -> bool:
    """The socket ``connection`` holding the backend sent an ack: it acknowledges hub deliveries. Returns True
    when the row said otherwise."""
    return bool(
        Channel.objects.filter(pk=channel_pk, live_connection=connection, live_acks=False).update(live_acks=True)
    )


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
    registers (``hub.bridge.outbound.delivery_event``) and its reply goes to ``reply_channel``. Raises
    ``QueueFull`` (nothing stored) when the backend's member has ``HUB_QUEUE_MAX_BYTES_PER_RECIPIENT`` waiting."""
    now = now or timezone.now()
    size = capacity.message_bytes(topic="", content=text, metadata={"audio": audio} if audio else None)
    capacity.recipient_room_take(recipient_pk=channel.member_id, recipient_id=channel.member.member_id, adding=size)
    try:
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
    except BaseException:
        capacity.recipient_room_release(recipient_pk=channel.member_id, adding=size)
        raise
    metrics.MESSAGES_ACCEPTED.labels(Message.Type.CHAT, Message.Source.BRIDGE).inc()
    return message


def bridge_chat_replied(*, message_id: str, text: str | None = None) -> bool:
    """The backend replied to a chat the queue sent it (a user's queued chat, or a hub message sent as a chat):
    that reply is its acknowledgement, and the pair's next message may go at once. The reply ``text`` to a hub
    message goes back to its sender as a reply message (``hub.bridge.replies``). Returns True when the message
    was not yet delivered."""
    message = Message.objects.select_related("recipient").filter(message_id=message_id).first()
    if message is None or message.status == Message.Status.DELIVERED:
        return False
    message_record_outcome(message, Outcome("delivered", channel=Channel.Kind.BRIDGE))
    pair_continue(sender_id=message.sender_id, recipient_id=message.recipient_id)
    if text is not None and not is_bridge_chat(message):
        reply_schedule(message_id=message.message_id, text=text)
    return True


def backend_deliveries_due(*, member_pk: int, now: datetime | None = None) -> int:
    """The backend's socket went away: what was written to it and is not acknowledged (answered) yet is due again
    at once rather than at its ack deadline, so it goes to the member's next socket or channel. Returns how many."""
    now = now or timezone.now()
    return Message.objects.filter(
        recipient_id=member_pk,
        status=Message.Status.DELIVERING,
        delivered_via=Channel.Kind.BRIDGE,
        next_retry_at__gt=now,
    ).update(next_retry_at=now)
