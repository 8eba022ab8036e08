"""How large an accepted message may be: whatever the hub accepts it can deliver over every channel.

The tightest channel is a bridge socket: a message goes out as one WebSocket message, a ``message`` frame (or
a ``chat`` frame) carrying the content, topic and metadata plus the envelope (ids, timestamps, types), and
clients built on ``websockets`` refuse anything over 1 MiB by default (``max_size``). So the hub refuses at
acceptance (413) a message whose content, topic and metadata, as JSON, exceed ``HUB_BRIDGE_MAX_FRAME_BYTES``
(1 MiB, the same limit as for frames the hub reads) less ``ENVELOPE_RESERVE`` for the rest of the frame.
"""

from __future__ import annotations

from django.conf import settings

from foundation.jsonapi import compact_json

# The rest of a frame: message_id, sender_id, thread_id and reply_to (at most 100 characters each), type,
# message_type, source, timestamp and the keys, with room to spare.
ENVELOPE_RESERVE = 8 * 1024


def message_budget() -> int:
    """Bytes the content, topic and metadata of one message may take, as JSON."""
    return settings.HUB_BRIDGE_MAX_FRAME_BYTES - ENVELOPE_RESERVE


def size_problem(*, topic: str, content: str, metadata: dict | None) -> str | None:
    """Why a message is too large to be delivered in one bridge frame (an HTTP 413 reason), or None."""
    budget = message_budget()
    # Cheap bound first: JSON escapes make a string at most 6 bytes per character.
    if 6 * (len(content) + len(topic)) < budget // 2 and not metadata:
        return None
    size = sum(len(compact_json(part).encode("utf-8")) for part in (content, topic, metadata or {}))
    if size <= budget:
        return None
    return (
        f"message too large: its content, topic and metadata take {size} bytes as JSON; at most {budget} fit "
        f"in one bridge frame of {settings.HUB_BRIDGE_MAX_FRAME_BYTES} bytes"
    )
