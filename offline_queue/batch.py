"""Batched sends over a live bridge socket, for draining a long queue.

The router decides the route message by message (``hub.routing.attempt``). When it has just written the
oldest message of a batch to the recipient's bridge socket, the messages behind it of the same type would
take the same route, so they follow on the same socket without asking again: one channel-layer call for
the lot, one bulk insert of their ``DeliveryAttempt`` rows and one UPDATE of their state. The frames and
the bus events are the router's own (``hub.bridge.outbound.delivery_event``, one ``delivery`` event per
message), so a client, the audit log and the metrics cannot tell the difference, only the time.
"""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hub import bus, metrics
from hub.bridge.groups import member_group
from hub.bridge.outbound import delivery_event
from hub.models import ChannelKindSwitch
from members.models import Channel
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.policy import ack_deadline

BRIDGE = Channel.Kind.BRIDGE


async def _group_send_all(group: str, events: list[dict]) -> None:
    # One after the other, on purpose: the socket must get them in this order.
    layer = get_channel_layer()
    for event in events:
        await layer.group_send(group, event)


def bridge_send_many(messages: list[Message]) -> bool:
    """Write ``messages`` (one recipient, in order) to the recipient's live bridge socket and mark them
    ``delivering`` until their acks, as single attempts would. False (nothing sent, nothing written) when
    the bridge is no longer usable for them; the caller then goes on one message at a time."""
    if not messages:
        return True
    member = messages[0].recipient
    channel = Channel.objects.filter(member=member, kind=BRIDGE, enabled=True).first()
    if channel is None or not channel.is_live() or not member.enabled or BRIDGE in ChannelKindSwitch.switched_off():
        return False
    layer = get_channel_layer()
    if layer is None:
        return False
    started_at = timezone.now()
    started = time.perf_counter()
    try:
        async_to_sync(_group_send_all)(member_group(member.member_id), [delivery_event(m) for m in messages])
    except Exception:
        return False
    latency_ms = (time.perf_counter() - started) * 1000 / len(messages)
    now = timezone.now()
    ids = [m.pk for m in messages]
    retried = [m.pk for m in messages if m.attempted]
    with transaction.atomic():
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(message=m, channel=BRIDGE, started_at=started_at, latency_ms=latency_ms, outcome="sent")
            for m in messages
        )
        if retried:
            Message.objects.filter(pk__in=retried, status__in=Message.UNDELIVERED).update(
                retry_count=F("retry_count") + 1
            )
        # An ack that already arrived made its message delivered: leave those alone.
        Message.objects.filter(pk__in=ids, status__in=Message.UNDELIVERED).update(
            status=Message.Status.DELIVERING,
            delivered_via=BRIDGE,
            next_retry_at=ack_deadline(now),
            last_attempt_at=now,
            last_error="",
            lease_owner="",
            lease_expires_at=None,
        )
        Channel.objects.filter(pk=channel.pk).update(last_ok=now)
    if retried:
        metrics.RETRIES.labels(member=member.member_id).inc(len(retried))
    for m in messages:
        m.status, m.delivered_via, m.last_attempt_at = Message.Status.DELIVERING, BRIDGE, now
        if m.pk in retried:
            m.retry_count += 1
        bus.publish(
            bus.ChannelMessage(
                topic=BRIDGE,
                event="delivery",
                message_id=m.message_id,
                sender_id=m.sender_id,
                recipient_id=member.member_id,
                data={
                    "outcome": "sent",
                    "channel": BRIDGE,
                    "error": "",
                    "latency_ms": latency_ms,
                    "message_type": m.message_type,
                },
            )
        )
    return True
