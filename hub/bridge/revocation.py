"""A member lost its access (``foundation.signals.member_revoked``: disabled, token rotated, removed): every open bridge
socket of the member, in every process, is closed with 4001.

The event goes to the member's group (``foundation.sockets.member_group``), which each of its sockets joined: a user
client with its token, its registered backend. Over Redis it reaches every hub process at once. A command run
beside ``runhub`` has no Redis of its own (``runhub`` gives its embedded server's address to its children only):
it reaches the hub's sockets through the address ``runhub`` wrote into the data directory (``foundation.runstate``).
Called from sync code, the receiver returns whether the event went anywhere (``members.revocation`` tells the
command that caused it, which says so when it reached no running hub).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from foundation.channel_layer import BatchingPubSubChannelLayer
from foundation.runstate import runhub_redis
from foundation.signals import member_revoked
from foundation.sockets import member_group, run_soon

logger = logging.getLogger(__name__)

EVENT = "bridge.revoked"
# A Redis that does not answer within this many seconds is given up (the command must not hang).
SEND_TIMEOUT = 3.0


async def member_sockets_close(member_id: str, reason: str) -> bool:
    """Tell every socket of ``member_id`` to close: over this process's channel layer, and over the layer of a
    ``runhub`` on this data directory when this process has no shared one. False when it went to this process's
    own in-memory layer only (no shared layer, no running ``runhub``): a command then reached no hub."""
    group, event = member_group(member_id), {"type": EVENT, "member_id": member_id, "reason": reason}
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)
    if layer is not None and not isinstance(layer, InMemoryChannelLayer):
        return True
    found = runhub_redis()
    if found is None:
        return False
    url, prefix = found
    other = BatchingPubSubChannelLayer(hosts=[url], prefix=prefix)  # the hub's own layer: the same wire
    try:
        await asyncio.wait_for(other.group_send(group, event), SEND_TIMEOUT)
    finally:
        await other.flush()
    return True


def on_member_revoked(sender, member_id: str, reason: str, **kwargs) -> bool | None:
    """``member_revoked`` receiver: from sync code (a command, the admin) it sends before returning and returns
    whether the sockets' hub was reached (``member_sockets_close``; False after an error too); from inside a
    running event loop it schedules the send and returns None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return async_to_sync(_close_or_warn)(member_id, reason)
    run_soon(_close_or_warn, member_id, reason)
    return None


async def _close_or_warn(member_id: str, reason: str) -> bool:
    try:
        return await member_sockets_close(member_id, reason)
    except Exception as exc:  # the operator must know: the member's open sockets stay open
        logger.warning(
            "bridge: could not tell the open sockets of %r to close (%s: %s); restart the hub to close them",
            member_id,
            type(exc).__name__,
            exc,
        )
        return False


member_revoked.connect(on_member_revoked, dispatch_uid="hub.bridge.revocation")
