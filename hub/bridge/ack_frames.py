"""The ``ack`` bridge frame: a client confirms hub deliveries.

``{"type": "ack", "message_id": "msg_…"}`` (what existing clients send) or, as an extension,
``{"type": "ack", "message_ids": ["msg_…", …]}``. The message must be addressed to the socket's member;
an unknown id gets an ``error`` frame; a repeated ack is harmless.

Acks are written in batches: the handler only adds the ids to the socket's pending acks
(``BridgeConsumer.queue_acks``), and one writer per socket stores whatever has piled up while its previous
write ran (one UPDATE for many acks). A burst of plain per-message acks from an old client therefore costs a
handful of database writes, not one each.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from foundation.sockets import FrameError, frame
from hub.bridge import limits, services
from offline_queue.acks import messages_acknowledge

logger = logging.getLogger(__name__)

ACK_WRITE_LIMIT = 2000  # ids per database write
MAX_IDS_PER_FRAME = 10000


def _ids_of(data: dict) -> list[str]:
    ids: list[str] = []
    single = data.get("message_id")
    if single is not None:
        if not isinstance(single, str) or not single:
            raise FrameError("ack: 'message_id' must be a non-empty string")
        ids.append(single)
    many = data.get("message_ids")
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(i, str) and i for i in many):
            raise FrameError("ack: 'message_ids' must be a list of non-empty strings")
        if len(many) > MAX_IDS_PER_FRAME:
            raise FrameError(f"ack: at most {MAX_IDS_PER_FRAME} message_ids per frame")
        ids.extend(many)
    if not ids:
        raise FrameError("ack: missing field 'message_id'")
    return ids


@frame("ack")
async def ack(consumer, data: dict) -> None:
    member = consumer.member
    if member is None:
        raise FrameError("ack: this connection has no member (register_backend or connect with a member token)")
    ids = _ids_of(data)
    limits.acks_admitted(consumer, len(ids))
    if consumer.backend_id is not None and not consumer.acks_seen:
        # A backend that acknowledges is sent ``message`` frames from now on (``hub.bridge.forms``).
        consumer.acks_seen = True
        await database_sync_to_async(services.backend_acks)(
            channel_pk=consumer.backend_channel[0], connection=consumer.channel_name
        )
    consumer.queue_acks(ids, lambda: _write_acks(consumer, member.member_id))


async def _write_acks(consumer, member_id: str) -> None:
    """Store the socket's pending acks until none are left; report unknown ids on the socket."""
    while ids := consumer.take_acks(ACK_WRITE_LIMIT):
        try:
            result = await database_sync_to_async(messages_acknowledge)(member_id=member_id, message_ids=ids)
        except Exception:
            # The messages stay unacknowledged and are delivered again after the ack timeout.
            logger.exception("could not store %d acks from %s", len(ids), member_id)
            continue
        if result.unknown and not consumer.closed:
            shown = ", ".join(result.unknown[:20]) + (" …" if len(result.unknown) > 20 else "")
            await consumer.send_frame({"type": "error", "message": f"ack: unknown message_id {shown}"})
