"""Presence of backend sockets: registration, takeover, heartbeat, disconnect.

The truth is the member's bridge ``Channel`` row (``live_connection`` = the socket's channel name,
``last_seen``), read by ``Channel.is_live`` in every process. A registration writes it once and sends
``foundation.signals.member_online``; after that one task per process refreshes ``last_seen`` of all of the
process's registered backends every ``refresh_interval()`` seconds (one UPDATE, no write per frame), so a
backend stays online while its socket lives and goes offline within ``HUB_BRIDGE_HEARTBEAT_TIMEOUT`` when
its process dies. A socket that drops is cleared at once, but only if it still holds the row.

Takeover (``hub.bridge.takeover``): a second socket registering the same backend takes it only when the holder
is dead or silent; the holder then gets an ``error`` frame and close code 4002 (in this process directly, in
another one through the channel layer). A live holder keeps it and the newcomer is refused with 4002.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.cache import cache

from foundation.signals import member_online
from foundation.sockets import audience_group, member_group
from hub.bridge import services
from hub.bridge.forms import declares_acks
from hub.bridge.locations import LOCATIONS, announce
from hub.bridge.registry import AWAITING, LOCAL, PENDING, Pending, Socket

if TYPE_CHECKING:
    from members.models import Channel

logger = logging.getLogger(__name__)

_refresher: asyncio.Task | None = None
_refresher_thread = 0  # the thread whose loop runs it


def refresh_interval() -> float:
    """Seconds between heartbeat refreshes: at most 15, and at least 6 per heartbeat timeout."""
    return min(15.0, settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT / 6)


def info_key(backend_id: str) -> str:
    return f"bridge:backend-info:{backend_id}"


async def send_to_channel(channel_name: str, event: dict) -> bool:
    """Hand ``event`` to the socket ``channel_name``: directly when it is in this process, over the channel
    layer otherwise. Returns False when it certainly reaches nobody (the in-memory layer is this process)."""
    consumer = LOCAL.connections.get(channel_name)
    if consumer is not None:
        if consumer.closed:
            return False
        await consumer.dispatch(event)
        return True
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return False
    await layer.send(channel_name, event)
    return True


async def backend_joined(consumer: Socket, channel: Channel, info: dict, *, replacing: str = "") -> bool:
    """``consumer`` registered ``channel``'s backend: write presence, take over from ``replacing`` (a holder found
    dead, ``hub.bridge.takeover``), tell the offline queue. False (and nothing done) when another socket took the
    backend meanwhile."""
    backend_id = channel.address
    # In the member's group before the row says "live": another process may send a chat there at once (it
    # waits for this registration to finish: the consumer handles one message at a time).
    await consumer.join(member_group(channel.member.member_id))
    previous = await database_sync_to_async(services.backend_go_online)(
        channel=channel, connection=consumer.channel_name, acks=declares_acks(info), replacing=replacing
    )
    if previous is None:
        return False
    consumer.hold_backend(channel, info)
    consumer.acks_seen = declares_acks(info)
    await consumer.leave(audience_group(consumer.current_backend))
    older = LOCAL.backends.get(backend_id)
    LOCAL.backends[backend_id] = consumer
    if older is not None and older is not consumer:
        await older.replaced()
    elif previous and previous != consumer.channel_name:
        await send_to_channel(previous, {"type": "bridge.replaced", "backend_id": backend_id})
    await cache.aset(info_key(backend_id), info, timeout=None)
    await announce(consumer.channel_layer, backend_id)
    ensure_refresher()
    await consumer.send_frame(
        {
            "type": "backend_registered",
            "backend_id": backend_id,
            "message": f"backend {backend_id!r} registered",
        }
    )
    responses = await member_online.asend_robust(
        sender=consumer.__class__, member_id=channel.member.member_id, channel_kind="bridge"
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error("member_online receiver %r failed: %r", receiver, response, exc_info=response)
    return True


async def backend_dropped(consumer: Socket) -> None:
    """Forget ``consumer``'s registration in this process (the row belongs to a newer socket)."""
    if consumer.backend_id is not None and LOCAL.backends.get(consumer.backend_id) is consumer:
        del LOCAL.backends[consumer.backend_id]
    consumer.release_backend()


async def backend_left(consumer: Socket) -> None:
    """``consumer``'s socket closed: forget it here and mark the backend offline if it still held it."""
    channel_pk, member_pk = consumer.backend_channel
    backend_id = consumer.backend_id
    await backend_dropped(consumer)
    went_offline = await database_sync_to_async(services.backend_go_offline)(
        channel_pk=channel_pk, member_pk=member_pk, connection=consumer.channel_name
    )
    if went_offline:
        await announce(consumer.channel_layer, backend_id)
        # Gone without acknowledging (or answering) what was written to it: due again now, not at its deadline.
        await database_sync_to_async(services.backend_deliveries_due)(member_pk=member_pk)


def ensure_refresher() -> None:
    """Start the presence refresher on the running loop unless it runs there (called for every chat sent to
    another process: a refresher running in this thread's running loop is found without
    ``asyncio.get_running_loop()`` and its getpid system call)."""
    global _refresher, _refresher_thread
    task = _refresher
    if (
        task is not None
        and not task.done()
        and _refresher_thread == threading.get_ident()
        and task.get_loop().is_running()
    ):
        return
    loop = asyncio.get_running_loop()
    if task is None or task.done() or task.get_loop() is not loop:
        _refresher = loop.create_task(_refresh_forever(), name="bridge-presence")
        _refresher_thread = threading.get_ident()


def stop_when_idle() -> None:
    """No socket left in this process: stop the refresher and the location listener (the next registration
    or cross-process chat starts them again)."""
    global _refresher
    if LOCAL.connections:
        return
    LOCATIONS.stop()
    AWAITING.clear()
    if _refresher is not None:
        _refresher.cancel()
        _refresher = None


async def _refresh_forever() -> None:
    while True:
        await asyncio.sleep(refresh_interval())
        try:
            await refresh_once()
        except Exception:
            logger.exception("bridge presence refresh failed")


async def refresh_once(now: float | None = None) -> None:
    """One heartbeat: refresh ``last_seen`` of this process's backends, expire pending requests (their
    askers get an ``error`` frame naming the request)."""
    names = [c.channel_name for c in LOCAL.backends.values() if not c.closed]
    if names:
        await database_sync_to_async(services.backends_touch)(connections=names)
    now = time.monotonic() if now is None else now
    ttl = settings.HUB_BRIDGE_PENDING_TTL
    for pending in PENDING.expire(now):
        await _tell_asker(pending, f"backend {pending.backend_id!r} did not reply within {ttl} s")
    for pending in AWAITING.expire(now):
        await _tell_asker(
            pending,
            f"backend {pending.backend_id!r} did not reply within {ttl} s; its connection (in another hub "
            "process) went away, and the chat may not have reached it",
        )


async def _tell_asker(pending: Pending, message: str) -> None:
    if not pending.reply_channel or (pending.asker is not None and pending.asker.closed):
        return  # nobody asked (a hub message sent as a chat: the queue sends it again), or the asker is gone
    frame = {"type": "error", "message": message, "request_id": pending.request_id}
    await send_to_channel(pending.reply_channel, {"type": "hub.frame", "frame": frame})
