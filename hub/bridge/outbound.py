"""Hub-originated frames for bridge sockets: what a queued Message looks like on the wire.

``delivery_event(message)`` is the channel-layer event the bridge transport sends to the recipient's
member group (``foundation.sockets.member_group``); the bridge consumer writes its ``frame`` to the socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offline_queue.models import Message


def _timestamp(message: Message) -> str | None:
    return message.created_at.isoformat() if message.created_at else None


def message_frame(message: Message) -> dict:
    """The ``message`` frame a client receives (and may ``ack`` with the same ``message_id``)."""
    return {
        "type": "message",
        **message.envelope(),
        **message.body_fields(),
        "timestamp": _timestamp(message),
        "source": message.source,
        "metadata": message.public_metadata(),
    }


def chat_frame(message: Message) -> dict:
    """The ``chat`` frame of a chat that waited in the offline queue for its backend."""
    chat = message.metadata["bridge_chat"]
    return {
        "type": "chat",
        "request_id": chat["request_id"],
        "from": chat.get("from", message.sender_id),
        "text": message.content,
        "audio": chat.get("audio"),
        "timestamp": _timestamp(message),
        "message_id": message.message_id,
    }


def delivery_event(message: Message) -> dict:
    """The ``hub.deliver`` event for ``message``: a ``message`` frame, or for a queued bridge chat the
    ``chat`` frame with the ``reply_channel`` of the user who asked (its reply goes there)."""
    chat = (message.metadata or {}).get("bridge_chat")
    if chat:
        event = {"type": "hub.deliver", "frame": chat_frame(message), "message_id": message.message_id}
        if chat.get("reply_channel"):
            event["reply_channel"] = chat["reply_channel"]
        if chat.get("backend_id"):
            event["backend_id"] = chat["backend_id"]
        return event
    return {"type": "hub.deliver", "message_id": message.message_id, "frame": message_frame(message)}
