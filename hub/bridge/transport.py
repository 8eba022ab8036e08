"""Bridge delivery: a ``message`` frame to the member's live socket over the channel layer.

A frame written to the socket is ``sent``, not ``delivered``: the client answers ``{"type":"ack",
"message_id"}`` and the offline queue retries deliveries that stay unacknowledged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from hub.bridge.outbound import delivery_event
from hub.delivery.transports import DeliveryError, Transport
from hub.sockets import member_group
from offline_queue.outcome import Outcome

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message


class BridgeTransport(Transport):
    kind = "bridge"

    def deliver(self, message: Message, channel: Channel) -> Outcome:
        if not channel.is_live():
            raise DeliveryError(f"bridge backend {channel.address!r} is not connected")
        layer = get_channel_layer()
        if layer is None:
            raise DeliveryError("no channel layer is configured", permanent=True)
        started = time.perf_counter()
        try:
            async_to_sync(layer.group_send)(member_group(message.recipient.member_id), delivery_event(message))
        except Exception as exc:  # the layer's own errors (Redis down, over capacity) are worth a retry
            raise DeliveryError(f"channel layer: {type(exc).__name__}: {exc}") from exc
        return Outcome("sent", channel=self.kind, latency_ms=(time.perf_counter() - started) * 1000)
