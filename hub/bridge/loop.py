"""How bridge sockets are read: every message of one socket handled in turn, without channels' per-message costs.

Speed (see docs/performance.md, "Bridge"): frames and layer events skip channels' per-message
``aclose_old_connections()`` (a thread hop per frame); every ORM use of the bridge goes through
``database_sync_to_async``, which closes stale connections around each call, so nothing here needs the
per-message clean-up. The socket is read in a plain loop rather than channels' ``await_many_dispatch`` (a
new task and an ``asyncio.wait`` per message); a lock keeps channels' guarantee that one message is handled
at a time, frames and layer events alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


class OneAtATimeConsumer(AsyncWebsocketConsumer):
    """A WebSocket consumer that handles its socket's messages and its channel-layer events one at a time,
    in a plain loop (subclasses implement ``websocket_receive`` and the event handlers). Events whose type is in
    ``unlocked_events`` are handled at once, without waiting their turn: answers a handler is waiting for."""

    unlocked_events: frozenset[str] = frozenset()

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        self._one_at_a_time = asyncio.Lock()
        layer_events = asyncio.create_task(self._layer_loop())
        try:
            while True:
                message = await receive()
                async with self._one_at_a_time:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            layer_events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await layer_events

    async def _layer_loop(self) -> None:
        receive, name = self.channel_layer.receive, self.channel_name
        while True:
            event = await receive(name)
            try:
                if event.get("type") in self.unlocked_events:
                    await self.dispatch(event)
                    continue
                async with self._one_at_a_time:
                    await self.dispatch(event)
            except Exception:
                logger.exception("bridge: channel-layer event %r failed", event.get("type"))

    async def dispatch(self, message: dict) -> None:
        # channels' AsyncConsumer.dispatch runs aclose_old_connections() (a thread hop) before every
        # message; see the module docstring for why the bridge does without.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None or message["type"].startswith("_"):
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
