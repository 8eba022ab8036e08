"""A member lost its access (``foundation.signals.member_revoked``: disabled, token rotated, removed): every open bridge
socket of the member, in every process, is closed with 4001.

The event goes to the member's group (``foundation.sockets.member_group``), which each of its sockets joined: a user
client with its token, its registered backend. Over Redis it reaches every hub process at once. A command run
beside ``runhub`` has no Redis of its own (``runhub`` gives its embedded server's address to its children only):
it reaches the hub's sockets through the address ``runhub`` wrote into the data directory (``foundation.runstate``).
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import InMemoryChannelLayer, get_channel_layer

from foundation.channel_layer import BatchingPubSubChannelLayer
from foundation.runstate import runhub_redis
from foundation.signals import member_revoked
from foundation.sockets import member_group, run_soon

logger = logging.getLogger(__name__)

EVENT = "bridge.revoked"
# A Redis that does not answer within this many seconds is given up (the command must not hang).
SEND_TIMEOUT = 3.0


async def member_sockets_close(member_id: str, reason: str) -> None:
    """Tell every socket of ``member_id`` to close: over this process's channel layer, and over the layer of a
    ``runhub`` on this data directory when this process has no shared one."""
    group, event = member_group(member_id), {"type": EVENT, "member_id": member_id, "reason": reason}
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)
    if layer is not None and not isinstance(layer, InMemoryChannelLayer):
        return
    found = runhub_redis()
    if found is None:
        return
    url, prefix = found
    other = BatchingPubSubChannelLayer(hosts=[url], prefix=prefix)  # the hub's own layer: the same wire
    try:
        await asyncio.wait_for(other.group_send(group, event), SEND_TIMEOUT)
    finally:
        await other.flush()


def on_member_revoked(sender, member_id: str, reason: str, **kwargs) -> None:
    """``member_revoked`` receiver: from sync code (a command, the admin) it sends before returning; from inside a
    running event loop it schedules the send."""
    run_soon(_close_or_warn, member_id, reason)


async def _close_or_warn(member_id: str, reason: str) -> None:
    try:
        await member_sockets_close(member_id, reason)
    except Exception as exc:  # the operator must know: the member's open sockets stay open
        logger.warning(
            "bridge: could not tell the open sockets of %r to close (%s: %s); restart the hub to close them",
            member_id,
            type(exc).__name__,
            exc,
        )


member_revoked.connect(on_member_revoked, dispatch_uid="hub.bridge.revocation")
