"""The form a hub delivery takes on a backend's socket: a ``message`` frame, or a ``chat``.

A ``message`` frame (``hub.bridge.outbound.message_frame``) waits for the client's ``ack``. Only a socket that
said it acknowledges hub deliveries gets one: ``"ack"`` among the ``capabilities`` of its ``register_backend``,
or any ``ack`` it sent (``Channel.live_acks``). The family's backends (LingYi's bridge client) declare
``["chat","tools","tts","stt","push"]``, ignore frame types they do not know and never acknowledge anything: a
``message`` frame sent to them would be resent every ack timeout until the message failed.

To such a socket a message goes, after the member's other channels (the router asks ``defers``), as a ``chat``
frame it does understand: the sender as ``from``, topic and content as ``text``, the message id as
``request_id``. The backend's ``reply`` is the acknowledgement (``hub.bridge.replies``): the message is
delivered and the reply goes back to the sender as a reply message. A chat waits for its reply up to
``HUB_BRIDGE_PENDING_TTL`` (an agent may think for minutes) and is sent again only after that, or when the
backend's socket went away without replying; the pair's later messages follow once it is answered.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.conf import settings

from delivery.router import BRIDGE_CHAT

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message

ACK_CAPABILITY = "ack"


def declares_acks(info: dict | None) -> bool:
    """True when a ``register_backend``'s ``capabilities`` say the socket acknowledges hub deliveries."""
    capabilities = (info or {}).get("capabilities") or []
    return isinstance(capabilities, list) and ACK_CAPABILITY in capabilities


def is_bridge_chat(message: Message) -> bool:
    """True for a user's chat kept by the bridge for an offline backend (it is a chat frame already)."""
    return bool((message.metadata or {}).get(BRIDGE_CHAT))


def in_chat_form(message: Message, channel: Channel) -> bool:
    """True when ``message`` goes to ``channel``'s socket as a chat: a hub delivery to a socket that does not
    acknowledge ``message`` frames."""
    return not channel.live_acks and not is_bridge_chat(message)


def reply_wait() -> float:
    """Seconds a chat waits for its reply (its acknowledgement) before it is sent again."""
    return float(settings.HUB_BRIDGE_PENDING_TTL)


def chat_text(message: Message) -> str:
    """The chat's ``text``: the topic, then the content (a backend ignores a chat without text)."""
    return "\n\n".join(part for part in (message.topic, message.content) if part)


def chat_form_event(message: Message, channel: Channel) -> dict:
    """The ``hub.deliver`` event carrying ``message`` to the backend of ``channel`` as a chat; the pending reply is
    keyed by the message id, so a resend after a reconnect is answered under the same ``request_id``."""
    return {
        "type": "hub.deliver",
        "message_id": message.message_id,
        "backend_id": channel.address,
        "frame": {
            "type": "chat",
            "request_id": message.message_id,
            "from": message.sender_id,
            "text": chat_text(message),
            "audio": None,
            "timestamp": message.created_at.isoformat() if message.created_at else None,
            "message_id": message.message_id,
            "topic": message.topic,
            "message_type": message.message_type,
        },
    }


def frame_bytes(frame: dict) -> int:
    """The size of ``frame`` on the wire (compact JSON, UTF-8)."""
    return len(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def too_large(frame: dict) -> str:
    """Why ``frame`` cannot go to a backend ("" when it can): over the bridge's frame limit, which is also the
    message size the family's clients accept (``websockets``' default 1 MiB; a larger frame makes them drop the
    connection and reconnect)."""
    size, limit = frame_bytes(frame), settings.HUB_BRIDGE_MAX_FRAME_BYTES
    if size <= limit:
        return ""
    return (
        f"the backend's socket does not acknowledge hub deliveries (no 'ack' capability) and the message is too "
        f"large for a chat frame ({size} bytes, the bridge's limit is {limit})"
    )
