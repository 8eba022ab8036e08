"""Which backends are live in another process, as this process last read it: the cross-process chat path
without a database read per chat.

With a shared channel layer (``REDIS_URL``) a chat to a backend whose socket sits in another daphne process
goes to the backend member's group (``foundation.sockets.member_group``), where only the socket registered
for that backend takes it. Deciding that the backend is live needs its ``Channel`` row; this table keeps the
answer for at most ``CACHE_SECONDS`` (and never past the row's heartbeat deadline). Every process that
registers or loses a backend socket announces it on the ``bridge.locations`` group, and every process
holding entries listens there and drops the backend's entry at once, so a backend that goes offline is
queued for, not sent to, within a channel-layer hop. An entry read from the database is kept only if no
announcement arrived while it was being read, so a read racing a disconnect cannot bring back a stale
"live". Operator edits (a backend or member disabled in the admin) take effect within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from django.conf import settings
from django.utils import timezone

from foundation.channel_layer import release_channel
from members.models import Channel

logger = logging.getLogger(__name__)

GROUP = "bridge.locations"
CACHE_SECONDS = 5.0


@dataclass(slots=True)
class Location:
    member_id: str
    fresh_until: float  # time.monotonic()


class BackendLocations:
    """backend_id → the member whose group reaches the backend's live socket, while fresh."""

    def __init__(self) -> None:
        self._entries: dict[str, Location] = {}
        self._changes = 0  # announcements seen: a read that saw one arrive is not kept
        self._listener: asyncio.Task | None = None
        self._listening: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def live_member(self, backend_id: str, now: float | None = None) -> str | None:
        """The member_id to send ``backend_id``'s chats to, or None when not known to be live here."""
        entry = self._entries.get(backend_id)
        if entry is None:
            return None
        if entry.fresh_until <= (time.monotonic() if now is None else now):
            del self._entries[backend_id]
            return None
        return entry.member_id

    async def snapshot(self, layer: BaseChannelLayer) -> int | None:
        """Call before reading a row to ``remember``: once this process hears announcements, a mark that any
        announcement arriving before ``remember`` invalidates; None when it cannot hear them."""
        if not await self._listen(layer):
            return None
        return self._changes

    def remember(self, channel: Channel, snapshot: int | None) -> None:
        """Keep ``channel`` (a live bridge channel, read after ``snapshot``) for the next chats."""
        if snapshot is None or snapshot != self._changes:
            return
        now_wall, now = timezone.now(), time.monotonic()
        heartbeat_left = settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT - (now_wall - channel.last_seen).total_seconds()
        lifetime = min(CACHE_SECONDS, heartbeat_left)
        if lifetime > 0:
            self._entries[channel.address] = Location(channel.member.member_id, now + lifetime)

    def forget(self, backend_id: str | None = None) -> None:
        """Drop ``backend_id``'s entry (every entry for None)."""
        self._changes += 1
        if backend_id is None:
            self._entries.clear()
        else:
            self._entries.pop(backend_id, None)

    async def _listen(self, layer: BaseChannelLayer) -> bool:
        """Make sure this process hears announcements; False when it cannot (nothing is kept then)."""
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done() or self._listener.get_loop() is not loop:
            self._listening = loop.create_future()
            self._listener = loop.create_task(self._listen_forever(layer, self._listening), name="bridge-locations")
        return await asyncio.shield(self._listening)

    async def _listen_forever(self, layer: BaseChannelLayer, listening: asyncio.Future) -> None:
        name = None
        try:
            name = await layer.new_channel()
            await layer.group_add(GROUP, name)
            listening.set_result(True)
            while True:
                event = await layer.receive(name)
                self.forget(event.get("backend_id"))
        except Exception:
            logger.exception("bridge: lost the backend-location announcements; reading the database per chat")
        finally:
            self.forget()
            if not listening.done():
                listening.set_result(False)
            if name is not None:
                with contextlib.suppress(Exception):
                    await layer.group_discard(GROUP, name)
                await release_channel(layer, name)

    def stop(self) -> None:
        """Stop listening and forget everything (nothing is kept until the next ``remember`` listens again)."""
        listener, self._listener = self._listener, None
        if listener is not None and not listener.done() and not listener.get_loop().is_closed():
            listener.cancel()
        self.forget()


async def announce(layer: BaseChannelLayer | None, backend_id: str) -> None:
    """Tell every process that ``backend_id``'s socket changed (registered, replaced or gone)."""
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return
    try:
        await layer.group_send(GROUP, {"type": "bridge.location", "backend_id": backend_id})
    except Exception:
        logger.exception(
            "bridge: could not announce backend %r; other processes notice within %s s", backend_id, CACHE_SECONDS
        )


LOCATIONS = BackendLocations()
