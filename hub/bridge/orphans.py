"""Chats whose backend's socket closed before the reply: the user hears about it within seconds.

A chat forwarded to a backend socket waits in ``PENDING`` (in the process of that socket) for the backend's
``reply``. When the socket closes, the backend has ``HUB_BRIDGE_ORPHAN_GRACE`` seconds to register again in
this process (an agent reconnecting after a blip; the pending requests survive the reconnect and its reply
still reaches the user). Otherwise each asker gets an ``error`` frame naming its ``request_id``, directly when
it is in this process, over the channel layer when it is in another (its process stops waiting too).

Chats that waited in the offline queue (``message_id`` set) are not answered here: the queue sends them again
when the backend is back.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from hub.bridge.backend_presence import send_to_channel
from hub.bridge.registry import LOCAL, PENDING

logger = logging.getLogger(__name__)

_waiting: set[asyncio.Task] = set()


def backend_socket_closed(backend_id: str) -> None:
    """``backend_id``'s socket closed: after the grace period, tell the askers of its unanswered chats."""
    task = asyncio.get_running_loop().create_task(
        _after_grace(backend_id, settings.HUB_BRIDGE_ORPHAN_GRACE), name=f"bridge-orphans-{backend_id}"
    )
    _waiting.add(task)
    task.add_done_callback(_waiting.discard)


async def _after_grace(backend_id: str, grace: float) -> None:
    await asyncio.sleep(grace)
    holder = LOCAL.backends.get(backend_id)
    if holder is not None and not holder.closed:
        return  # registered again here: the reply may still come
    for pending in PENDING.take_backend(backend_id, queued=False):
        if pending.asker is not None and pending.asker.closed:
            continue
        frame = {
            "type": "error",
            "message": f"backend {backend_id!r} disconnected before replying; the chat may not have reached it",
            "request_id": pending.request_id,
        }
        try:
            await send_to_channel(pending.reply_channel, {"type": "hub.frame", "frame": frame})
        except Exception:
            logger.warning("bridge: telling %s about request %s failed", pending.reply_channel, pending.request_id)
