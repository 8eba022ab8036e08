"""A backend's reply too large for the bridge: the user hears so at once, not silence until the pending lifetime.

A frame over ``HUB_BRIDGE_MAX_FRAME_BYTES`` is refused unread (the backend gets an ``error`` frame). When it is a
``reply``, the request it answers is found in the raw text (its ``request_id``, without parsing megabytes of
JSON), the pending request is closed and the user who asked gets an ``error`` frame naming it. A queued chat or a
hub message sent as a chat counts as answered: the backend got it and replied; only the reply could not pass.
"""

from __future__ import annotations

import logging
import re

from channels.db import database_sync_to_async

from hub.bridge import services
from hub.bridge.backend_presence import send_to_channel
from hub.bridge.registry import AWAITING, PENDING, Socket

logger = logging.getLogger(__name__)

# In a JSON object's text a key is a quoted string outside any other string: inside a string its quotes would be
# escaped (\"), so this cannot match the content of the reply's text.
_REPLY = re.compile(r'"type"\s*:\s*"reply"')
_REQUEST_ID = re.compile(r'"request_id"\s*:\s*"([^"\\]{1,200})"')


async def reply_too_large(backend: Socket, text: str, limit: int) -> bool:
    """``text`` (over ``limit`` bytes) came from ``backend``: when it is a reply to a pending request, tell the
    asker and close the request. Returns True when it did."""
    if not _REPLY.search(text):
        return False
    found = _REQUEST_ID.search(text)
    if found is None:
        return False
    request_id = found.group(1)
    pending = PENDING.pop(request_id, backend.backend_id)
    if pending is None:
        return False
    message = (
        f"backend {backend.backend_id!r} replied with {len(text.encode('utf-8'))} bytes, over the bridge's limit of "
        f"{limit} bytes; the reply could not be passed on"
    )
    frame = {"type": "error", "message": message, "request_id": request_id}
    if pending.asker is not None:
        if AWAITING:
            AWAITING.discard(request_id)
        await pending.asker.send_frame(frame)
    elif pending.reply_channel:
        await send_to_channel(pending.reply_channel, {"type": "hub.frame", "frame": frame})
    if pending.message_id:
        logger.warning("%s (message %s)", message, pending.message_id)
        await database_sync_to_async(services.bridge_chat_replied)(message_id=pending.message_id)
    return True
