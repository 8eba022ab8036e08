"""Releasing a bridge socket that has ended, whichever way it ended: closed by the client, dropped, refused,
replaced by a newer socket, failed under the channel layer, cancelled by the server.

Runs once per socket (``BridgeConsumer.socket_closed``); every step runs even when an earlier one failed
(Redis or the database away), so a socket never leaves a group subscription, a "live" presence row or a
registry entry behind.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from foundation import metrics
from hub.bridge import backend_presence, orphans
from hub.bridge.registry import AWAITING, LOCAL, PENDING

if TYPE_CHECKING:
    from hub.bridge.consumers import BridgeConsumer

logger = logging.getLogger(__name__)


async def socket_release(consumer: BridgeConsumer) -> None:
    """Forget the socket here, leave its groups, mark its backend offline (if it still held it) and have the
    askers of the backend's unanswered chats told, unless the backend registers again meanwhile."""
    if consumer.released:
        return
    consumer.released = True
    consumer.closed = True
    if LOCAL.connections.get(consumer.channel_name) is consumer:
        del LOCAL.connections[consumer.channel_name]
    if consumer.counted:
        metrics.BRIDGE_CONNECTIONS.labels(consumer.role).dec()
        consumer.counted = False
    metrics.BRIDGE_FRAME_TALLY.flush()
    for group in list(consumer.groups_joined):
        try:
            await consumer.channel_layer.group_discard(group, consumer.channel_name)
        except Exception:
            logger.warning("bridge: leaving %s failed for %s", group, consumer.channel_name, exc_info=True)
    consumer.groups_joined.clear()
    if consumer.asked:  # its chats' replies have nobody to go to (and must not keep the consumer alive)
        PENDING.forget_asker(consumer, drop=False)
        AWAITING.forget_asker(consumer, drop=True)
    backend_id = consumer.backend_id
    if backend_id is not None:
        try:
            await backend_presence.backend_left(consumer)
        except Exception:
            logger.exception("bridge: marking backend %r offline failed", backend_id)
        orphans.backend_socket_closed(backend_id)
    backend_presence.stop_when_idle()
