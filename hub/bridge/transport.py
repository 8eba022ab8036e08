"""Bridge delivery: a ``message`` frame to the member's live socket over the channel layer.

A frame written to the socket is ``sent``, not ``delivered``: the client answers ``{"type":"ack",
"message_id"}`` and the offline queue retries deliveries that stay unacknowledged. A socket that does not
acknowledge hub deliveries gets the message as a chat instead, after the member's other channels
(``hub.bridge.forms``); queued user chats are chat frames anyway. Both are acknowledged by the backend's reply.

Batches (``deliver_many``), for draining a long queue: the router decides the route message by message. When
it has just written the oldest message of a batch to the recipient's bridge socket, the messages behind it of
the same type would take the same route, so the queue's ordering walk lets them follow on the same socket
without asking again: one channel-layer call for the lot (``hub.deliver_batch`` events of up to 100
``hub.deliver`` events each, which the bridge consumer writes to the socket in order), one INSERT of their
``DeliveryAttempt`` rows and one UPDATE of their state. The frames and the bus events are the router's own
(``delivery_event``, one ``delivery`` event per message), so a client, the audit log and the metrics cannot
tell the difference, only the time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from delivery.models import ChannelKindSwitch
from delivery.router import publish_delivery
from delivery.transports import Delivered, Transport, TransportError
from foundation.sockets import member_group
from hub.bridge.forms import chat_form_event, in_chat_form, is_bridge_chat, reply_wait, too_large
from hub.bridge.outbound import delivery_event
from members.models import Channel
from offline_queue.outcome import Outcome, messages_mark_sent, messages_send_failed, messages_sent_logged

if TYPE_CHECKING:
    from offline_queue.models import Message

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


class BridgeTransport(Transport):
    kind = BRIDGE

    def defers(self, message: Message, channel: Channel) -> bool:
        """A socket that does not acknowledge hub deliveries takes a message only as a chat: other channels first."""
        return channel.is_live() and in_chat_form(message, channel)

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        if not channel.is_live():
            raise TransportError(f"bridge backend {channel.address!r} is not connected")
        layer = get_channel_layer()
        if layer is None:
            raise TransportError("no channel layer is configured", permanent=True)
        note, ack_within = "", None
        if in_chat_form(message, channel):
            event = chat_form_event(message, channel)
            problem = too_large(event["frame"])
            if problem:
                raise TransportError(problem, permanent=True)
            note = "sent as a chat (the socket does not acknowledge hub deliveries); its reply acknowledges it"
            ack_within = reply_wait()
        else:
            event = delivery_event(message)
            if is_bridge_chat(message):
                ack_within = reply_wait()
        started = time.perf_counter()
        try:
            async_to_sync(layer.group_send)(member_group(message.recipient.member_id), event)
        except Exception as exc:  # the layer's own errors (Redis down, over capacity) are worth a retry
            raise TransportError(f"channel layer: {type(exc).__name__}: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        return Delivered(awaiting_ack=True, latency_ms=latency_ms, note=note, ack_within=ack_within)

    def deliver_many(self, messages: list[Message], *, connection: str | None = None) -> str:
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
        if any(in_chat_form(m, channel) or is_bridge_chat(m) for m in messages):
            # A chat is acknowledged by its reply: the next one goes when it is answered, not in a batch.
            return "skipped"
        if get_channel_layer() is None:
            return "skipped"
        now = timezone.now()
        retried = messages_mark_sent(messages=messages, channel=BRIDGE, now=now)
        started = time.perf_counter()
        try:
            async_to_sync(_group_send_all)(
                member_group(member.member_id), [delivery_event(m) for m in messages], channel.live_connection
            )
        except Exception as exc:
            error = f"channel layer: {type(exc).__name__}: {exc}"
            messages_send_failed(messages=messages, channel=BRIDGE, sent_at=now, error=error)
            return "failed"
        latency_ms = (time.perf_counter() - started) * 1000 / len(messages)
        with transaction.atomic():
            messages_sent_logged(messages=messages, retried=retried, channel=BRIDGE, sent_at=now, latency_ms=latency_ms)
            Channel.objects.filter(pk=channel.pk).update(last_ok=now)
        for m in messages:
            publish_delivery(m, Outcome("sent", channel=BRIDGE, latency_ms=latency_ms))
        return "sent"
