"""The bridge consumer's channel-layer events: what other parts of the hub (and other processes) send to a
socket through the layer — deliveries, frames, and the takeover and revocation notices.

``LayerEvents`` is a mixin of ``hub.bridge.consumers.BridgeConsumer``; it relies on the consumer's
``backend_id``, ``member``, ``closed``, ``send_frame``, ``replaced`` and ``refuse``.
"""

from __future__ import annotations

import time

from foundation.hot_settings import HOT
from hub.bridge import takeover
from hub.bridge.registry import AWAITING, LOCAL, PENDING, Pending


class LayerEvents:
    """The ``hub.*`` and ``bridge.*`` channel-layer event handlers of a bridge socket."""

    async def hub_deliver(self, event: dict) -> None:
        """``{"type": "hub.deliver", "frame": {...}, "reply_channel"?, "backend_id"?}``: write the frame.

        A ``chat`` is for backend sockets only (the member's user clients ignore it); with ``request_id`` and
        ``reply_channel`` the backend's ``reply`` goes back to that channel."""
        frame = event["frame"]
        if frame.get("type") == "chat":
            if self.backend_id is None or event.get("backend_id", self.backend_id) != self.backend_id:
                return
            request_id, reply_channel = frame.get("request_id"), event.get("reply_channel")
            # A user's chat is answered to the asking socket; a hub message sent as a chat, only by marking it.
            if request_id and (reply_channel or event.get("message_id")):
                PENDING.add(
                    Pending(
                        request_id=request_id,
                        backend_id=self.backend_id,
                        reply_channel=reply_channel or "",
                        deadline=time.monotonic() + HOT.HUB_BRIDGE_PENDING_TTL,
                        asker=LOCAL.connections.get(reply_channel) if reply_channel else None,
                        message_id=frame.get("message_id") or event.get("message_id"),
                    )
                )
        await self.send_frame(frame)

    async def hub_deliver_batch(self, event: dict) -> None:
        """``{"type": "hub.deliver_batch", "events": [hub.deliver events, …], "connection"?}``: several
        deliveries, in order, in one channel-layer message (the offline queue drains long queues this way).
        With ``connection`` only that socket (channel name) writes them: a batch meant for a socket that has
        gone must not reach its successor ahead of what the old one lost."""
        if event.get("connection") and event["connection"] != self.channel_name:
            return
        for one in event["events"]:
            await self.hub_deliver(one)

    async def hub_frame(self, event: dict) -> None:
        """``{"type": "hub.frame", "frame": {...}}``: pass the frame to the socket (a reply or an error for a
        chat sent to another process ends its wait)."""
        frame = event["frame"]
        if "request_id" in frame and AWAITING:
            AWAITING.discard(frame["request_id"])
        await self.send_frame(frame)

    async def bridge_replaced(self, event: dict) -> None:
        """Another socket registered this socket's backend (in another process): close this one."""
        if self.backend_id is not None and self.backend_id == event.get("backend_id"):
            await self.replaced()

    async def bridge_revoked(self, event: dict) -> None:
        """The socket's member lost its access (``hub.bridge.revocation``): close with 4001."""
        if self.member is not None and self.member.member_id == event.get("member_id") and not self.closed:
            await self.refuse(f"member {self.member.member_id!r}: access revoked ({event.get('reason')})")

    async def bridge_liveness(self, event: dict) -> None:
        """A socket in another process wants this socket's backend: say whether this one is alive."""
        takeover.answer_liveness(self, event)

    async def bridge_liveness_answer(self, event: dict) -> None:
        """The answer to this socket's question whether another process's socket is alive."""
        takeover.liveness_answered(event)
