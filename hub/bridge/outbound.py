"""Hub-originated frames for bridge sockets."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offline_queue.models import Message


def message_frame(message: Message) -> dict:
    """The ``message`` frame a client receives (and may ``ack`` with the same ``message_id``)."""
    return {
        "type": "message",
        "message_id": message.message_id,
        "sender_id": message.sender_id,
        "topic": message.topic,
        "content": message.content,
        "message_type": message.message_type,
        "thread_id": message.thread_id,
        "reply_to": message.reply_to,
        "timestamp": message.created_at.isoformat() if message.created_at else None,
        "source": message.source,
        "metadata": public_metadata(message),
    }


def public_metadata(message: Message) -> dict:
    """The message's metadata without the hub's own bookkeeping (keys starting with ``_``): for a message
    relayed from Feishu, its chat id, sender, msg_type and full content."""
    return {key: value for key, value in (message.metadata or {}).items() if not key.startswith("_")}


def delivery_event(message: Message) -> dict:
    """The channel-layer event sent to the recipient's member group."""
    return {"type": "hub.deliver", "message_id": message.message_id, "frame": message_frame(message)}
