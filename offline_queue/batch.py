"""Batched sends over a live bridge socket, for draining a long queue.

The router decides the route message by message (``hub.delivery.routing.attempt``). When it has just written the
oldest message of a batch to the recipient's bridge socket, the messages behind it of the same type would
take the same route, so they follow on the same socket without asking again: one channel-layer call for
the lot (``hub.deliver_batch`` events of up to 100 ``hub.deliver`` events each, which the bridge consumer
writes to the socket in order), one INSERT of their ``DeliveryAttempt`` rows and one UPDATE of their state.
The frames and the bus events are the router's own (``hub.bridge.outbound.delivery_event``, one
``delivery`` event per message), so a client, the audit log and the metrics cannot tell the difference,
only the time.
"""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from hub import bus, metrics
from hub.bridge.outbound import delivery_event
from hub.models import ChannelKindSwitch
from hub.sockets import member_group
from members.models import Channel
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.policy import ack_deadline, retry_delay

BRIDGE = Channel.Kind.BRIDGE


# Deliveries per channel-layer message: large enough to make the layer's cost per message small, small
# enough to stay far below any layer's message size limit with ordinary message sizes.
EVENTS_PER_LAYER_MESSAGE = 100


async def _group_send_all(group: str, events: list[dict], connection: str) -> None:
    # One after the other, on purpose: the socket must get them in this order.
    layer = get_channel_layer()
    for start in range(0, len(events), EVENTS_PER_LAYER_MESSAGE):
        chunk = events[start : start + EVENTS_PER_LAYER_MESSAGE]
        await layer.group_send(group, {"type": "hub.deliver_batch", "events": chunk, "connection": connection})


def _log_attempts(ids: list[int], *, started_at, latency_ms: float, outcome: str = "sent", error: str = "") -> None:
    """One ``sent`` DeliveryAttempt row per message, in one INSERT … SELECT (building thousands of model
    instances for rows that differ only in their message costs more than the whole send)."""
    qn = connection.ops.quote_name
    attempt, message = DeliveryAttempt._meta, Message._meta
    columns = ", ".join(
        qn(attempt.get_field(name).column)
        for name in ("message", "channel", "started_at", "latency_ms", "outcome", "error")
    )
    sql = (
        f"INSERT INTO {qn(attempt.db_table)} ({columns}) "
        f"SELECT {qn(message.pk.column)}, %s, %s, %s, %s, %s FROM {qn(message.db_table)} "
        f"WHERE {qn(message.pk.column)} IN ({', '.join(['%s'] * len(ids))})"
    )
    params = [BRIDGE, connection.ops.adapt_datetimefield_value(started_at), latency_ms, outcome, error, *ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def bridge_send_many(messages: list[Message], *, connection: str | None = None) -> str:
    """Write ``messages`` (one recipient, in order) to the recipient's live bridge socket ``connection`` (its
    channel name; the socket registered now when None) and mark them ``delivering`` until their acks, as
    single attempts would. Only that socket writes them: another socket of the member drops the batch.

    Returns ``"sent"``; ``"skipped"`` (nothing written) when the bridge is not usable for them or another
    socket registered since ``connection``; or ``"failed"`` when the channel layer refused them: they are
    back in the queue for a retry. After anything but ``"sent"`` the caller stops: what follows may not
    overtake them."""
    if not messages:
        return "sent"
    member = messages[0].recipient
    channel = Channel.objects.filter(member=member, kind=BRIDGE, enabled=True).first()
    if channel is None or not channel.is_live() or not member.enabled or BRIDGE in ChannelKindSwitch.switched_off():
        return "skipped"
    if connection is not None and channel.live_connection != connection:
        return "skipped"
    connection = channel.live_connection
    if get_channel_layer() is None:
        return "skipped"
    ids = [m.pk for m in messages]
    retried = [m.pk for m in messages if m.attempted]
    now = timezone.now()
    # The rows say "delivering" before the frames leave, so an ack never races with this UPDATE; if this
    # process dies before sending, the ack timeout brings the messages back like any lost delivery.
    with transaction.atomic():
        if retried:
            Message.objects.filter(pk__in=retried, status__in=Message.UNDELIVERED).update(
                retry_count=F("retry_count") + 1
            )
        Message.objects.filter(pk__in=ids, status__in=Message.UNDELIVERED).update(
            status=Message.Status.DELIVERING,
            delivered_via=BRIDGE,
            next_retry_at=ack_deadline(now),
            last_attempt_at=now,
            last_error="",
            lease_owner="",
            lease_expires_at=None,
        )
    started = time.perf_counter()
    try:
        async_to_sync(_group_send_all)(
            member_group(member.member_id), [delivery_event(m) for m in messages], connection
        )
    except Exception as exc:
        error = f"channel layer: {type(exc).__name__}: {exc}"
        with transaction.atomic():
            Message.objects.filter(pk__in=ids, status=Message.Status.DELIVERING, last_attempt_at=now).update(
                status=Message.Status.QUEUED, next_retry_at=now + retry_delay(0), last_error=error
            )
            _log_attempts(ids, started_at=now, latency_ms=0, outcome="transient", error=error)
        return "failed"
    latency_ms = (time.perf_counter() - started) * 1000 / len(messages)
    with transaction.atomic():
        _log_attempts(ids, started_at=now, latency_ms=latency_ms)
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
    return "sent"
